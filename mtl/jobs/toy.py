"""A tiny two-task synthetic classification job: exercises the runner (resume, logging) in seconds.

Not a benchmark of anything; `make demo` runs the real pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mtl.config.options import RunOptions, option
from mtl.errors import UserError
from mtl.jobs import register_job
from mtl.runner.context import JobContext
from mtl.util.faults import maybe_inject_fault
from mtl.util.rng import capture_rng_state, restore_rng_state

TASKS = ("blobs_a", "blobs_b")


@dataclass
class ToyOptions(RunOptions):
    num_rounds: int = option(4, "rounds of training followed by validation", resume_safe=True)
    train_iters: int = option(50, "training steps per round")
    batch_size: int = option(32, "examples per step")
    lr: float = option(0.1, "SGD learning rate", above=0)
    lr_drop_rounds: list[int] = option([3], "rounds after which the learning rate drops 10x")
    hidden: int = option(32, "hidden units of the MLP")
    dropout: float = option(0.1, "dropout before the heads", at_least=0, below=1)

    def validate(self) -> None:
        super().validate()
        if self.num_rounds < 1 or self.train_iters < 1 or self.batch_size < 1:
            raise UserError("num_rounds, train_iters and batch_size must all be at least 1.")


class _ToyNet(nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.heads = nn.ModuleDict({t: nn.Linear(hidden, 4) for t in TASKS})

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return self.heads[task](self.trunk(x))


def _sample(gen: torch.Generator, task_index: int, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    centers = torch.linspace(-2, 2, 4).unsqueeze(1) * torch.ones(4, 8)
    centers[:, task_index] *= -1  # the two tasks disagree on one input dimension
    labels = torch.randint(0, 4, (n,), generator=gen)
    x = centers[labels] + torch.randn(n, 8, generator=gen)
    return x.to(device), labels.to(device)


@register_job("toy", ToyOptions)
def run_toy(ctx: JobContext) -> dict:
    """Train the toy MLP; checkpoint, log and resume like every real job."""
    opts = ctx.opts
    model = _ToyNet(opts.hidden, opts.dropout).to(ctx.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=opts.lr, momentum=0.9)
    milestones = [r * opts.train_iters for r in opts.lr_drop_rounds]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    data_gen = torch.Generator().manual_seed(opts.seed)
    step = 0
    if (saved := ctx.checkpoints.load_latest()) is not None:
        step, state = saved
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        data_gen.set_state(state["data_generator"])
        restore_rng_state(state["rng"])
        ctx.log.info("resumed from step %d", step)

    def snapshot() -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "data_generator": data_gen.get_state(),
                "rng": capture_rng_state()}

    total = opts.num_rounds * opts.train_iters
    accuracy = {}
    while step < total:
        task_index = step % len(TASKS)
        x, y = _sample(data_gen, task_index, opts.batch_size, ctx.device)
        model.train()
        loss = nn.functional.cross_entropy(model(x, TASKS[task_index]), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        maybe_inject_fault("train_step", step)
        if step % opts.log_every == 0:
            ctx.tb.task_scalar(TASKS[task_index], "train", "loss", loss.item(), step)
            ctx.tb.scalar("train/lr", optimizer.param_groups[0]["lr"], step)
        if step % opts.train_iters == 0:
            accuracy = _evaluate(model, opts.seed, ctx)
            for task, acc in accuracy.items():
                ctx.tb.task_scalar(task, "val", "accuracy", acc, step)
            ctx.log.info("round %d/%d: val accuracy %s", step // opts.train_iters, opts.num_rounds,
                         " ".join(f"{t}={a:.3f}" for t, a in accuracy.items()))
            ctx.checkpoint(snapshot(), step, metric=sum(accuracy.values()) / len(accuracy))
        elif step % opts.checkpoint_every == 0 or ctx.stop.requested:
            ctx.checkpoint(snapshot(), step)
    return {"steps": step, "val_accuracy": accuracy,
            "mean_val_accuracy": sum(accuracy.values()) / max(1, len(accuracy))}


@torch.no_grad()
def _evaluate(model: nn.Module, seed: int, ctx: JobContext) -> dict[str, float]:
    model.eval()
    gen = torch.Generator().manual_seed(seed + 10_007)  # fixed validation set, independent of training
    accuracy = {}
    for task_index, task in enumerate(TASKS):
        x, y = _sample(gen, task_index, 512, ctx.device)
        accuracy[task] = (model(x, task).argmax(1) == y).float().mean().item()
    return accuracy
