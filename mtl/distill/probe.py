"""The `probe` readout of the proxy: a ridge classifier fitted to each student's own final channels.

The original's readout scores a student through the teacher's head, which reads fixed channel indices;
a task keeps only some of them, so the score mostly reflects which indices its masks drew (README, "The
proxy against itself": a perfect student's teacher-head score correlates 0.79 with the proxy's). The
probe instead fits a linear classifier to the channels the task keeps (spatially pooled, standardised
on the training folds; closed-form ridge regression onto one-hot labels) and reports its k-fold
cross-validated accuracy on the proxy's validation subset. Deterministic: the folds are the images'
positions modulo k; every candidate of a population is fitted at once (batched solves).
"""

from __future__ import annotations

import torch
from torch import Tensor

FOLDS = 5
RIDGE = 0.1  # the ridge penalty per training image, on standardised features


def probe_correct(features: Tensor, labels: Tensor, num_classes: int, folds: int = FOLDS,
                  ridge: float = RIDGE) -> Tensor:
    """Correct held-out predictions per candidate of a k-fold ridge probe: [P] (out of N images).

    Args:
        features: [N, P, C] pooled final features of N images for P candidates (unused channels zero).
        labels: [N] class indices.
        num_classes: the task's number of classes.
    """
    n = features.shape[0]
    x = features.double().transpose(0, 1)  # [P, N, C]
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).double()
    fold = torch.arange(n, device=features.device) % folds
    correct = torch.zeros(x.shape[0], dtype=torch.long, device=features.device)
    for f in range(min(folds, n)):
        train, test = fold != f, fold == f
        if not bool(train.any()):
            continue
        weights, mean, std = _fit(x[:, train], onehot[train], ridge)
        logits = _design((x[:, test] - mean) / std) @ weights
        correct += (logits.argmax(-1) == labels[test].long()).sum(1)
    return correct


def _fit(x: Tensor, onehot: Tensor, ridge: float) -> tuple[Tensor, Tensor, Tensor]:
    """Ridge weights [P, C + 1, K] and the standardisation (mean, std [P, 1, C]) of training features x."""
    mean = x.mean(1, keepdim=True)
    std = x.std(1, keepdim=True, unbiased=False).clamp_min(1e-6)  # an unused channel stays zero
    design = _design((x - mean) / std)
    gram = design.transpose(1, 2) @ design
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    eye[-1, -1] = 0.0  # the bias is not penalised
    weights = torch.linalg.solve(gram + ridge * x.shape[1] * eye, design.transpose(1, 2) @ onehot)
    return weights, mean, std


def _design(x: Tensor) -> Tensor:
    """Features with a bias column: [P, N, C + 1]."""
    return torch.cat([x, torch.ones_like(x[..., :1])], -1)
