"""Device-side batch augmentation and normalization, driven by a torch.Generator (deterministic per seed).

Follows the original training transform (pad-4 random crop, colour jitter 0.3/0.3/0.3/0.1, horizontal
flip where label-safe, per-domain normalize, cutout 18 px), vectorized over the batch and arranged to
touch each pixel few times (memory traffic is the cost on a CPU):
- crop and flip are one gather on the uint8 batch (flip commutes with the pixel-wise colour jitter);
- brightness, contrast, saturation and hue form one 3x3 colour matrix plus offset per image, applied
  with one batched matmul and a single clamp (torchvision clamps after each step: a small difference
  only where pixels saturate); hue rotates chroma in YIQ space rather than an HSV round trip.
Random parameters are drawn on the CPU from the generator and moved to the batch's device, so a seed
gives the same augmentation on any device. Pad and cutout sizes scale with the working resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

STORED_RES = 72
LUMA = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                        dtype=torch.float64)
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class AugmentParams:
    """Per-image random choices for one batch (CPU tensors)."""

    offsets: torch.Tensor  # (N, 2) crop offsets (y, x) into the padded image, 0..2*pad
    flips: torch.Tensor  # (N,) bool
    jitter: torch.Tensor  # (N, 4) brightness, contrast, saturation factors; hue shift (turns)
    holes: torch.Tensor  # (N, 2) cutout centres (y, x)


def scaled(pixels_at_72: int, res: int) -> int:
    """A size given at 72 px, scaled to `res` (at least 1)."""
    return max(1, round(pixels_at_72 * res / STORED_RES))


def sample_params(n: int, res: int, generator: torch.Generator, *, flip_safe: bool,
                  jitter=(0.3, 0.3, 0.3, 0.1)) -> AugmentParams:
    """Draw the random choices for a batch of `n` images; flips stay False unless `flip_safe`."""
    pad = scaled(4, res)
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    u = torch.rand(n, 4, generator=generator) * 2 - 1  # uniform in [-1, 1]
    factors = 1 + u[:, :3] * torch.tensor(jitter[:3])
    hue = u[:, 3:] * jitter[3]
    holes = torch.randint(0, res, (n, 2), generator=generator)
    return AugmentParams(offsets, flips & flip_safe, torch.cat([factors, hue], 1), holes)


def to_float(batch: torch.Tensor, res: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, res, res) in [0, 1], downscaled (antialiased) if res < H."""
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != res or x.shape[-2] != res:
        x = F.interpolate(x, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous()


def crop_and_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad (N, C, H, W) by `pad`, crop back to H x W at per-image offsets, mirror where `flips`."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)).flatten(2)  # (N, C, (H+2p)(W+2p))
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (N, H)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = offsets[:, 1:] + torch.where(flips[:, None], w - 1 - cols, cols)  # (N, W)
    index = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return torch.gather(padded, 2, index).view(n, c, h, w)


def color_matrices(jitter: torch.Tensor, gray_means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image 3x3 matrix M and offset o with jittered = M @ rgb + o (float64, CPU).

    brightness b: x*b; contrast c: c*x + (1-c)*mean gray; saturation s: s*x + (1-s)*gray; hue: rotate
    (I, Q). Gray vectors stay gray under saturation and hue, so the contrast offset passes through.
    """
    b, c, s, hue = (jitter[:, k].double() for k in range(4))
    n = len(b)
    eye = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    saturation = s.view(-1, 1, 1) * eye + (1 - s).view(-1, 1, 1) * torch.ones(3, 1, dtype=torch.float64) @ LUMA.view(1, 3)
    angle = -hue * 2 * torch.pi  # sign: same direction as torchvision adjust_hue
    rotation = torch.zeros(n, 3, 3, dtype=torch.float64)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = torch.cos(angle), -torch.sin(angle)
    rotation[:, 2, 1], rotation[:, 2, 2] = torch.sin(angle), torch.cos(angle)
    matrix = _YIQ2RGB @ rotation @ _RGB2YIQ @ saturation * (c * b).view(-1, 1, 1)
    offset = ((1 - c) * b * gray_means.double()).view(-1, 1).expand(n, 3)
    return matrix, offset


def color_jitter(x: torch.Tensor, jitter: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Apply the jitter to (N, 3, H, W) values `x * scale` in [0, 1]; returns float, clamped to [0, 1]."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w).float()
    gray_means = (flat.mean(dim=2) * scale).double().cpu() @ LUMA
    matrix, offset = color_matrices(jitter.cpu(), gray_means)
    matrix = (matrix * scale).to(x.device, torch.float32)
    out = torch.baddbmm(offset.to(x.device, torch.float32).unsqueeze(2), matrix, flat)
    return out.clamp_(0, 1).view(n, c, h, w)


def cutout(x: torch.Tensor, holes: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a size x size square (clipped at the border) at each image's hole (DeVries & Taylor), in place."""
    h, w = x.shape[-2:]
    half = size // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    cy, cx = holes[:, 0].view(-1, 1, 1), holes[:, 1].view(-1, 1, 1)
    inside = (ys >= cy - half) & (ys < cy + half) & (xs >= cx - half) & (xs < cx + half)
    return x.masked_fill_(inside[:, None], 0.0)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std with per-channel (3,) tensors, in place."""
    return x.sub_(mean.view(1, 3, 1, 1)).div_(std.view(1, 3, 1, 1))


def train_transform(batch: torch.Tensor, params: AugmentParams, *, res: int, mean: torch.Tensor,
                    std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) on any device -> augmented, normalized float (N, 3, res, res)."""
    device = batch.device
    offsets, flips, holes = (t.to(device, non_blocking=True) for t in (params.offsets, params.flips, params.holes))
    if batch.shape[1] == res:  # crop and flip the uint8 pixels: 4x less memory traffic than floats
        x, scale = crop_and_flip(batch.permute(0, 3, 1, 2), offsets, flips, scaled(4, res)), 1 / 255
    else:
        x, scale = crop_and_flip(to_float(batch, res), offsets, flips, scaled(4, res)), 1.0
    x = normalize(color_jitter(x, params.jitter, scale), mean, std)
    return cutout(x, holes, scaled(18, res))


def eval_transform(batch: torch.Tensor, *, res: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalized float (N, 3, res, res), no augmentation."""
    return normalize(to_float(batch, res), mean, std)
