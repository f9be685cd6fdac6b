"""Single-task runs of the train job as the proxy's frozen teachers: find them, check them, load them.

Teachers are named by run (`exp/<id>` or `<id>`, relative to the experiment root, or a path), as a
comma list or a list, or by a folder holding one run per task (a pipeline's `teachers/`). Each run's
config.json says which task it learned; its best (else latest) checkpoint gives the weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from mtl.data.domains import get_dataset, parse_task_choice
from mtl.errors import UserError
from mtl.models.resnet import ResNet26
from mtl.util.atomic import read_json
from mtl.util.checkpoint import CheckpointStore

_log = logging.getLogger("mtl")


@dataclass
class Teacher:
    """One frozen single-task network (eval mode, no gradients) and where it came from."""

    task: str
    run: Path
    model: ResNet26
    width: float
    input_res: int
    step: int


def teacher_runs(spec: str | Sequence[str], tasks: Sequence[str], exp_root: str | Path,
                 dataset: str) -> dict[str, Path]:
    """The run folder of each task's teacher.

    Args:
        spec: run names / paths (comma list or list), or folders whose sub-folders are runs.
        tasks: the proxy's tasks; each needs exactly one teacher (extra runs are ignored).
        exp_root: the experiment root run names are relative to.
        dataset: the proxy's dataset (teachers must be trained on it).

    Raises:
        UserError: a name that is no run folder, a multi-task run, or a task without a teacher.
    """
    entries = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    if not entries:
        raise UserError("--teachers is empty: name one single-task run per task (exp/<id>,...) or a teachers folder.")
    by_task: dict[str, Path] = {}
    for entry in entries:
        for run in _runs_in(_resolve(str(entry), Path(exp_root))):
            task = _run_task(run, dataset)
            if task in by_task and by_task[task] != run:
                raise UserError(f"two teachers for task {task}: {by_task[task]} and {run}; name one of them.")
            by_task[task] = run
    missing = [t for t in tasks if t not in by_task]
    if missing:
        found = ", ".join(f"{t}={p}" for t, p in by_task.items()) or "none"
        raise UserError(
            f"no teacher for task(s) {', '.join(missing)} in --teachers {','.join(map(str, entries))} "
            f"(found: {found}). Train one per task first, e.g. python main.py -e teachers/{missing[0]} "
            f"--config exp.{'finetune' if dataset == 'decathlon' else 'mini_finetune --dataset ' + dataset} --task_choice {missing[0]}")
    return {t: by_task[t] for t in tasks}


def load_teachers(spec: str | Sequence[str], tasks: Sequence[str], exp_root: str | Path, dataset: str, *,
                  width: float | None = None, input_res: int | None = None,
                  device: torch.device | str = "cpu") -> dict[str, Teacher]:
    """Load every task's teacher, frozen, on `device`; width / input_res None = take the teachers'.

    Raises:
        UserError: missing teachers or checkpoints, another architecture, width, input size or dataset,
            or teachers that disagree with each other.
    """
    runs = teacher_runs(spec, tasks, exp_root, dataset)
    teachers = {t: _load(t, run, dataset, device) for t, run in runs.items()}
    for name, wanted in (("width", width), ("input_res", input_res)):
        values = {t: getattr(teacher, name) for t, teacher in teachers.items()}
        expected = wanted if wanted is not None else next(iter(values.values()))
        wrong = {t: v for t, v in values.items() if v != expected}
        if wrong:
            raise UserError(f"teachers must share the proxy's {name} {expected}: "
                            + ", ".join(f"{t} ({runs[t]}) has {v}" for t, v in wrong.items())
                            + f". Retrain them with --{name} {expected}, or set the proxy's --{name} to match.")
    return teachers


def _resolve(entry: str, exp_root: Path) -> Path:
    # Run names are relative to the experiment root ("exp/" prefix optional); paths work too.
    candidates = [exp_root / entry, exp_root / entry.removeprefix("exp/"), Path(entry)]
    if Path(entry).is_absolute():
        candidates = [Path(entry)]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    raise UserError(f"teacher {entry!r}: no such run folder (looked in {', '.join(map(str, candidates))}).")


def _runs_in(folder: Path) -> list[Path]:
    """The folder itself when it is a run, else the runs directly inside it (a teachers folder)."""
    if (folder / "config.json").is_file():
        return [folder]
    runs = sorted(p.parent for p in folder.glob("*/config.json") if ".old-" not in p.parent.name)
    if not runs:
        raise UserError(f"teacher folder {folder} holds no runs (no config.json in it or its sub-folders).")
    return runs


def _run_task(run: Path, dataset: str) -> str:
    """The one task a train run learned; UserError for other jobs, datasets or several tasks."""
    config = read_json(run / "config.json")
    options = config.get("options", {})
    if config.get("job") != "train":
        raise UserError(f"teacher {run} is a {config.get('job')!r} run; teachers are single-task train runs.")
    if options.get("dataset") != dataset:
        raise UserError(f"teacher {run} was trained on {options.get('dataset')!r}, the proxy uses {dataset!r}.")
    tasks = parse_task_choice(options.get("task_choice", ""), get_dataset(dataset))
    if len(tasks) != 1:
        raise UserError(f"teacher {run} learned {len(tasks)} tasks ({', '.join(tasks)}); a teacher learns one.")
    return tasks[0]


def _load(task: str, run: Path, dataset: str, device) -> Teacher:
    options = read_json(run / "config.json")["options"]
    if options.get("model") != "resnet26":
        raise UserError(f"teacher {run} is a {options.get('model')!r} model; the proxy needs plain resnet26 "
                        "teachers (exp.finetune / exp.mini_finetune).")
    store = CheckpointStore(run / "checkpoints")
    loaded = store.load_best() or store.load_latest()
    if loaded is None:
        raise UserError(f"teacher {run} has no usable checkpoint (is the run finished? "
                        f"python main.py -e {run.name} --continue).")
    status = read_json(run / "status.json").get("state") if (run / "status.json").exists() else "unknown"
    if status != "done":
        _log.warning("teacher %s is %s, not done: using its checkpoint of step %d", run, status, loaded[0])
    spec = get_dataset(dataset).domain(task)
    # Runs from before the option existed were trained with the stem ReLU.
    model = ResNet26([spec], width=float(options["width"]), stem_relu=bool(options.get("stem_relu", True)))
    try:
        model.load_state_dict(loaded[1]["model"])
    except RuntimeError as err:
        raise UserError(f"teacher {run}: its checkpoint does not fit resnet26 width {options['width']} "
                        f"({err})") from None
    model.eval().requires_grad_(False)
    return Teacher(task, run, model.to(device), float(options["width"]), int(options["input_res"]), loaded[0])
