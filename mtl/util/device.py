"""Resolve the --device option (auto / cpu / cuda / cuda:N) to a torch.device."""

from __future__ import annotations

import torch

from mtl.errors import UserError


def resolve_device(name: str) -> torch.device:
    """auto -> first CUDA device if any, else CPU; cuda / cuda:N are checked to exist."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA device is visible on this machine. Use --device cpu "
                            "(or auto, which picks a GPU when there is one).")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) "
                            f"(cuda:0..cuda:{torch.cuda.device_count() - 1}).")
        return torch.device("cuda", index)
    raise UserError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N.")
