"""The prepared per-domain HDF5 file: layout constants and a reader that memory-maps the images.

Layout of ``<data_dir>/<domain>.h5`` (FORMAT_VERSION 1)::

    attrs: format_version, dataset, domain, code, num_classes, res, mean[3], std[3] (train pixels in [0,1]),
           complete (set last; a file without it is half-written)
    categories/ids (K,) int64, categories/names (K,) str     row k = class index k
    <split>/images (N, res, res, 3) uint8                      split in train, val, test
    <split>/labels (N,) int64 (-1 where unlabelled), <split>/image_ids (N,) int64,
    <split>/skipped_ids (S,) int64; attrs: labelled, annotated (image count in the annotations)

Images are stored contiguous and uncompressed, not chunked: the file can then be memory-mapped, so a
random batch costs one page-cache copy per image (a chunked layout reads whole chunks per index).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mtl.data.devkit import Category
from mtl.errors import UserError

FORMAT_VERSION = 1


def domain_file_path(data_dir: str | Path, domain: str) -> Path:
    return Path(data_dir) / f"{domain}.h5"


def is_complete(path: str | Path) -> bool:
    """Whether `path` is a fully written prepared file of the current format."""
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False)) and int(f.attrs.get("format_version", -1)) == FORMAT_VERSION
    except (OSError, ValueError):
        return False


@dataclass
class SplitData:
    """One split's arrays; `images` is (N, res, res, 3) uint8 (a read-only memory map unless in memory)."""

    images: np.ndarray
    labels: np.ndarray
    image_ids: np.ndarray
    labelled: bool

    def __len__(self) -> int:
        return len(self.labels)


class DomainFile:
    """Read access to one prepared domain file.

    Args:
        path: the ``<domain>.h5`` file.
        in_memory: copy images into RAM instead of memory-mapping them.
    """

    def __init__(self, path: str | Path, *, in_memory: bool = False):
        self.path = Path(path)
        if not is_complete(self.path):
            raise UserError(
                f"{self.path} is missing or half-written. Prepare the data first: "
                f"python main.py --prepare <dataset> --data_dir {self.path.parent}"
            )
        self.in_memory = in_memory
        with h5py.File(self.path, "r") as f:
            a = f.attrs
            self.dataset, self.domain = str(a["dataset"]), str(a["domain"])
            self.code, self.num_classes, self.res = int(a["code"]), int(a["num_classes"]), int(a["res"])
            self.mean = [float(x) for x in a["mean"]]
            self.std = [float(x) for x in a["std"]]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["categories/names"][...]]
            self.categories = [Category(int(i), n) for i, n in zip(f["categories/ids"][...], names)]
        self._splits: dict[str, SplitData] = {}

    def split(self, name: str) -> SplitData:
        """The arrays of split `name` (train, val or test); cached."""
        if name not in self._splits:
            self._splits[name] = self._read_split(name)
        return self._splits[name]

    def _read_split(self, name: str) -> SplitData:
        with h5py.File(self.path, "r") as f:
            if name not in f:
                raise KeyError(f"{self.path} has no split {name!r}")
            g = f[name]
            ds = g["images"]
            offset = ds.id.get_offset()
            if offset is None or self.in_memory:
                images = ds[...]
            else:
                images = np.memmap(self.path, dtype=np.uint8, mode="r", offset=offset, shape=ds.shape)
            return SplitData(images, g["labels"][...], g["image_ids"][...], bool(g.attrs["labelled"]))
