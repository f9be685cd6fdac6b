"""The proxy's fixed images and the frozen teacher stages on them, computed once and cached.

Per task: a training subset (`train_images` examples drawn from the train split in a seeded order,
each with one seeded augmentation, as the original's training loader would have given them) and a
fixed validation subset (at most `val_images` seeded random images of the val split). Cached per
example: the teacher's trunk output (stem and all stages but the last: the student's input) and, for
training examples, the teacher's last-stage block outputs (the student's targets; see READOUTS for the
last one). With
`cache=False` only the preprocessed images are kept and the teacher runs on every request (same
numbers; the tests check it). The cache lives on the compute device when it fits, else in host memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtl.data import augment
from mtl.data.domains import get_dataset
from mtl.data.store import DomainFile, domain_file_path, is_complete
from mtl.distill.teachers import Teacher
from mtl.errors import UserError

_CHUNK = 256  # images per teacher forward while building the cache
# What the last distilled feature is and how the proxy reads a student out (`proxy_readout`):
#   original    the last block's output after the final BatchNorm + ReLU (the teacher's for the target,
#               the student's own, untrained, for the student), scored by the teacher's head on it;
#   teacher_bn  the last block's raw output, scored through the teacher's final BN + ReLU and head.
#   probe       distilled as the original's, scored by a ridge probe fitted to the student's own kept
#               channels (k-fold on the validation subset; mtl/distill/probe.py) instead of the teacher's head.
READOUTS = ("original", "teacher_bn", "probe")


def distilled(outs: list[Tensor], readout: str) -> list[Tensor]:
    """The distilled features among `ResNet26.features` outputs (blocks..., final map)."""
    return outs[:-1] if readout == "teacher_bn" else outs[:-2] + [outs[-1]]


def teacher_readout(model, task: str, final_block: Tensor, mask: Tensor | None = None) -> Tensor:
    """Logits of `model`'s final BN, ReLU, pooling and head for `task` on last-block outputs [B, C, h, w];
    `mask` ([B, C], optional) zeroes unused channels after the BatchNorm, as a partitioned model does."""
    final = F.relu(model.final_bn[task](final_block))
    return model.head(final if mask is None else final * mask.view(*mask.shape, 1, 1), task)


@dataclass
class _TaskImages:
    """One task's proxy images: teacher inputs (uncached mode) or cached teacher outputs."""

    train: Tensor  # [n, 3, R, R] images, or [n, C_in, H, W] trunk outputs when cached
    targets: Tensor | None  # [n, blocks, C, h, w] when cached
    val: Tensor  # [m, 3, R, R] images, or [m, C_in, H, W] trunk outputs when cached
    val_labels: Tensor  # [m] on the compute device
    teacher_log_probs: Tensor  # [m, K] the teacher's log-softmax on the validation subset


