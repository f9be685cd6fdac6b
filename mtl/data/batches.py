"""Training and evaluation batches from prepared HDF5 files, augmented on the target device.

``MultiDomainLoader`` is an endless stream of (domain, images, labels), one domain per batch, chosen by a
sampling policy; uint8 batches are read by sorted index from memory-mapped files in a background thread
(pinned when the device is CUDA), then moved to the device and augmented there. Its ``state_dict()``
(plain ints, floats, strings, lists and tensors) resumes the exact same stream.
``eval_batches`` walks one split of one domain in order without augmentation.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from mtl.data import augment
from mtl.data.domains import get_dataset
from mtl.data.sampling import IndexStream, choose_domain, domain_probabilities, fixed_domain, generator_for
from mtl.data.store import DomainFile, SplitData, domain_file_path

STATE_VERSION = 1


class _Source:
    """One domain's images for a loader: one split, or train + val concatenated (train_on_valid)."""

    def __init__(self, file: DomainFile, splits: Sequence[str], device: torch.device):
        self.file = file
        self.parts: list[SplitData] = [file.split(s) for s in splits]
        self.bounds = np.cumsum([0] + [len(p) for p in self.parts])
        self.size = int(self.bounds[-1])
        self.flip_safe = _flip_safe(file)
        self.mean = torch.tensor(file.mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(file.std, dtype=torch.float32, device=device)

    def read(self, indices: np.ndarray, pin: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (N, H, W, 3) images and int64 labels at sorted `indices`."""
        images, labels = [], []
        for part, lo, hi in zip(self.parts, self.bounds[:-1], self.bounds[1:]):
            local = indices[(indices >= lo) & (indices < hi)] - lo
            if len(local):
                images.append(part.images[local])
                labels.append(part.labels[local])
        batch = torch.from_numpy(np.concatenate(images) if len(images) > 1 else images[0])
        target = torch.from_numpy(np.concatenate(labels) if len(labels) > 1 else labels[0])
        return (batch.pin_memory(), target.pin_memory()) if pin else (batch, target)


def _flip_safe(file: DomainFile) -> bool:
    try:
        return get_dataset(file.dataset).domain(file.domain).flip_safe
    except (KeyError, ValueError):
        return False  # unknown domain: never flip (the safe choice)


class MultiDomainLoader:
    """Endless training batches over several domains, deterministic for a seed and resumable.

    Args:
        data_dir: folder with the prepared ``<domain>.h5`` files.
        domains: domain names, in task order.
        batch_size: images per batch.
        device: where batches are delivered (and augmented).
        seed: stream seed (domains, indices and augmentation all derive from it).
        policy: "uniform", "proportional", "train_accuracy" or "fixed" (see mtl.data.sampling).
        split: split to train on (normally "train").
        train_on_valid: train on train + val, as the decathlon rules allow.
        augment: apply the training augmentation (else only resize + normalize).
        input_res: working resolution; below 72 the batch is downscaled on the device (CPU demos).
        prefetch: batches read ahead in a background thread (0 = read on demand).
        in_memory: copy the images into RAM instead of memory-mapping the files.
        curriculum: (temperature, bias) of the train_accuracy policy; None = the original's defaults.
        order: domain positions the "fixed" policy cycles through; None = round robin.
        shard: (rank, world size) of data-parallel training: every rank plans the same stream of
            `batch_size` (global) batches and delivers its contiguous slice of each, reading and
            augmenting only that slice; the state is the same on every rank.
    """

    def __init__(self, data_dir: str | Path, domains: Sequence[str], *, batch_size: int = 64,
                 device: str | torch.device = "cpu", seed: int = 0, policy: str = "uniform",
                 split: str = "train", train_on_valid: bool = False, augment: bool = True,
                 input_res: int = 72, prefetch: int = 2, in_memory: bool = False,
                 curriculum: tuple[float, float] | None = None, order: Sequence[int] | None = None,
                 shard: tuple[int, int] = (0, 1)):
        if not domains:
            raise ValueError("MultiDomainLoader needs at least one domain")
        self.domains = list(domains)
        self.batch_size, self.seed, self.policy = int(batch_size), int(seed), policy
        self.curriculum = {} if curriculum is None else {"temperature": curriculum[0], "bias": curriculum[1]}
        self.order = None if order is None else [int(k) for k in order]
        if self.order is not None and not all(0 <= k < len(self.domains) for k in self.order):
            raise ValueError(f"order positions must be in 0..{len(self.domains) - 1}")
        self.device = torch.device(device)
        rank, world = shard
        if self.batch_size % world or not 0 <= rank < world:
            raise ValueError(f"shard {shard} does not split batches of {self.batch_size}")
        self._slice = slice(rank * self.batch_size // world, (rank + 1) * self.batch_size // world)
        self.augment, self.input_res, self.prefetch = augment, int(input_res), int(prefetch)
        splits = [split, "val"] if train_on_valid and split == "train" else [split]
        files = [DomainFile(domain_file_path(data_dir, d), in_memory=in_memory) for d in self.domains]
        self.sources = [_Source(f, splits, self.device) for f in files]
        self.streams = [IndexStream(s.size, self.seed, k) for k, s in enumerate(self.sources)]
        self.accuracies = [0.0] * len(self.domains)
        domain_probabilities(policy, self.sizes, self.accuracies)  # validates the policy name
        self.step = 0  # batches delivered so far
        self._planned: deque[tuple[int, int, np.ndarray]] = deque()  # (step, domain index, indices)
        self._reads: deque[Future] = deque()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mtl-loader") if self.prefetch else None

    # ------------------------------------------------------------------ public

    @property
    def sizes(self) -> list[int]:
        return [s.size for s in self.sources]

    @property
    def num_classes(self) -> dict[str, int]:
        return {d: s.file.num_classes for d, s in zip(self.domains, self.sources)}

    def probabilities(self) -> dict[str, float]:
        """Current sampling probability per domain."""
        return dict(zip(self.domains, self._probabilities()))

    def update_task_accuracy(self, domain: str, accuracy: float) -> None:
        """Feed a domain's latest training accuracy (fraction in [0, 1]) to the train_accuracy policy.

        It affects batches planned from now on (the `prefetch` already planned ones keep their domain).
        """
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy}")
        self.accuracies[self.domains.index(domain)] = float(accuracy)

    def __iter__(self) -> "MultiDomainLoader":
        return self

    def __next__(self) -> tuple[str, torch.Tensor, torch.Tensor]:
        """(domain name, float images (N, 3, R, R) normalized on device, int64 labels on device)."""
        self._fill()
        step, k, indices = self._planned.popleft()
        images, labels = self._reads.popleft().result() if self._executor else self._read(k, indices)
        self.step = step + 1
        self._fill()  # start the next read before this batch's device work
        return (self.domains[k], self._transform(k, step, images, len(indices)),
                labels.to(self.device, non_blocking=True))

    def state_dict(self) -> dict:
        """Plain-typed state (torch.load(weights_only=True) safe): position, accuracies, planned batches."""
        return {
            "version": STATE_VERSION, "seed": self.seed, "policy": self.policy, "domains": list(self.domains),
            "batch_size": self.batch_size, "step": self.step,
            "streams": [s.state_dict() for s in self.streams], "accuracies": list(self.accuracies),
            "planned": [{"step": s, "domain": k, "indices": torch.from_numpy(i.copy())}
                        for s, k, i in self._planned],
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue the stream saved by `state_dict` (same domains, batch size and seed required)."""
        for key in ("seed", "domains", "batch_size", "policy"):
            if state[key] != getattr(self, key):
                raise ValueError(f"loader state has {key}={state[key]!r}, this loader {getattr(self, key)!r}")
        self._cancel_reads()
        self.step = int(state["step"])
        for stream, position in zip(self.streams, state["streams"]):
            stream.load_state_dict(position)
        self.accuracies = [float(a) for a in state["accuracies"]]
        self._planned = deque((int(p["step"]), int(p["domain"]), p["indices"].numpy().astype(np.int64))
                              for p in state["planned"])
        self._reads = deque(self._submit(k, i) for _, k, i in self._planned) if self._executor else deque()

    def close(self) -> None:
        """Stop the background reader."""
        self._cancel_reads()
        if self._executor:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __del__(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ internals

    def _fill(self) -> None:
        """Plan (and start reading) batches until `prefetch` are ahead, or the next one on demand."""
        while len(self._planned) < max(1, self.prefetch):
            step = self.step + len(self._planned)
            if self.policy == "fixed":
                k = fixed_domain(self.order, len(self.domains), step)
            else:
                k = choose_domain(self._probabilities(), self.seed, step)
            indices = self.streams[k].take(self.batch_size)
            self._planned.append((step, k, indices))
            if self._executor:
                self._reads.append(self._submit(k, indices))

    def _probabilities(self) -> list[float]:
        return domain_probabilities(self.policy, self.sizes, self.accuracies, order=self.order, **self.curriculum)

    def _submit(self, k: int, indices: np.ndarray) -> Future:
        return self._executor.submit(self._read, k, indices)

    def _read(self, k: int, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sources[k].read(indices[self._slice], pin=self.device.type == "cuda")

    def _transform(self, k: int, step: int, images: torch.Tensor, planned: int) -> torch.Tensor:
        source = self.sources[k]
        images = images.to(self.device, non_blocking=True)
        if not self.augment:
            return augment.eval_transform(images, res=self.input_res, mean=source.mean, std=source.std)
        params = augment.sample_params(planned, self.input_res, generator_for(self.seed, 3, step),
                                       flip_safe=source.flip_safe)
        if len(images) != planned:  # a data-parallel shard: this rank's images' draws
            params = augment.AugmentParams(*(getattr(params, f.name)[self._slice]
                                             for f in dataclasses.fields(params)))
        return augment.train_transform(images, params, res=self.input_res, mean=source.mean, std=source.std)

    def _cancel_reads(self) -> None:
        for future in self._reads:
            future.cancel()
        for future in self._reads:
            if not future.cancelled():
                future.result()
        self._reads.clear()


def eval_batches(data_dir: str | Path, domain: str, split: str = "val", *, batch_size: int = 256,
                 device: str | torch.device = "cpu", input_res: int = 72,
                 in_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batches of one split in stored order, without augmentation.

    Yields:
        (normalized float images (N, 3, R, R) on device, int64 labels on device (-1 where the split is
        unlabelled), int64 image ids on the CPU).
    """
    device = torch.device(device)
    file = DomainFile(domain_file_path(data_dir, domain), in_memory=in_memory)
    data = file.split(split)
    mean = torch.tensor(file.mean, dtype=torch.float32, device=device)
    std = torch.tensor(file.std, dtype=torch.float32, device=device)
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        images = torch.from_numpy(np.array(data.images[start:stop])).to(device)  # copy: the map is read-only
        labels = torch.from_numpy(data.labels[start:stop]).to(device)
        yield (augment.eval_transform(images, res=input_res, mean=mean, std=std), labels,
               torch.from_numpy(data.image_ids[start:stop].copy()))
