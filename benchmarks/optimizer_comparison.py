"""ES vs Nevergrad's optimizers vs random search at one budget, on the task-families benchmark.

    python benchmarks/optimizer_comparison.py --teachers exp/hyp/pvb/teachers --student_init exp/hyp/backbone \
        --backbone exp/hyp/backbone --dataset mini_families_plain_90 --exp_root exp/optimizers

Each optimizer searches what the tasks share at one resource level (every task at half of every
last-stage conv's channels, as the demo's searches) with the distillation proxy at the demo's budget
(300 x 8), `--budget` evaluations, once per search seed. Each search's best partition is then trained
in full (exp.families, `--steps` in three rounds, LR dropped at 3/4, one training seed = the search
seed; with `--backbone`, from that run and the last stage only). Prints a markdown table: best proxy
score, retrained mean val accuracy and realised within- / cross-family overlap, mean ± std over the
search seeds, and writes <exp_root>/optimizers_seeds_<seeds>.json. Finished runs are reread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtl.config.exp.demo import OPTIONS as DEMO  # noqa: E402
from mtl.config.exp.families import OPTIONS as FAMILIES  # noqa: E402
from mtl.data.domains import get_dataset, task_families  # noqa: E402
from mtl.meta.partition import load_partition  # noqa: E402
from mtl.meta.structure import family_overlap  # noqa: E402
from mtl.models.resnet import STAGE_WIDTHS  # noqa: E402


def _flags(options: dict, prefix: str) -> list[str]:
    """`--name value` pairs of the dotted options under `prefix` (lists as [a, b], as main.py reads them)."""
    return [a for k, v in options.items() if k.startswith(prefix) for a in (f"--{k}", str(v))]


# name -> the search's optimizer options (ES: the demo's settings)
OPTIMIZERS = {
    "es": ["--optimizer", "es", *_flags(DEMO["search"], "optimizer.")],
    "random": ["--optimizer", "random", "--optimizer_options", "{}"],
    "cma": ["--optimizer", "nevergrad", "--optimizer_options", "{}", "--nevergrad_optimizer", "CMA",
            "--nevergrad_population", "16"],
    "ngopt": ["--optimizer", "nevergrad", "--optimizer_options", "{}", "--nevergrad_optimizer", "NGOpt",
              "--nevergrad_population", "16"],
}


def _main_py(exp_root: Path, name: str, args: list[str]) -> None:
    with open(exp_root / f"{name.replace('/', '_')}.out", "w") as out:
        subprocess.run([sys.executable, str(REPO / "main.py"), "-e", name, "--exp_root", str(exp_root), *args],
                       stdout=out, stderr=subprocess.STDOUT, check=True, cwd=REPO)


def search(exp_root: Path, optimizer: str, seed: int, args: argparse.Namespace) -> dict:
    """One proxy search (or its finished report): best_partition.json's record."""
    name = f"search/{optimizer}_s{seed}"
    best = exp_root / name / "best_partition.json"
    if not best.exists():
        _main_py(exp_root, name, [
            "--config", "exp.es_dist", *OPTIMIZERS[optimizer], "--dataset", args.dataset, "--task_choice", "0-1-2-3",
            "--fixed_fraction", str(DEMO["search"]["fixed_fraction"]), "--budget", str(args.budget),
            "--seed", str(seed), "--objective.teachers", args.teachers, "--objective.student_init", args.student_init,
            *_flags(DEMO, "objective.")])  # the demo's proxy budget
    return {**json.loads(best.read_text()), "path": str(best)}


def retrain(exp_root: Path, optimizer: str, seed: int, partition: str, args: argparse.Namespace) -> dict:
    """The full training of one search's best partition (or its finished results)."""
    name = f"retrain/{optimizer}_s{seed}"
    results = exp_root / name / "results.json"
    if not results.exists():
        backbone = ["--backbone", str(Path(args.backbone).resolve()), "--last_third_only", "true"] if args.backbone else []
        _main_py(exp_root, name, [
            "--config", "exp.families", "--dataset", args.dataset, "--partition", partition, "--seed", str(seed),
            "--num_rounds", "3", "--train_iters", str(args.steps // 3), "--lr_drop_steps", f"[{args.steps * 3 // 4}]",
            *backbone])
    return json.loads(results.read_text())


def _pm(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * spread:.{digits}f}"


def table(rows: dict[str, list[dict]]) -> str:
    lines = ["| optimizer | best proxy score | retrained mean val accuracy (%) | per seed | channels | "
             "within-family overlap | cross-family overlap |", "|---|---|---|---|---|---|---|"]
    for name, runs in rows.items():
        accuracy = [r["accuracy"] for r in runs]
        lines.append(f"| {name} | {_pm([r['score'] for r in runs], digits=3)} | {_pm(accuracy, 100)} | "
                     + ", ".join(f"{100 * a:.1f}" for a in accuracy)
                     + f" | {_pm([r['resource'] for r in runs], digits=2)} | {_pm([r['within'] for r in runs], digits=2)}"
                     f" | {_pm([r['cross'] for r in runs], digits=2)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", required=True, help="teachers folder or runs (the proxy's)")
    parser.add_argument("--student_init", default="", help="run whose last stage initialises the student")
    parser.add_argument("--backbone", default="", help="run folder the retrains start from (last stage trained only)")
    parser.add_argument("--dataset", default="mini_families")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2400, help="retraining steps (three rounds)")
    parser.add_argument("--exp_root", default="exp/optimizers")
    args = parser.parse_args(argv)
    exp_root = Path(args.exp_root).resolve()
    for folder in ("search", "retrain"):
        (exp_root / folder).mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = get_dataset(args.dataset).names
    families = task_families(args.dataset, tasks)
    channels = max(1, round(STAGE_WIDTHS[-1] * FAMILIES["width"]))  # the retrains' last stage
    rows: dict[str, list[dict]] = {}
    for optimizer in args.optimizers.split(","):
        for seed in seeds:
            best = search(exp_root, optimizer, seed, args)
            result = retrain(exp_root, optimizer, seed, best["path"], args)
            overlap = family_overlap(load_partition(best["path"], tasks), families, channels)
            rows.setdefault(optimizer, []).append({
                "seed": seed, "score": best["score"], "resource": best["resource"],
                "accuracy": result["mean_val_accuracy"], "within": overlap["within"], "cross": overlap["cross"]})
    record = {"options": vars(args), "rows": rows}
    (exp_root / f"optimizers_seeds_{args.seeds.replace(',', '_')}.json").write_text(json.dumps(record, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
