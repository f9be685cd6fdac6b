"""The sharing a partition realises: its sampled masks' channel fractions and overlaps, and by family.

A partition's raw values are not what a network shares: raw 0.95 "backward sharing" between two tasks
that overlap 0.48 forward is far less. Everything here reads the binary masks a model samples from
the partition (`layer_masks`, as `PartitionedResNet26` does), as fractions of the layer's channels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mtl.meta.masks import overlaps
from mtl.meta.partition import Partition, layer_masks

DEFAULT_CHANNELS = 256  # ResNet-26's last stage at full width


def realised_masks(partition: Partition, channels: int, unique: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) bool [N, C]: the masks a partitioned layer of `channels` channels builds from
    `partition` (site `unique`), as `PartitionedResNet26` does."""
    return layer_masks(partition, unique, channels)


def realised_fractions(partition: Partition, channels: int = DEFAULT_CHANNELS,
                       unique: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) [N, N] fractions of channels of the realised masks: diagonal = a task's
    channels (used / updated), off-diagonal = channels two tasks both use / both update."""
    forward, backward = realised_masks(partition, channels, unique)
    return overlaps(forward) / channels, overlaps(backward) / channels


def family_overlap(partition: Partition, families: Sequence[str], channels: int = DEFAULT_CHANNELS) -> dict:
    """Mean realised forward overlap (fraction of channels) of task pairs within a family and across
    families, averaged over the partition's unique sites; None where there is no such pair."""
    families = list(families)
    n = len(families)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    within = [p for p in pairs if families[p[0]] == families[p[1]]]
    cross = [p for p in pairs if families[p[0]] != families[p[1]]]
    sites = [realised_fractions(partition, channels, u)[0] for u in range(partition.num_unique)]

    def mean_over(chosen):
        return float(np.mean([site[i, j] for site in sites for i, j in chosen])) if chosen else None

    return {"within": mean_over(within), "cross": mean_over(cross), "channels": channels,
            "families": families}
