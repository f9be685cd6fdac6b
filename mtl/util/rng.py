"""Seeding, derived seeds, and capture / restore of every global RNG (python, numpy, torch CPU and CUDA).

Captured states hold only tensors, ints and lists so checkpoints stay loadable with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def derive_seed(*keys: int, bits: int = 63) -> int:
    """A seed that is a deterministic function of integer keys (numpy SeedSequence: well spread, stable
    across platforms).

    Args:
        keys: integers (a run seed, a purpose, a task or generation index, ...); taken modulo 2**64.
        bits: 63 (the data streams: loaders, samplers, the train job's per-task streams) or 31 (the
            meta-optimizers' candidate seeds, stored with every evaluation of a search). Both read
            the same SeedSequence words, so each width gives the numbers its former function gave
            (the data's in mtl/data/sampling.py, the search's in mtl/meta/optimizers/base.py);
            tests/test_checkpoint.py pins them.
    """
    if bits not in (31, 63):
        raise ValueError(f"derive_seed: bits must be 31 or 63, got {bits}")
    words = np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in keys]).generate_state(2, np.uint32)
    return int(words[0]) >> 1 if bits == 31 else int(words[0]) << 31 ^ int(words[1])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """The state of every global RNG, as tensors and plain values."""
    version, py_state, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every global RNG back to a state from `capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)
