"""The distillation proxy against itself: the equal-size sample scored with several candidate seeds.

    python benchmarks/proxy_seed_noise.py --teachers hyp/pvmix100/teachers --student_init exp/hyp/backbone \
        --seeds 0,1,2,3,4,5                                   # the demo's budget, 300 steps of batch 8
    python benchmarks/proxy_seed_noise.py ... --steps 3000 --batch_size 4 --seeds 0,1,2,3   # the original's

A candidate's seed draws which channel indices realise its partition (and the student's weights when
there is no --student_init). The proxy-validation job scores every partition with one seed; this script
scores the same named partitions (the families oracle, its crossings, the family_mix partitions between
them and share_fixed, all at one size: mtl/meta/partition.py equal_size_presets; share_fixed's masks are
drawn from its matrix like the others', not its exact blocks) with each seed and
prints every score, each partition's mean and std over the seeds, and how well one seed's ranking of
the partitions agrees with another's (the Spearman of every pair of seeds, and their mean). A proxy
whose seeds disagree cannot rank the partitions, whatever it measures.

Beside it, the score of a perfect student for the same masks: each teacher's own final map with the
channels its task does not use zeroed, read by its head (no training, no sharing). It depends on which
channel indices the draw gave each task and on nothing else; its correlation with the proxy's scores
over the (partition, seed) cells says how much of the proxy's score is that draw.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtl.data.domains import choose_tasks, get_dataset, task_families  # noqa: E402
from mtl.distill.objective import ProxyObjective  # noqa: E402
from mtl.distill.proxy import build_student  # noqa: E402
from mtl.distill.validation import seed_agreement  # noqa: E402
from mtl.meta.partition import candidate_partition, equal_size_presets  # noqa: E402


def seed_scores(objective: ProxyObjective, partitions: dict, seeds: list[int]) -> np.ndarray:
    """[partition, seed] proxy scores; each seed scores every partition in one stacked run."""
    params = [{"partition": p.raw.tolist()} for p in partitions.values()]
    columns = [[r["score"] for r in objective.evaluate_batch(params, [seed] * len(params))] for seed in seeds]
    return np.array(columns).T


@torch.no_grad()
def perfect_scores(objective: ProxyObjective, partitions: dict, seeds: list[int]) -> np.ndarray:
    """[partition, seed] score of the teachers' own final maps under each candidate's final masks."""
    cache, init = objective.load()
    reference = [get_dataset(cache.dataset).domain(t).proxy_reference for t in cache.tasks]
    out = np.zeros((len(partitions), len(seeds)))
    for j, seed in enumerate(seeds):
        drawn = [candidate_partition({"partition": p.raw.tolist()}, seed, cache.tasks) for p in partitions.values()]
        student = build_student(cache, drawn, [seed] * len(drawn), init=init, layers=objective.partition_layers)
        for t, task in enumerate(cache.tasks):
            mask, teacher = student.final_mask(t), cache.teachers[task].model
            if mask is None:
                raise SystemExit("the perfect student needs a partitioned final map: --partition_layers last_stage")
            correct, count = np.zeros(len(drawn)), 0
            for x, labels, _ in cache.val_batches(t, objective.eval_batch_size):
                final = teacher.features(x, task)[-1]
                for p in range(len(drawn)):
                    correct[p] += int((teacher.head(final * mask[p].view(1, -1, 1, 1), task).argmax(-1) == labels).sum())
                count += len(x)
            out[:, j] += correct / max(count, 1) / reference[t] / len(cache.tasks)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", required=True, help="teacher runs as for the distill job")
    parser.add_argument("--student_init", default="", help="run whose last stage initialises the student")
    parser.add_argument("--dataset", default="mini_families_plain_90")
    parser.add_argument("--task_choice", default="0-1-2-3")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--exp_root", default="exp")
    parser.add_argument("--fraction", type=float, default=0.5, help="every task's channel fraction")
    parser.add_argument("--family_mix", default="0.5", help="comma list of family_mix shares ('' for none)")
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--val_images", type=int, default=150)
    parser.add_argument("--partition_layers", default="last_stage")
    parser.add_argument("--readout", default="original", choices=("original", "teacher_bn", "probe"),
                        help="the proxy's readout (mtl/distill/features.py READOUTS)")
    parser.add_argument("--json", help="also write the scores to this file")
    args = parser.parse_args(argv)

    tasks = choose_tasks(args.dataset, args.task_choice)
    mix = [float(s) for s in args.family_mix.split(",") if s.strip()]
    partitions = equal_size_presets(task_families(args.dataset, tasks), args.fraction, mix)
    seeds = [int(s) for s in args.seeds.split(",")]
    objective = ProxyObjective(teachers=args.teachers, tasks=tasks, dataset=args.dataset, data_dir=args.data_dir,
                               exp_root=args.exp_root, steps=args.steps, batch_size=args.batch_size,
                               lr_drop_steps=[2 * args.steps // 3], val_images=args.val_images,
                               eval_batch_size=300, partition_layers=args.partition_layers,
                               student_init=args.student_init, proxy_readout=args.readout)
    scores = seed_scores(objective, partitions, seeds)
    print(f"proxy {args.steps} x {args.batch_size}, readout {args.readout}, seeds {seeds}, every task at "
          f"{args.fraction:g} of the channels")
    print("| partition | mean | std | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---|---|---|" + "---|" * len(seeds))
    for name, row in zip(partitions, scores):
        print(f"| {name} | {row.mean():.3f} | {row.std(ddof=1):.3f} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    agreement = seed_agreement(scores, seeds)
    pairs = [v for v in agreement["pairs"].values() if v is not None]
    print(f"seed against seed, Spearman over the {len(partitions)} partitions: mean "
          f"{agreement['mean_pair_spearman']:.2f} (pairs {min(pairs):.2f} to {max(pairs):.2f})")
    perfect = perfect_scores(objective, partitions, seeds)
    within = np.corrcoef((perfect - perfect.mean(1, keepdims=True)).ravel(),
                         (scores - scores.mean(1, keepdims=True)).ravel())[0, 1]
    print(f"perfect student (masks only): std over seeds {perfect.std(1, ddof=1).mean():.3f}; Pearson with the "
          f"proxy over the {scores.size} cells {np.corrcoef(perfect.ravel(), scores.ravel())[0, 1]:.2f}, over "
          f"each partition's seed deviations {within:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"partitions": list(partitions), "seeds": seeds,
                                               "scores": scores.tolist(), "perfect": perfect.tolist(),
                                               "agreement": agreement}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