class FeatureCache:
    """Teacher inputs and targets of the proxy's images for every task.

    Args:
        teachers: task -> frozen teacher (task order = proxy task order).
        folder: the prepared dataset folder (holds <domain>.h5).
        dataset: dataset name (for per-domain flags).
        input_res: working resolution (the teachers').
        train_images: cached training examples per task.
        val_images: at most this many validation images per task.
        seed: seed of both subsets and of the augmentation.
        augment: augment the training examples (one seeded draw each).
        device: where the student trains.
        cache: keep teacher outputs (True) or recompute them per batch (False).
        cache_device: "auto" (the device when the cache fits there, else CPU), "cpu" or "device".
        dtype: storage dtype of cached features (float32, or bfloat16 to halve the memory).
        readout: one of READOUTS.
    """

    def __init__(self, teachers: dict[str, Teacher], folder: str | Path, dataset: str, *, input_res: int,
                 train_images: int, val_images: int, seed: int = 0, augment: bool = True,
                 device: torch.device | str = "cpu", cache: bool = True, cache_device: str = "auto",
                 dtype: torch.dtype = torch.float32, readout: str = "original"):
        if readout not in READOUTS:
            raise ValueError(f"unknown proxy readout {readout!r} (choices: {', '.join(READOUTS)})")
        self.proxy_readout = readout
        self.teachers = teachers
        self.tasks = list(teachers)
        self.device = torch.device(device)
        self.cached = cache
        self.dtype = dtype if cache else torch.float32
        self.input_res, self.dataset = input_res, dataset
        specs = get_dataset(dataset)
        store = self._store_device(cache_device, train_images, val_images)
        self.data: list[_TaskImages] = []
        self.teacher_accuracy: dict[str, float] = {}
        for task in self.tasks:
            spec = specs.domain(task)
            file = DomainFile(domain_file_path(folder, task))
            train = _train_inputs(file, train_images, input_res, seed, spec.code, augment and spec.flip_safe,
                                  augment, self.device)
            val, labels = _val_inputs(file, val_images, input_res, seed, spec.code, self.device)
            log_probs = self._teacher_log_probs(task, val)
            self.teacher_accuracy[task] = float((log_probs.argmax(1) == labels).float().mean()) if len(val) else 0.0
            self.data.append(self._task_images(task, train, val, labels, log_probs, store))

    # --- shapes ----------------------------------------------------------------------------------

    @property
    def train_sizes(self) -> list[int]:
        return [len(d.train) for d in self.data]

    @property
    def val_sizes(self) -> list[int]:
        return [len(d.val) for d in self.data]

    def student_shape(self) -> tuple[int, int, int]:
        """(trunk channels, last-stage channels, blocks in the last stage) of the teachers."""
        return next(iter(self.teachers.values())).model.last_stage_shape()

    def nbytes(self) -> int:
        """Bytes held by the cache (or the stored images in uncached mode)."""
        tensors = [t for d in self.data for t in (d.train, d.targets, d.val) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)

    # --- access ----------------------------------------------------------------------------------

    def train_batch(self, t: int, index: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(student input [B, C_in, H, W], targets: the teacher's block outputs [B, C, h, w] each) on device."""
        data = self.data[t]
        if self.cached:
            x = data.train.index_select(0, index.to(data.train.device)).to(self.device, torch.float32)
            targets = data.targets.index_select(0, index.to(data.targets.device)).to(self.device, torch.float32)
            return x, list(targets.unbind(1))
        images = data.train.index_select(0, index.to(data.train.device)).to(self.device)
        x, outs = self._teacher_stages(self.tasks[t], images)
        return x, distilled(outs, self.proxy_readout)

    def val_batches(self, t: int, batch_size: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """(student input, labels, teacher log-probabilities) over task t's validation subset, in order."""
        data = self.data[t]
        for start in range(0, len(data.val), batch_size):
            chunk = data.val[start:start + batch_size].to(self.device, torch.float32)
            x = chunk if self.cached else self._trunk(self.tasks[t], chunk)
            stop = start + batch_size
            yield x, data.val_labels[start:stop], data.teacher_log_probs[start:stop].to(self.device)

    def readout(self, t: int, final_block: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits of the teacher's final BN, ReLU, pooling and head on last-block outputs [B, C, h, w];
        `mask` ([B, C], optional) zeroes unused channels after the BatchNorm, as a partitioned model does."""
        task = self.tasks[t]
        return teacher_readout(self.teachers[task].model, task, final_block, mask)

    def head(self, t: int, final_map: Tensor) -> Tensor:
        """Logits of the teacher's pooling and head on a final feature map (after a final BN + ReLU)."""
        task = self.tasks[t]
        return self.teachers[task].model.head(final_map, task)

    # --- building --------------------------------------------------------------------------------

    @torch.no_grad()
    def _trunk(self, task: str, images: Tensor) -> Tensor:
        return self.teachers[task].model.trunk(images, task)

    @torch.no_grad()
    def _teacher_stages(self, task: str, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        model = self.teachers[task].model
        x = model.trunk(images, task)
        return x, model.features(x, task)

    @torch.no_grad()
    def _teacher_log_probs(self, task: str, val: Tensor) -> Tensor:
        out = []
        for start in range(0, len(val), _CHUNK):
            _, outs = self._teacher_stages(task, val[start:start + _CHUNK])
            out.append(F.log_softmax(self.teachers[task].model.head(outs[-1], task).float(), 1))
        return torch.cat(out)

    def _task_images(self, task: str, train: Tensor, val: Tensor, labels: Tensor, log_probs: Tensor,
                     store: torch.device) -> _TaskImages:
        if not self.cached:
            return _TaskImages(train, None, val, labels, log_probs)
        xs, targets, vals = [], [], []
        for start in range(0, len(train), _CHUNK):
            x, outs = self._teacher_stages(task, train[start:start + _CHUNK])
            xs.append(x.to(store, self.dtype))
            targets.append(torch.stack(distilled(outs, self.proxy_readout), 1).to(store, self.dtype))
        for start in range(0, len(val), _CHUNK):
            vals.append(self._trunk(task, val[start:start + _CHUNK]).to(store, self.dtype))
        pin = store.type == "cpu" and self.device.type == "cuda"
        train_x, train_t, val_x = (_pinned(torch.cat(v), pin) for v in (xs, targets, vals))
        return _TaskImages(train_x, train_t, val_x, labels, log_probs.to(store))

    def _store_device(self, choice: str, train_images: int, val_images: int) -> torch.device:
        """Where cached features live: the compute device when they fit (half its free memory)."""
        if choice == "cpu" or self.device.type != "cuda" or not self.cached:
            return torch.device("cpu") if choice == "cpu" else self.device
        if choice == "device":
            return self.device
        need = self._estimate_bytes(train_images, val_images)
        free, _ = torch.cuda.mem_get_info(self.device)
        return self.device if need < free // 2 else torch.device("cpu")

    def _estimate_bytes(self, train_images: int, val_images: int) -> int:
        task = self.tasks[0]
        probe = torch.zeros(1, 3, self.input_res, self.input_res, device=self.device)
        x, outs = self._teacher_stages(task, probe)
        per_train = x.numel() + sum(o.numel() for o in outs[:-1])
        size = torch.empty((), dtype=self.dtype).element_size()
        return len(self.tasks) * (train_images * per_train + val_images * x.numel()) * size


def data_folder(dataset: str, data_dir: str | Path, tasks: list[str]) -> Path:
    """data_dir/<dataset>: an embedded dataset is built when missing, the decathlon must be prepared."""
    from mtl.data.domains import get_embedded
    from mtl.data.prepare import ensure_embedded

    if get_embedded(dataset) is not None:
        return ensure_embedded(dataset, data_dir)
    folder = Path(data_dir) / dataset
    missing = [t for t in tasks if not is_complete(domain_file_path(folder, t))]
    if missing:
        raise UserError(f"the prepared {dataset} data is missing for {', '.join(missing)} in {folder}; run: "
                        f"python main.py --prepare {dataset} --data_dir {data_dir}")
    return folder


def _pinned(t: Tensor, pin: bool) -> Tensor:
    return t.pin_memory() if pin else t


def _train_inputs(file: DomainFile, count: int, res: int, seed: int, code: int, flip_safe: bool,
                  do_augment: bool, device: torch.device) -> Tensor:
    """`count` training examples: seeded epochs of permutations, each example augmented once."""
    split = file.split("train")
    rng = np.random.default_rng([seed, code, 1])
    epochs = math.ceil(count / len(split))
    order = np.concatenate([rng.permutation(len(split)) for _ in range(epochs)])[:count]
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    mean, std = _stats(file, device)
    out = []
    for start in range(0, count, _CHUNK):
        images = torch.from_numpy(np.asarray(split.images[order[start:start + _CHUNK]])).to(device)
        if do_augment:
            params = augment.sample_params(len(images), res, generator, flip_safe=flip_safe)
            out.append(augment.train_transform(images, params, res=res, mean=mean, std=std))
        else:
            out.append(augment.eval_transform(images, res=res, mean=mean, std=std))
    return torch.cat(out)


def _val_inputs(file: DomainFile, count: int, res: int, seed: int, code: int,
                device: torch.device) -> tuple[Tensor, Tensor]:
    """The fixed validation subset (sorted seeded sample of at most `count` images) and its labels."""
    split = file.split("val")
    rng = np.random.default_rng([seed, code, 2])
    index = np.sort(rng.permutation(len(split))[:min(count, len(split))])
    mean, std = _stats(file, device)
    images = torch.from_numpy(np.asarray(split.images[index])).to(device)
    out = [augment.eval_transform(images[s:s + _CHUNK], res=res, mean=mean, std=std)
           for s in range(0, len(images), _CHUNK)]
    return torch.cat(out), torch.from_numpy(split.labels[index]).to(device)


def _stats(file: DomainFile, device: torch.device) -> tuple[Tensor, Tensor]:
    return (torch.tensor(file.mean, dtype=torch.float32, device=device),
            torch.tensor(file.std, dtype=torch.float32, device=device))
