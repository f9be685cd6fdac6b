"""Evaluation of a trained model: accuracy and loss of every task on a split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mtl.data.batches import eval_batches
from mtl.train.metrics import correct_count
from mtl.train.task_step import autocast


@torch.no_grad()
def evaluate(model: nn.Module, data_dir: str | Path, tasks: list[str], split: str, *, device: torch.device,
             input_res: int, batch_size: int, max_images: int = 0, amp: bool = False,
             channels_last: bool = False, keep_predictions: bool = False) -> dict[str, dict[str, Any]]:
    """Accuracy and loss of every task on a split (the first `max_images` images, 0 = all).

    Returns:
        task -> {"accuracy", "loss", "count"} plus "image_ids" and "predicted" lists when
        `keep_predictions` (labels of an unlabelled split are -1: accuracy is then meaningless).
    """
    model.eval()
    results = {}
    for task in tasks:
        total_loss, correct, count, ids, predicted = 0.0, 0, 0, [], []
        for images, labels, image_ids in eval_batches(data_dir, task, split, batch_size=batch_size,
                                                      device=device, input_res=input_res):
            if max_images and count >= max_images:
                break
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                logits = model(images, task).float()
            labelled = labels >= 0
            if labelled.any():
                total_loss += F.cross_entropy(logits[labelled], labels[labelled], reduction="sum").item()
                correct += correct_count(logits[labelled], labels[labelled])
            count += len(labels)
            if keep_predictions:
                ids.extend(image_ids.tolist())
                predicted.extend(logits.argmax(1).tolist())
        results[task] = {"accuracy": correct / max(count, 1), "loss": total_loss / max(count, 1), "count": count}
        if keep_predictions:
            results[task].update(image_ids=ids, predicted=predicted)
    return results
