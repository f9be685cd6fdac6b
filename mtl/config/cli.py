"""Command-line front end: runner flags, `--<option> <value>` overrides, and option resolution.

Precedence for a new run: option defaults < config < command line. For `--continue`: the saved
config.json < options typed on this command line, and only options marked resume-safe may change.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any

from mtl.config.groups import print_notes, resolve_groups
from mtl.config.loader import describe_configs, load_config
from mtl.config.options import apply_values, describe_options, option_fields, option_group
from mtl.errors import UserError
from mtl.jobs import Job, get_job

DEFAULT_EXP_ROOT = "exp"

USAGE = """\
usage: python main.py -e RUN --config CONFIG [--<option> VALUE ...]
       python main.py -e RUN --continue [--<option> VALUE ...]
       python main.py --config CONFIG --help     every option of a config, with defaults
       python main.py --list                     configs, and runs under exp/ with their status
       python main.py --prepare {decathlon,mini_decathlon,mini_families,mini_families_plain*} [--data_dir D] [--domains a,b] [--skip_bad]
       python main.py --plot_model [PNG] --config CONFIG   draw a graph-composed model (default graph_model.png)

  -e, --exp_id RUN     run name: a folder under the experiment root (nested names like sweep/t3 allowed)
  --config CONFIG      module under mtl/config (exp.dec -> mtl/config/exp/dec.py) or a .yaml/.json file
  -c, --continue       resume RUN from its latest checkpoint with its saved options
  --overwrite          start RUN afresh, moving an existing folder aside (never deleted)
  --exp_root DIR       experiment root (default: exp)
"""


@dataclass
class RunnerArgs:
    """Flags that steer the runner itself rather than a job."""

    exp_id: str | None = None
    config: str | None = None
    resume: bool = False
    overwrite: bool = False
    exp_root: str = DEFAULT_EXP_ROOT
    list_runs: bool = False
    help: bool = False
    prepare: str | None = None
    skip_bad: bool = False
    plot_model: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)


_VALUE_FLAGS = {"-e": "exp_id", "--exp_id": "exp_id", "--config": "config", "--exp_root": "exp_root",
                "--prepare": "prepare"}
PLOT_DEFAULT = "graph_model.png"
_SWITCHES = {"-c": "resume", "--continue": "resume", "--overwrite": "overwrite", "--list": "list_runs",
             "-h": "help", "--help": "help", "--skip_bad": "skip_bad"}


def parse_args(argv: list[str]) -> RunnerArgs:
    """Split argv into runner flags and `--option value` overrides (kept as strings)."""
    args = RunnerArgs()
    i = 0
    while i < len(argv):
        token = argv[i]
        name, has_eq, inline = token.partition("=")
        if name in _SWITCHES and not has_eq:
            setattr(args, _SWITCHES[name], True)
            i += 1
        elif name == "--plot_model":  # optional value: the PNG path
            args.plot_model, i = _take_value(argv, i, name, inline if has_eq else None, default=PLOT_DEFAULT)
        elif name in _VALUE_FLAGS:
            value, i = _take_value(argv, i, name, inline if has_eq else None)
            setattr(args, _VALUE_FLAGS[name], value)
        elif token.startswith("--") and len(token) > 2:
            value, i = _take_value(argv, i, name, inline if has_eq else None, default="true")
            args.overrides[name[2:]] = value
        else:
            raise UserError(f"unexpected argument {token!r}: options are written --name value. "
                            "`python main.py --help` shows the usage.")
    return args


def _take_value(argv: list[str], i: int, name: str, inline: str | None, default: str | None = None):
    if inline is not None:
        return inline, i + 1
    if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
        return argv[i + 1], i + 2
    if default is not None:  # a bare `--flag` sets a boolean option
        return default, i + 1
    raise UserError(f"{name} needs a value.")


def resolve_new(args: RunnerArgs) -> tuple[Job, Any, str]:
    """(job, options, config name) for a new run: defaults < config < command line, validated once."""
    if not args.config:
        raise UserError("--config is required to start a run (e.g. --config exp.dec); "
                        "`python main.py --list` shows the configs, --continue resumes an existing run.")
    spec = load_config(args.config)
    job = _get_job(spec.job, f"config {spec.name}")
    notes: list[str] = []
    opts = job.options_cls()
    apply_values(opts, spec.options, f"config {spec.name}", notes)
    apply_values(opts, args.overrides, "command line", notes)
    print_notes(notes)
    opts.validate()
    return job, opts, spec.name


# What may change on --continue of a run that stopped as diverged (on top of the resume-safe options):
# the schedule is a pure function of the step, so the last good checkpoint goes on under a new one.
AFTER_DIVERGENCE = ("lr", "lr_drop_steps", "lr_drop_factor", "momentum", "weight_decay", "method_options")


def resolve_resume(args: RunnerArgs, saved: dict[str, Any], diverged: bool = False) -> tuple[Job, Any]:
    """(job, options) for --continue: saved options, then explicit, resume-safe command-line changes
    (and the optimizer's settings when the run `diverged`)."""
    if args.config and args.config != saved.get("config"):
        raise UserError(f"--continue keeps the run's config ({saved.get('config')}); drop --config "
                        f"{args.config}, or start a new run with it.")
    job = _get_job(saved["job"], "saved config.json")
    opts = job.options_cls()
    apply_values(opts, saved["options"], "saved config.json")
    resolve_groups(opts)  # typed as after validate, so that only real changes count below
    before = dataclasses.asdict(opts)
    notes: list[str] = []
    apply_values(opts, args.overrides, "command line", notes)
    print_notes(notes)
    opts.validate()
    fields = option_fields(job.options_cls)
    changed = [k for k, v in dataclasses.asdict(opts).items() if v != before[k]]
    unsafe = [k for k in changed if not fields[k].metadata.get("resume_safe")
              and not (diverged and k in AFTER_DIVERGENCE)]
    if unsafe:
        raise UserError(
            f"cannot change {', '.join(unsafe)} when continuing: the checkpoint was made with the saved "
            "value(s). Start a new run (another -e name) to change them; options that may change on "
            f"--continue: {', '.join(k for k, f in fields.items() if f.metadata.get('resume_safe'))}."
        )
    return job, opts


def _get_job(name: str, source: str) -> Job:
    try:
        return get_job(name)
    except KeyError as err:
        raise UserError(f"{source}: {err.args[0]}") from None


def print_usage(out=None) -> None:
    out = out or sys.stdout
    out.write(USAGE)
    out.write("\nconfigs (python main.py --list for runs too):\n")
    for name, job, description in describe_configs():
        out.write(f"  {name:<28} {job:<9} {description}\n")


def print_options(job: Job, opts: Any, config_name: str, out=None) -> None:
    """Every option of the job with its value under this config and one line of help."""
    out = out or sys.stdout
    out.write(USAGE)
    out.write(f"\noptions of job '{job.name}' (values after config {config_name}; "
              "* = may change on --continue):\n")
    heading = None
    for name, type_name, value, help_text, resume_safe in describe_options(opts):
        group = option_group(type(opts), name.split(".")[0]) or job.name
        if group != heading:
            out.write(f" {group}:\n")
            heading = group
        mark = "*" if resume_safe else " "
        line = f"  --{name} {type_name.upper()}"
        out.write(f"{line:<34}{mark} {help_text} (default: {value!r})\n")


def wrap(text: str) -> str:
    """One paragraph, wrapped for the terminal."""
    return textwrap.fill(text, width=100)
