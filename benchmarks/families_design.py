"""Does the task-families benchmark have its known answer? Fixed partitions of one size, full training, seeds.

    python benchmarks/families_design.py --seeds 0,1,2 --exp_root exp/design            # runs what is missing
    python benchmarks/families_design.py --seeds 100,101,102 --exp_root exp/design --steps 1200
    python benchmarks/families_design.py --dataset mini_families_plain_90 --exp_root exp/design_plain_90

Every partition gives each task half of every last-stage conv's channels (the oracle's size), so the
rows differ only in *what* is shared:
- families: the oracle (each family its own half, nothing shared across families);
- share_fixed s=1/3: a private sixth per task plus one third common to all four tasks (the original's blocks);
- wrong pairs (x2): the oracle's shape with the two other pairings of the tasks (`crossed_families`: each
  block shared by one task of each family);
- random (one per seed): pairwise overlaps drawn uniformly, seeded by the training seed.
Each is one `main.py --config exp.families` training per seed (two at a time, one thread each), with
`--steps` split into three rounds and the LR dropped at 3/4. Prints a markdown table of mean
validation accuracy (mean ± std over seeds, per-task means) and writes <exp_root>/design_seeds_<seeds>.json.
A finished run is reread, not retrained.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtl.data.domains import get_dataset, task_families  # noqa: E402
from mtl.data.families import PLAIN_VARIANTS  # noqa: E402
from mtl.meta.partition import Partition, crossed_families, preset, save_partition  # noqa: E402

def partitions(folder: Path, seeds: list[int], dataset: str = "mini_families") -> dict[tuple[str, str], list[tuple[int, str]]]:
    """{(row, run slug): [(seed, --partition value)]}; the partition files are written under `folder`."""
    tasks = get_dataset(dataset).names
    families = task_families(dataset, tasks)
    folder.mkdir(parents=True, exist_ok=True)
    rows = {("families", "families"): "families", ("share_fixed s=1/3", "share_fixed"): "share_fixed:0.3333"}
    for k in range(2):
        pairing = crossed_families(families, k)
        assert pairing is not None, "this design check is written for two families of two tasks"
        path = folder / f"wrong{k + 1}.json"
        _save(preset("families", len(tasks), families=pairing), tasks, path)
        rows[(f"wrong pairs {k + 1}", f"wrong{k + 1}")] = str(path)
    out = {row: [(s, value) for s in seeds] for row, value in rows.items()}
    out[("random", "random")] = []
    for s in seeds:
        rng = np.random.default_rng([s, 2027])
        raw = np.ones((2, len(tasks), len(tasks)))
        raw[0] = rng.uniform(0.0, 1.0, size=raw[0].shape)
        raw[0][np.diag_indices(len(tasks))] = 0.5
        path = folder / f"random_s{s}.json"
        _save(Partition(raw, seed=s), tasks, path)
        out[("random", "random")].append((s, str(path)))
    return out


def _save(partition: Partition, tasks: list[str], path: Path) -> None:
    partition.tasks = list(tasks)
    save_partition(partition, path)


def train(exp_root: Path, name: str, partition: str, seed: int, steps: int, extra: list[str]) -> dict:
    """One exp.families training (or its finished results); `extra`: more main.py options."""
    results = exp_root / name / "results.json"
    if not results.exists():
        args = ["-e", name, "--exp_root", str(exp_root), "--config", "exp.families", "--partition", partition,
                "--seed", str(seed), "--num_rounds", "3", "--train_iters", str(steps // 3),
                "--lr_drop_steps", f"[{steps * 3 // 4}]", *extra]
        with open(exp_root / f"{name}.out", "w") as out:
            subprocess.run([sys.executable, str(REPO / "main.py"), *args], stdout=out, stderr=subprocess.STDOUT,
                           check=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(results.read_text())


def table(results: dict[str, list[dict]]) -> str:
    tasks = list(next(iter(results.values()))[0]["val_accuracy"])
    lines = ["| partition (all at 0.5 of the channels) | mean val accuracy (%) | seeds | "
             + " | ".join(tasks) + " |", "|---|---|---|" + "---|" * len(tasks)]
    for name, runs in results.items():
        means = [100 * r["mean_val_accuracy"] for r in runs]
        per_task = [statistics.mean(100 * r["val_accuracy"][t] for r in runs) for t in tasks]
        spread = statistics.stdev(means) if len(means) > 1 else 0.0
        lines.append(f"| {name} | {statistics.mean(means):.1f} ± {spread:.1f} | "
                     + ", ".join(f"{m:.1f}" for m in means) + " | " + " | ".join(f"{p:.1f}" for p in per_task) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=1200, help="training steps (three rounds)")
    parser.add_argument("--exp_root", default="exp/families_design")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--dataset", default="mini_families", choices=("mini_families",) + tuple(PLAIN_VARIANTS))
    parser.add_argument("--set", nargs="*", default=[], metavar="OPTION=VALUE",
                        help="more exp.families options, e.g. width=0.0625 (name the exp_root after them)")
    args = parser.parse_args(argv)
    extra = [a for item in args.set for a in (f"--{item.split('=', 1)[0]}", item.split("=", 1)[1])]
    extra += ["--dataset", args.dataset]
    seeds = [int(s) for s in args.seeds.split(",")]
    exp_root = Path(args.exp_root).resolve()
    plan = partitions(exp_root / "partitions", seeds, args.dataset)
    jobs = [(row, f"{slug}_{args.steps}_s{s}", value, s) for (row, slug), runs in plan.items() for s, value in runs]
    with ThreadPoolExecutor(args.parallel) as pool:
        done = list(pool.map(lambda j: (j[0], train(exp_root, j[1], j[2], j[3], args.steps, extra)), jobs))
    results: dict[str, list[dict]] = {}
    for row, result in done:
        results.setdefault(row, []).append(result)
    seeds_of = {row: [s for s, _ in runs] for (row, _), runs in plan.items()}
    summary = {row: [{"seed": s, "mean_val_accuracy": r["mean_val_accuracy"], "val_accuracy": r["val_accuracy"]}
                     for s, r in zip(seeds_of[row], runs)] for row, runs in results.items()}
    record = {"steps": args.steps, "seeds": seeds, "dataset": args.dataset, "options": args.set, "rows": summary}
    (exp_root / f"design_seeds_{args.seeds.replace(',', '_')}.json").write_text(json.dumps(record, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
