"""How much two tasks' teachers agree channel by channel: what the distillation proxy charges for sharing.

    python benchmarks/teacher_alignment.py --teachers exp/fam_proxy/teachers --dataset mini_families_plain_90

The proxy trains a student whose channel c, when shared by tasks a and b, must reproduce teacher a's
channel c on a's images and teacher b's channel c on b's images (mtl/distill/proxy.py). That is cheap
when the two teachers compute the same function in channel c, and costs whatever they disagree on
otherwise, whether or not the tasks need the same features. So if the proxy is to prefer sharing inside
a task family, the teachers of one family must agree more than the teachers of two families.

For each pair of teachers this script runs both on the same images (the validation images of both
tasks, each task's trunk input as the proxy builds it) and reports, for every distilled last-stage
output, the Pearson correlation of teacher a's channel c with teacher b's channel c over images and
positions, averaged over channels and outputs; then the mean over within-family and over cross-family
pairs. A basis-free figure beside it, linear CKA of the pooled features, says whether the teachers
hold the same information in other channels (which the proxy cannot use).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtl.data.domains import get_dataset, task_families  # noqa: E402
from mtl.data.store import DomainFile, domain_file_path  # noqa: E402
from mtl.distill.features import _val_inputs, data_folder, distilled  # noqa: E402
from mtl.distill.teachers import load_teachers  # noqa: E402


@torch.no_grad()
def teacher_outputs(teacher, images: torch.Tensor, readout: str) -> list[torch.Tensor]:
    """The distilled last-stage outputs of `teacher` on raw (normalised) images: [N, C, h, w] each."""
    task = teacher.task
    return distilled(teacher.model.features(teacher.model.trunk(images, task), task), readout)


def channel_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over channels of the Pearson correlation of a[:, c] and b[:, c] over images and positions."""
    x = a.transpose(0, 1).flatten(1).double()
    y = b.transpose(0, 1).flatten(1).double()
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    denom = (x.norm(dim=1) * y.norm(dim=1)).clamp_min(1e-12)
    return float(((x * y).sum(1) / denom).mean())


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA of the spatially pooled features [N, C] (invariant to rotations of the channels)."""
    x = a.mean((2, 3)).double()
    y = b.mean((2, 3)).double()
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = (x.T @ y).norm() ** 2
    return float(cross / ((x.T @ x).norm() * (y.T @ y).norm()).clamp_min(1e-12))


def pair_scores(outs_a: list[torch.Tensor], outs_b: list[torch.Tensor]) -> tuple[float, float]:
    """(channel correlation, CKA) averaged over the distilled outputs."""
    corr = statistics.mean(channel_correlation(x, y) for x, y in zip(outs_a, outs_b))
    cka = statistics.mean(linear_cka(x, y) for x, y in zip(outs_a, outs_b))
    return corr, cka


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", required=True, help="teacher runs as for the distill job (a folder or a list)")
    parser.add_argument("--dataset", default="mini_families_plain_90")
    parser.add_argument("--task_choice", default="0-1-2-3")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--exp_root", default="exp")
    parser.add_argument("--images", type=int, default=200, help="validation images per task")
    parser.add_argument("--readout", default="original", choices=("original", "teacher_bn"))
    args = parser.parse_args(argv)

    from mtl.data.domains import choose_tasks

    tasks = choose_tasks(args.dataset, args.task_choice)
    families = dict(zip(tasks, task_families(args.dataset, tasks)))
    teachers = load_teachers(args.teachers, tasks, args.exp_root, args.dataset)
    folder = data_folder(args.dataset, args.data_dir, tasks)
    spec = get_dataset(args.dataset)
    res = next(iter(teachers.values())).input_res
    images = {t: _val_inputs(DomainFile(domain_file_path(folder, t)), args.images, res, 0, spec.domain(t).code,
                             torch.device("cpu"))[0] for t in tasks}
    print(f"{args.dataset}: {', '.join(f'{t} ({families[t]})' for t in tasks)}; {args.images} val images per task, "
          f"readout {args.readout}")
    print(f"| teacher a | teacher b | same family | channel correlation | linear CKA |\n|---|---|---|---|---|")
    rows = {True: [], False: []}
    for a, b in itertools.combinations(tasks, 2):
        both = torch.cat([images[a], images[b]])
        corr, cka = pair_scores(teacher_outputs(teachers[a], both, args.readout),
                                teacher_outputs(teachers[b], both, args.readout))
        same = families[a] == families[b]
        rows[same].append((corr, cka))
        print(f"| {a} | {b} | {'yes' if same else 'no'} | {corr:.3f} | {cka:.3f} |")
    for same, label in ((True, "within-family"), (False, "cross-family")):
        if rows[same]:
            print(f"{label} pairs: channel correlation {statistics.mean(r[0] for r in rows[same]):.3f}, "
                  f"linear CKA {statistics.mean(r[1] for r in rows[same]):.3f} ({len(rows[same])} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
