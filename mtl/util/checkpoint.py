"""Atomic, checksummed, tensors-only checkpoints with latest / best / last-N retention.

Layout of a checkpoint folder::

    ckpt-000001200.pt   one file per save: torch.save of a dict of tensors and plain values
    best.pt             copy of the save with the best metric so far
    index.json          format version, and per file: step, sha256, metric (written after the file)

A save writes its file atomically and only then lists it in ``index.json`` (also atomic), so a crash
at any point leaves a consistent index. Every file is loadable with ``torch.load(weights_only=True)``:
no pickled objects. Loading verifies the checksum; a truncated or corrupt latest file is skipped with
a warning and the previous one is used.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from mtl.util.atomic import atomic_write_bytes, atomic_write_json, read_json

FORMAT_VERSION = 1
_log = logging.getLogger("mtl")


class CheckpointStore:
    """Saves and restores the state of one run.

    Args:
        folder: where the checkpoints live (created on first save).
        keep_last: how many recent saves to keep besides best.pt.
        higher_is_better: how `metric` values compare when picking the best save.
    """

    def __init__(self, folder: str | Path, keep_last: int = 3, higher_is_better: bool = True):
        self.folder = Path(folder)
        self.keep_last = max(1, int(keep_last))
        self.higher_is_better = higher_is_better
        self._swept = False

    def _remove_orphans(self) -> None:
        """Temp files of saves a killed process never finished (each a whole checkpoint). Safe: the run
        folder's lock means no other process is writing here."""
        self._swept = True
        for orphan in self.folder.glob(".*.tmp"):
            _log.info("removing %s, left by a save that was cut short", orphan)
            orphan.unlink(missing_ok=True)

    # ----------------------------------------------------------------------------- saving
    def save(self, state: dict[str, Any], step: int, metric: float | None = None) -> Path:
        """Write `state` as the checkpoint of `step`; also as best.pt when `metric` is the best yet.

        Returns:
            The path of the new checkpoint file.
        """
        if not self._swept:
            self._remove_orphans()
        payload = _serialise({"format_version": FORMAT_VERSION, "step": int(step), "state": state})
        name = f"ckpt-{int(step):09d}.pt"
        index = self._read_index()  # before the new file exists: a first save finds no index, and no files
        atomic_write_bytes(self.folder / name, payload)
        entries = [e for e in index["entries"] if e["file"] != name]
        entries.append({"file": name, "step": int(step), "sha256": _sha256(payload), "metric": metric})
        index["entries"] = sorted(entries, key=lambda e: e["step"])
        if metric is not None and self._is_better(metric, index.get("best")):
            atomic_write_bytes(self.folder / "best.pt", payload)
            index["best"] = {"file": "best.pt", "step": int(step), "sha256": _sha256(payload), "metric": metric}
        dropped = index["entries"][: -self.keep_last]
        index["entries"] = index["entries"][-self.keep_last :]
        atomic_write_json(self.folder / "index.json", index)
        for entry in dropped:  # only after the index no longer names them
            (self.folder / entry["file"]).unlink(missing_ok=True)
        return self.folder / name

    # ----------------------------------------------------------------------------- loading
    def load_latest(self) -> tuple[int, dict[str, Any]] | None:
        """(step, state) of the newest intact checkpoint, or None when there is none."""
        for entry in reversed(self._read_index()["entries"]):
            loaded = self._load_entry(entry)
            if loaded is not None:
                return loaded
        return None

    def load_best(self) -> tuple[int, dict[str, Any]] | None:
        """(step, state) of best.pt, or None when there is none (or it is corrupt)."""
        best = self._read_index().get("best")
        return self._load_entry(best) if best else None

    def latest_step(self) -> int | None:
        """Step of the newest listed checkpoint (not verified), None when there is none."""
        entries = self._read_index()["entries"]
        return entries[-1]["step"] if entries else None

    def _load_entry(self, entry: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        path = self.folder / entry["file"]
        try:
            payload = path.read_bytes()
        except OSError as err:
            _log.warning("checkpoint %s cannot be read (%s); trying the previous one", path, err)
            return None
        if _sha256(payload) != entry["sha256"]:
            _log.warning("checkpoint %s is corrupt or truncated (checksum mismatch); trying the previous one", path)
            return None
        data = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: checkpoint format {data.get('format_version')} is not {FORMAT_VERSION}")
        return int(data["step"]), data["state"]

    def _read_index(self) -> dict[str, Any]:
        path = self.folder / "index.json"
        if not path.exists():
            return self._rebuilt_index("is missing") if any(self.folder.glob("ckpt-*.pt")) else _empty_index()
        try:
            index = read_json(path)
            if not isinstance(index, dict) or not isinstance(index.get("entries"), list):
                raise ValueError("not a checkpoint index")
            return index
        except (ValueError, UnicodeDecodeError) as err:
            return self._rebuilt_index(f"is unreadable ({err})")

    def _rebuilt_index(self, why: str) -> dict[str, Any]:
        """The index rebuilt from the checkpoint files themselves (each holds its step); written back."""
        _log.warning("%s %s; rebuilding it from the checkpoint files (the best-metric record is lost, "
                     "best.pt is kept)", self.folder / "index.json", why)
        index = _empty_index()
        for path in sorted(self.folder.glob("ckpt-*.pt")):
            payload = path.read_bytes()
            try:
                data = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
                step = int(data["step"])
            except Exception as err:  # noqa: BLE001 - a truncated file is left out, as a bad checksum would be
                _log.warning("checkpoint %s is unreadable (%s); left out of the rebuilt index", path, err)
                continue
            index["entries"].append({"file": path.name, "step": step, "sha256": _sha256(payload), "metric": None})
        index["entries"].sort(key=lambda e: e["step"])
        best = self.folder / "best.pt"
        if best.exists():
            payload = best.read_bytes()
            try:
                step = int(torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)["step"])
                index["best"] = {"file": "best.pt", "step": step, "sha256": _sha256(payload), "metric": None}
            except Exception:  # noqa: BLE001 - an unreadable best.pt is simply not listed
                pass
        atomic_write_json(self.folder / "index.json", index)
        return index

    def _is_better(self, metric: float, best: dict[str, Any] | None) -> bool:
        if metric is None or (isinstance(metric, float) and math.isnan(metric)):
            return False
        if not best or best.get("metric") is None:
            return True
        return metric > best["metric"] if self.higher_is_better else metric < best["metric"]

    def clear(self) -> None:
        """Remove every checkpoint (used when a run is restarted from scratch)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _empty_index() -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "entries": [], "best": None}


def _serialise(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
