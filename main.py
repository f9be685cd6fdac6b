"""mtl front door: python main.py -e RUN --config CONFIG [--continue] [--<option> VALUE ...]

Parse -> resolve the config -> build the job -> run it in exp/<RUN>/; nothing else lives here.
"""

from __future__ import annotations

import sys

from mtl.commands import list_command
from mtl.config.cli import parse_args, print_options, print_usage, resolve_new, resolve_resume, wrap
from mtl.errors import UserError
from mtl.runner.execute import config_record
from mtl.runner.launch import EXIT_OK, EXIT_USER, launch
from mtl.train.distributed import Dist, check_world, env_rank, env_world_size, exit_process, init_from_env
from mtl.util.device import resolve_device
from mtl.util.run_dir import RunDir, resolve_run_path


def run_cli(argv: list[str]) -> int:
    """main() with user errors printed as one paragraph (no traceback); returns the exit status."""
    try:
        return main(argv)
    except UserError as err:
        if env_rank() == 0:  # torchrun: every rank exits 2, rank 0 says why
            sys.stderr.write("error: " + wrap(str(err)) + "\n")
        return EXIT_USER


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.list_runs:
        return list_command(args.exp_root)
    if args.prepare:
        from mtl.data.prepare import prepare_command

        workers = args.overrides.pop("workers", None)
        data_dir = args.overrides.pop("data_dir", "data")
        domains = args.overrides.pop("domains", None)
        if args.overrides:
            raise UserError(f"--prepare takes --data_dir, --domains, --workers and --skip_bad, not "
                            f"--{next(iter(args.overrides))}.")
        if workers is not None and not (workers.isdigit() and int(workers) > 0):
            raise UserError(f"--workers {workers!r}: give a number of worker processes (1 or more).")
        return prepare_command(args.prepare, data_dir, args.skip_bad, int(workers) if workers else None, domains)
    if args.plot_model:
        from mtl.models.graph_config import plot_model_command

        return plot_model_command(resolve_new(args)[1], args.plot_model)
    if args.help and not args.config and not args.resume:
        print_usage()
        return 0
    if args.resume:
        if not args.exp_id:
            raise UserError("--continue needs the run name: python main.py -e RUN --continue")
        run = RunDir(resolve_run_path(args.exp_root, args.exp_id), args.exp_id)
        if not run.exists():
            raise UserError(f"there is no run {args.exp_id!r} under {args.exp_root}/ to continue; "
                            "drop --continue to start it (with --config).")
        saved = run.read_config()
        job, opts = resolve_resume(args, saved, diverged=run.read_status().get("state") == "diverged")
        config_name = saved.get("config")
    else:
        job, opts, config_name = resolve_new(args)
    if args.help:
        print_options(job, opts, config_name)
        return 0
    if not args.exp_id:
        raise UserError("name the run with -e RUN (a folder under exp/), e.g. -e my_first_run.")
    opts.check_inputs(args.exp_root)  # data, files, device: user errors before anything exists on disk
    check_world(getattr(opts, "batch_size", 1), job.name)  # torchrun: the same errors on every rank
    if not args.resume:
        run = RunDir(resolve_run_path(args.exp_root, args.exp_id), args.exp_id)
    dist = init_from_env(wants_cuda=resolve_device(opts.device).type == "cuda")
    status = None
    try:
        status = _run(args, argv, job, opts, config_name, run, dist)
        return status
    finally:
        dist.close(together=status == 0)


def _run(args, argv: list[str], job, opts, config_name, run: RunDir, dist: Dist) -> int:
    """Take the run folder (rank 0 alone: its lock, config.json), then launch the job on every rank."""
    error = None
    if dist.is_main:
        try:
            run.lock() if args.resume else run.create(overwrite=args.overwrite)  # one process per run folder
        except UserError as err:
            error = str(err)
    dist.raise_if_any(error)  # torchrun: every rank exits 2 when rank 0 cannot take the folder
    try:
        if dist.is_main:
            run.write_config(config_record(job, opts, config_name, _command(argv, dist)))
        root_flag = "" if args.exp_root == "exp" else f" --exp_root {args.exp_root}"
        resume = " ".join(_command(["-e", args.exp_id], dist)) + f"{root_flag} --continue"
        return launch(job, opts, run, args.resume, resume, dist)
    finally:
        if dist.is_main:
            run.unlock()


def _command(argv: list[str], dist: Dist) -> list[str]:
    launcher = ["python"] if not dist.active else ["torchrun", f"--nproc_per_node={dist.world_size}"]
    return [*launcher, "main.py", *argv]


if __name__ == "__main__":
    status = run_cli(sys.argv[1:])
    if env_world_size() > 1 and status == EXIT_OK:
        # torchrun, a run that ended well: no interpreter teardown (mtl/train/distributed.py says why).
        # Every other ending exits as usual, keeping its timing: a rank that exits at once can be the
        # root cause torchrun names, or can get rank 0 stopped before it printed the user error.
        exit_process(status)
    sys.exit(status)
