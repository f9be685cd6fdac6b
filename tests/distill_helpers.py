"""Tiny single-task teachers for the distillation tests, trained once per session through main.py."""

from __future__ import annotations

import fcntl
import sys
from pathlib import Path

TASKS = ["digits", "shapes", "colors"]
WIDTH, RES = 0.25, 24
REPO = Path(__file__).resolve().parent.parent


def train_tiny_teachers(exp_root: Path, data_dir: Path) -> Path:
    """exp_root/teachers/<task> for TASKS (width 0.25, 24 px, 15 steps); trained on first call only."""
    folder = exp_root / "teachers"
    folder.mkdir(parents=True, exist_ok=True)
    with open(exp_root / ".teachers.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".done").exists():
            for task in TASKS:
                _train(exp_root, data_dir, task)
            (folder / ".done").touch()
    return folder


def _train(exp_root: Path, data_dir: Path, task: str) -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import main

    code = main.run_cli(["-e", f"teachers/{task}", "--exp_root", str(exp_root), "--config", "exp.mini_finetune",
                         "--task_choice", task, "--data_dir", str(data_dir), "--device", "cpu", "--width", str(WIDTH),
                         "--input_res", str(RES), "--num_rounds", "1", "--train_iters", "15", "--lr_drop_steps", "100",
                         "--batch_size", "16", "--val_max_images", "64", "--eval_batch_size", "200", "--prefetch", "0",
                         "--overwrite"])
    assert code == 0, f"training the tiny teacher of {task} failed ({exp_root / 'teachers' / task / 'log.txt'})"


def tiny_cache(teachers: Path, data_dir: Path, *, steps: int = 30, cache: bool = True, val_images: int = 48):
    """(FeatureCache, ProxySchedule) on the tiny teachers: `steps` of batch 4, a small validation subset."""
    from mtl.distill.features import FeatureCache, data_folder
    from mtl.distill.proxy import ProxySchedule
    from mtl.distill.teachers import load_teachers

    schedule = ProxySchedule(steps=steps, batch_size=4, lr_drop_steps=(2 * steps // 3,), eval_batch_size=64)
    loaded = load_teachers(str(teachers), TASKS, teachers.parent, "mini_decathlon", width=WIDTH, input_res=RES)
    features = FeatureCache(loaded, data_folder("mini_decathlon", data_dir, TASKS), "mini_decathlon", input_res=RES,
                            train_images=schedule.train_images(len(TASKS)), val_images=val_images, seed=0,
                            cache=cache)
    return features, schedule
