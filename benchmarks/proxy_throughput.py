"""Distillation-proxy evaluations per hour: one candidate at a time vs stacked populations.

    python benchmarks/proxy_throughput.py                       # the original's budget (use a GPU)
    python benchmarks/proxy_throughput.py --cpu_reduced         # CPU: 40 steps, 64 val images per task
    python benchmarks/proxy_throughput.py --width 0.25 --input_res 32 --tasks 6 --val_images 400   # mini_dist

Budget (defaults = the original's, reference §3.8): ResNet-26 (width 1, 72 px), 9 tasks, 3000 steps of
batch 4, up to 3000 validation images per task (the decathlon's val sizes cap them: about 22.9k). The
teachers' cached features are synthetic tensors of the real shapes (the proxy's cost does not depend
on their values), so no data or teachers are needed; building the real cache is a one-time cost per
worker (timed by the distill job's log). With a reduced budget the script also extrapolates to the
full one from the measured per-step and per-image times (marked "extrapolated").
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from mtl.data.domains import DECATHLON
from mtl.distill.features import teacher_readout
from mtl.distill.proxy import ProxySchedule, ProxyTrainer, build_student
from mtl.meta.partition import preset
from mtl.models.resnet import ResNet26

VAL_SIZES = {"aircraft": 3333, "cifar100": 10000, "daimlerpedcls": 5880, "dtd": 1880, "gtsrb": 7842,
             "vgg-flowers": 1020, "omniglot": 6492, "svhn": 26040, "ucf101": 1952}  # decathlon val splits


class SyntheticCache:
    """A FeatureCache stand-in: random teacher features of the right shapes, random teacher heads."""

    def __init__(self, tasks, *, width, input_res, train_images, val_images, device):
        self.tasks, self.dataset, self.device = list(tasks), "decathlon", torch.device(device)
        self.teacher = ResNet26([DECATHLON.domain(t) for t in tasks], width=width).eval().to(self.device)
        self.teacher.requires_grad_(False)
        last = self.teacher.stages[-1]
        self.shape = (last[0].c_in, last[0].c_out, len(last))
        side_in, side = math.ceil(input_res / 4), math.ceil(input_res / 8)
        gen = torch.Generator(device=self.device).manual_seed(0)
        self.train_x = torch.randn(train_images, self.shape[0], side_in, side_in, device=self.device, generator=gen)
        self.targets = torch.rand(train_images, self.shape[2], self.shape[1], side, side, device=self.device,
                                  generator=gen)
        self.val_sizes = [min(val_images, VAL_SIZES.get(t, val_images)) for t in tasks]
        self.val_x = torch.randn(max(self.val_sizes), self.shape[0], side_in, side_in, device=self.device,
                                 generator=gen)
        self.train_sizes = [train_images] * len(tasks)
        self.teacher_accuracy = {t: 0.0 for t in tasks}

    def student_shape(self):
        return self.shape

    def train_batch(self, t, index):
        index = index.to(self.device)
        return self.train_x.index_select(0, index), list(self.targets.index_select(0, index).unbind(1))

    def val_batches(self, t, batch_size):
        labels = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        k = self.teacher.heads[self.tasks[t]].out_features
        log_probs = torch.full((batch_size, k), -math.log(k), device=self.device)
        for start in range(0, self.val_sizes[t], batch_size):
            x = self.val_x[start:min(start + batch_size, self.val_sizes[t])]
            yield x, labels[:len(x)], log_probs[:len(x)]

    def readout(self, t, final_block, mask=None):
        return teacher_readout(self.teacher, self.tasks[t], final_block, mask)

    def head(self, t, final_map):
        return self.teacher.head(final_map, self.tasks[t])


def measure(cache, schedule, population: int, stack: str, amp: bool, layers: str) -> dict:
    """Train and score `population` random candidates together; seconds for training and for scoring."""
    partitions = [preset("random", len(cache.tasks), seed=k) for k in range(population)]
    student = build_student(cache, partitions, list(range(population)), stack=stack, layers=layers)
    trainer = ProxyTrainer(cache, student, schedule, amp)
    trainer.train(until=2)  # warm-up (kernel selection, allocator)
    _sync(cache.device)
    start = time.perf_counter()
    trainer.train()
    _sync(cache.device)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    trainer.evaluate()
    _sync(cache.device)
    return {"train_s": train_s, "steps": schedule.steps - 2, "score_s": time.perf_counter() - start}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_hour(m: dict, population: int, steps: int, val_factor: float) -> tuple[float, float]:
    """(measured evaluations/hour, extrapolated to `steps` steps and val_factor x the scored images)."""
    measured = m["train_s"] * (m["steps"] + 2) / m["steps"] + m["score_s"]
    full = m["train_s"] * steps / m["steps"] + m["score_s"] * val_factor
    return 3600 * population / measured, 3600 * population / full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--input_res", type=int, default=72)
    parser.add_argument("--tasks", type=int, default=9)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--val_images", type=int, default=3000)
    parser.add_argument("--populations", default="1,4,16", help="comma list of population sizes")
    parser.add_argument("--stacks", default="grouped,vmap")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no_amp", action="store_true", help="no bf16 autocast on CUDA")
    parser.add_argument("--cpu_reduced", action="store_true", help="40 steps, 64 val images per task")
    parser.add_argument("--layers", default="last_stage_conv1", choices=("last_stage_conv1", "last_stage"),
                        help="partitioned layers of the student")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    full_steps, full_val = args.steps, args.val_images
    if args.cpu_reduced:
        args.steps, args.val_images = 40, 64
    tasks = DECATHLON.names[1:1 + args.tasks]
    schedule = ProxySchedule(steps=args.steps, batch_size=args.batch_size, lr_drop_steps=(2 * args.steps // 3,))
    cache = SyntheticCache(tasks, width=args.width, input_res=args.input_res, device=args.device,
                           train_images=schedule.train_images(len(tasks)), val_images=args.val_images)
    full_images = sum(min(full_val, VAL_SIZES.get(t, full_val)) for t in tasks)
    val_factor = full_images / sum(cache.val_sizes)
    print(f"device {args.device} ({torch.get_num_threads()} threads), ResNet-26 width {args.width} at "
          f"{args.input_res} px, {len(tasks)} tasks, partitioned {args.layers}; "
          f"measured budget: {args.steps} steps x batch {args.batch_size}, "
          f"{sum(cache.val_sizes)} val images; full budget: {full_steps} steps, {full_images} val images")
    print(f"{'stack':8} {'P':>3} {'train s':>8} {'ms/step':>8} {'score s':>8} {'evals/h measured':>17} "
          f"{'evals/h full budget':>20}")
    rows = []
    for stack in args.stacks.split(","):
        for population in (int(p) for p in args.populations.split(",")):
            m = measure(cache, schedule, population, stack, not args.no_amp, args.layers)
            measured, full = per_hour(m, population, full_steps, val_factor)
            rows.append({"stack": stack, "P": population, "layers": args.layers, "ms_per_step":
                         1000 * m["train_s"] / m["steps"], "evals_per_hour_full_budget": full})
            tag = "" if (full_steps, full_val) == (args.steps, args.val_images) else " (extrapolated)"
            print(f"{stack:8} {population:3d} {m['train_s']:8.2f} {1000 * m['train_s'] / m['steps']:8.1f} "
                  f"{m['score_s']:8.2f} {measured:17.0f} {full:20.0f}{tag}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": str(args.device), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
