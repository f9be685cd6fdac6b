"""Running convolutions and BatchNorm on one task's subset of channels, masked or sliced.

A `ChannelSel` describes the channels one task uses at one C-channel site (a conv's output):
masked mode keeps full width and zeroes the other channels *after* BatchNorm; sliced mode keeps
only the task's channels, slicing the producing conv's weight rows, the consuming conv's weight
columns and the BatchNorm parameters. Because the mask follows BatchNorm, unused channels are
exactly zero in masked mode, so both modes compute the same function and the same gradients.
`None` anywhere means "all channels, nothing restricted".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ChannelSel:
    """One task's channels at one site.

    Attributes:
        channels: C, the site's full width.
        idx: sliced mode: sorted long indices of the used channels; None in masked mode.
        drop: masked mode: bool [1, C, 1, 1], True for channels to zero; None in sliced mode.
            With both None the task uses all C channels (only `grad_rows` may restrict it).
        grad_rows: bool weight-row mask ([C or len(idx), 1, 1, 1]) of rows of the producing conv the
            task's gradient may update; None when every used row may be updated.
    """

    channels: int
    idx: Tensor | None = None
    drop: Tensor | None = None
    grad_rows: Tensor | None = None


@dataclass(frozen=True)
class BlockPlan:
    """Channel selections around one residual block (None: full width).

    Attributes:
        x_in: channels present in the block input (sliced mode: the input holds only these).
        mid: channels of the first conv's output.
        out: channels of the second conv's output and of the block output.
        gather: sliced mode with `out`: for each output slot, the input slot the shortcut copies
            (the index one past the input's channels selects a zero channel).
    """

    x_in: ChannelSel | None = None
    mid: ChannelSel | None = None
    out: ChannelSel | None = None
    gather: Tensor | None = None


@dataclass(frozen=True)
class NetPlan:
    """Selections for a whole network: stem output, blocks per stage, final features."""

    stem: ChannelSel | None
    blocks: tuple[tuple[BlockPlan, ...], ...]
    final: ChannelSel | None


FULL_BLOCK = BlockPlan()


def conv(x: Tensor, module: nn.Conv2d, sel_in: ChannelSel | None, sel_out: ChannelSel | None) -> Tensor:
    """`module` applied to `x`, computing only `sel_out`'s rows from `sel_in`'s input channels."""
    w = module.weight
    if sel_out is not None:
        if sel_out.idx is not None:
            w = w.index_select(0, sel_out.idx)
        if sel_out.grad_rows is not None:
            # Same value, but the gradient reaches only the rows the task may update.
            w = torch.where(sel_out.grad_rows, w, w.detach())
    if sel_in is not None and sel_in.idx is not None:
        w = w.index_select(1, sel_in.idx)
    return F.conv2d(x, w, module.bias, module.stride, module.padding, module.dilation)


def batch_norm(x: Tensor, bn: nn.BatchNorm2d, sel: ChannelSel | None) -> Tensor:
    """BatchNorm on the selected channels; masked mode zeroes the others after normalising."""
    if sel is None or (sel.idx is None and sel.drop is None):
        return bn(x)
    if sel.idx is None:
        return torch.where(sel.drop, 0.0, bn(x))
    return _sliced_batch_norm(x, bn, sel.idx)


def used_channels(sel: ChannelSel | None, full: int) -> int:
    """How many channels a selection keeps."""
    if sel is None or (sel.idx is None and sel.drop is None):
        return full
    return len(sel.idx) if sel.idx is not None else int((~sel.drop).sum())


def kept(sel: ChannelSel | None, c: int, device: torch.device | None = None) -> Tensor:
    """Bool [C] of the channels a masked-mode (or absent) selection keeps."""
    if sel is None or sel.drop is None:
        return torch.ones(c, dtype=torch.bool, device=device)
    return ~sel.drop.view(c)


def _sliced_batch_norm(x: Tensor, bn: nn.BatchNorm2d, idx: Tensor) -> Tensor:
    use_batch = bn.training or bn.running_mean is None
    mean = var = None
    if bn.running_mean is not None:
        mean, var = bn.running_mean.index_select(0, idx), bn.running_var.index_select(0, idx)
    factor = 0.0
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    weight = bn.weight.index_select(0, idx) if bn.weight is not None else None
    bias = bn.bias.index_select(0, idx) if bn.bias is not None else None
    out = F.batch_norm(x, mean, var, weight, bias, use_batch, factor, bn.eps)
    if bn.training and mean is not None:
        # F.batch_norm updated the sliced copies; write them back to the task's buffers.
        with torch.no_grad():
            bn.running_mean.index_copy_(0, idx, mean)
            bn.running_var.index_copy_(0, idx, var)
    return out


def mask(x: Tensor, sel: ChannelSel | None) -> Tensor:
    """Zero unused channels in masked mode; identity otherwise."""
    if sel is None or sel.drop is None:
        return x
    # torch.where keeps dtype and channels_last (masked_fill with a broadcast mask does not).
    return torch.where(sel.drop, 0.0, x)


def shortcut(x: Tensor, stride: int, c_out: int, plan: BlockPlan) -> Tensor:
    """Parameter-free shortcut: 2x2 average pool when strided, zero channel padding (or gather)."""
    if stride > 1:
        x = F.avg_pool2d(x, stride, ceil_mode=True)
    if plan.gather is not None:
        return F.pad(x, (0, 0, 0, 0, 0, 1)).index_select(1, plan.gather)
    if x.shape[1] < c_out:
        x = F.pad(x, (0, 0, 0, 0, 0, c_out - x.shape[1]))
    return x


def shortcut_gather(x_in: ChannelSel | None, c_in: int, out: ChannelSel) -> Tensor:
    """Input slot feeding each sliced output channel of the shortcut (c_in slots -> zero channel)."""
    dev = out.idx.device
    present = x_in.idx if x_in is not None and x_in.idx is not None else torch.arange(c_in, device=dev)
    slot = torch.full((out.channels,), len(present), dtype=torch.long, device=dev)
    keep = present < out.channels
    slot[present[keep]] = torch.arange(len(present), device=dev)[keep]
    return slot.index_select(0, out.idx)


def to_full(x: Tensor, sel: ChannelSel | None) -> Tensor:
    """A full-width tensor (zeros in unused channels) from a possibly sliced one."""
    if sel is None or sel.idx is None:
        return x
    full = x.new_zeros((x.shape[0], sel.channels, *x.shape[2:]))
    return full.index_copy(1, sel.idx, x)


def from_full(x: Tensor, sel: ChannelSel | None) -> Tensor:
    """The internal form (sliced, or masked full width) of a full-width tensor."""
    if sel is None:
        return x
    return x.index_select(1, sel.idx) if sel.idx is not None else mask(x, sel)
