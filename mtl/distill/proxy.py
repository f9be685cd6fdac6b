"""Training and scoring of proxy students on cached teacher features (reference/original-system.md §3.8).

Schedule (the original's defaults): 3000 steps of batch 4, tasks in round robin (~333 steps each for
9 tasks), Nesterov SGD lr 1.0 momentum 0.9 weight decay 1e-5, LR divided by 10 at step 2000. Loss:
MSE between the student's and the teacher's last-stage block outputs (the student fed the teacher's
trunk output), the last one after the final BatchNorm and ReLU (each network's own). Score: per task,
the teacher's head on the student's final map, accuracy on the fixed validation subset divided by the
domain's `proxy_reference`; the mean over tasks. (`proxy_readout` teacher_bn: the raw last block is
distilled and scored through the teacher's final BatchNorm; probe: distilled as the original's, scored
by a ridge probe fitted to the student's own kept channels, mtl/distill/probe.py; mtl/distill/features.py
READOUTS.) Batches are a pure function of the step, identical for every
candidate of a population (common random numbers) and for a resumed run.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from mtl.config.proxy_defaults import PROXY
from mtl.data.domains import get_dataset
from mtl.distill.features import FeatureCache
from mtl.distill.probe import probe_correct
from mtl.distill.sgd import TaskSGD
from mtl.distill.student import StackedStudent, distill_loss
from mtl.meta.partition import Partition
from mtl.train.optim import lr_at

LOSS_EMA = 0.9  # running distillation loss per task and candidate (reported, not used for the score)


@dataclass(frozen=True)
class ProxySchedule:
    """How a student is trained and evaluated."""

    steps: int = PROXY.steps
    batch_size: int = PROXY.batch_size
    lr: float = PROXY.lr
    lr_drop_steps: tuple[int, ...] = PROXY.lr_drop_steps
    lr_drop_factor: float = PROXY.lr_drop_factor
    momentum: float = PROXY.momentum
    weight_decay: float = PROXY.weight_decay
    eval_batch_size: int = PROXY.eval_batch_size

    def train_images(self, num_tasks: int) -> int:
        """Training examples per task the schedule consumes (each seen once)."""
        return math.ceil(self.steps / num_tasks) * self.batch_size


class ProxyTrainer:
    """Trains a StackedStudent on a FeatureCache and scores it; resumable through state_dict.

    Args:
        cache: teacher features of the proxy's images.
        student: the P candidates.
        schedule: steps, batch size, optimizer settings.
        amp: bf16 autocast on CUDA (no effect on CPU).
    """

    def __init__(self, cache: FeatureCache, student: StackedStudent, schedule: ProxySchedule, amp: bool = False):
        self.cache, self.student, self.schedule, self.amp = cache, student, schedule, amp
        own = [student.task_parameters(t) for t in range(len(cache.tasks))]
        self.optimizer = TaskSGD(student.shared_parameters(), own, schedule.momentum, schedule.weight_decay)
        self.step = 0
        self.loss_ema = torch.zeros(len(cache.tasks), student.size, device=student.device)
        self.task_steps = [0] * len(cache.tasks)
        # Steps with a non-finite loss (any candidate), counted on the device: read at log / checkpoint time.
        self.nonfinite = torch.zeros((), dtype=torch.long, device=student.device)

    def batch(self, step: int) -> tuple[int, Tensor]:
        """(task index, cached example indices) of a step: round robin, each task's examples in order."""
        n = len(self.cache.tasks)
        t, k = step % n, step // n
        b = self.schedule.batch_size
        return t, (torch.arange(b) + k * b) % self.cache.train_sizes[t]

    def train(self, until: int | None = None, on_step: Callable[["ProxyTrainer"], None] | None = None) -> None:
        """Run steps up to `until` (default: the schedule's end); `on_step(self)` after each."""
        until = self.schedule.steps if until is None else min(until, self.schedule.steps)
        while self.step < until:
            t, index = self.batch(self.step)
            x, targets = self.cache.train_batch(t, index)
            with _autocast(x.device, self.amp):
                outs = self.student.forward(x, t, train=True)
            loss = distill_loss([o.float() for o in outs], targets)
            self.nonfinite += (~torch.isfinite(loss)).any()
            loss.sum().backward()  # candidates are independent: each gets its own gradient
            s = self.schedule
            self.optimizer.step(t, lr_at(self.step, s.lr, s.lr_drop_steps, s.lr_drop_factor),
                                self.student.update_masks(t))
            self.loss_ema[t].mul_(LOSS_EMA).add_(loss.detach(), alpha=1 - LOSS_EMA)
            self.task_steps[t] += 1
            self.step += 1
            if on_step is not None:
                on_step(self)

    def losses(self) -> list[dict[str, float]]:
        """Per candidate: task -> running (bias-corrected) distillation loss."""
        ema = self.loss_ema.cpu()
        correction = [1 - LOSS_EMA ** max(k, 1) for k in self.task_steps]
        return [{task: float(ema[t, p]) / correction[t] for t, task in enumerate(self.cache.tasks)}
                for p in range(self.student.size)]

    @torch.no_grad()
    def evaluate(self) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
        """Per candidate on the validation subset: task -> teacher-head accuracy, and task -> mean
        KL(teacher || teacher head on the student's features), a finer-grained fidelity signal."""
        tasks, p = self.cache.tasks, self.student.size
        probe = getattr(self.cache, "proxy_readout", "original") == "probe"
        correct = torch.zeros(len(tasks), p, dtype=torch.long)
        kl = torch.zeros(len(tasks), p, dtype=torch.float64)
        for t in range(len(tasks)):
            pooled, seen = [], []
            for x, labels, teacher in self.cache.val_batches(t, self.schedule.eval_batch_size):
                with _autocast(x.device, self.amp):
                    last = self.student.forward(x, t, train=False)[-1]  # [B, P, C, h, w]
                    if self.student.final_bn:  # already the student's final map
                        logits = self.cache.head(t, last.flatten(0, 1)).float().view(len(x), p, -1)
                    else:
                        mask = self.student.final_mask(t)
                        mask = None if mask is None else mask.repeat(len(x), 1)
                        logits = self.cache.readout(t, last.flatten(0, 1), mask).float().view(len(x), p, -1)
                if probe:
                    pooled.append(self._kept_channels(t, last.float().mean((3, 4))))
                    seen.append(labels)
                else:
                    correct[t] += (logits.argmax(-1) == labels.view(-1, 1)).sum(0).cpu()
                gap = teacher.unsqueeze(1) - torch.log_softmax(logits, -1)
                kl[t] += (teacher.exp().unsqueeze(1) * gap).sum((0, 2)).double().cpu()
            if probe and pooled:
                classes = get_dataset(self.cache.dataset).domain(tasks[t]).num_classes
                correct[t] = probe_correct(torch.cat(pooled), torch.cat(seen), classes).cpu()
        sizes = [max(n, 1) for n in self.cache.val_sizes]
        return ([{task: int(correct[t, c]) / sizes[t] for t, task in enumerate(tasks)} for c in range(p)],
                [{task: float(kl[t, c]) / sizes[t] for t, task in enumerate(tasks)} for c in range(p)])

    def _kept_channels(self, t: int, pooled: Tensor) -> Tensor:
        """Pooled final features [B, P, C] with the channels task t does not use zeroed."""
        mask = self.student.final_mask(t)
        return pooled if mask is None else pooled * mask.to(pooled.dtype).unsqueeze(0)

    def score(self) -> list[dict]:
        """Per candidate: score, per_task (accuracy / reference), accuracy, kl, teacher_accuracy, loss, resource."""
        spec = get_dataset(self.cache.dataset)
        results = []
        accuracies, kls = self.evaluate()
        for partition, acc, kl, loss in zip(self.student.partitions, accuracies, kls, self.losses()):
            per_task = {t: a / spec.domain(t).proxy_reference for t, a in acc.items()}
            use = {t: float(f) for t, f in zip(self.cache.tasks, partition.channel_use())}
            results.append({"score": sum(per_task.values()) / len(per_task), "per_task": per_task, "accuracy": acc,
                            "kl": kl, "teacher_accuracy": dict(self.cache.teacher_accuracy), "loss": loss,
                            "resource": sum(use.values()) / len(use), "resource_per_task": use, "steps": self.step})
        return results

    def state_dict(self) -> dict:
        return {"step": self.step, "student": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                "loss_ema": self.loss_ema.clone(), "task_steps": list(self.task_steps)}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loss_ema.copy_(state["loss_ema"])
        self.task_steps = [int(k) for k in state["task_steps"]]


def build_student(cache: FeatureCache, partitions: Sequence[Partition], seeds: Sequence[int], *,
                  init: dict | None = None, stack: str = "grouped", layers: str = "last_stage_conv1") -> StackedStudent:
    """A StackedStudent shaped like the cache's teachers, on the cache's device."""
    c_in, channels, blocks = cache.student_shape()
    final_bn = getattr(cache, "proxy_readout", "original") in ("original", "probe")
    return StackedStudent(len(cache.tasks), partitions, seeds, c_in=c_in, channels=channels, blocks=blocks,
                          device=cache.device, init=init, stack=stack, layers=layers, final_bn=final_bn)


def evaluate_candidate(cache: FeatureCache, partition: Partition, seed: int, schedule: ProxySchedule, *,
                       init: dict | None = None, amp: bool = False, layers: str = "last_stage_conv1") -> dict:
    """Train and score one candidate: the proxy result dict (see `ProxyTrainer.score`)."""
    trainer = ProxyTrainer(cache, build_student(cache, [partition], [seed], init=init, layers=layers), schedule, amp)
    trainer.train()
    return trainer.score()[0]


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
