"""Feature-partition search space: raw [U, 2, N, N] tensors, feasible-interval mapping, presets, JSON.

A partition says, per task i, which fraction f_i of a layer's channels it uses (forward matrix
diagonal), how much each pair shares (forward off-diagonal F_ij) and which part of its channels
its gradient may update (backward matrix). Raw values live in the unit cube and are mapped into
each entry's feasible interval, so every raw point is a valid specification (original §3.6).
Only the diagonal and the strict upper triangle of each raw matrix are read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mtl.errors import UserError

FORMAT = "mtl.partition"
VERSION = 1
PRESETS = ("share_all", "independent", "share_fwd_only", "share_fixed", "random", "families")
SHARE_AMT = 0.75  # shared fraction of share_fixed when none is given (the original's share_amt)


@dataclass
class Partition:
    """A point of the search space.

    Attributes:
        raw: float array [U, 2, N, N] in [0, 1]; index 0 = forward, 1 = backward matrix; U = number
            of distinct partitions (1: one partition for every partitioned layer).
        tasks: task names in model order, or None when not tied to tasks.
        seed: seed of the mask sampler (same partition + seed -> same masks).
        preset: name of the preset that produced it, for the record.
        info: free-form JSON-able notes (e.g. share_amt of share_fixed).
    """

    raw: np.ndarray
    tasks: list[str] | None = None
    seed: int = 0
    preset: str | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        raw = np.asarray(self.raw, dtype=np.float64)
        if raw.ndim == 3:
            raw = raw[None]
        if raw.ndim != 4 or raw.shape[1] != 2 or raw.shape[2] != raw.shape[3]:
            raise ValueError(f"partition raw must have shape [U, 2, N, N], got {list(raw.shape)}")
        if not np.all(np.isfinite(raw)):
            raise ValueError("partition raw values must be finite")
        self.raw = np.clip(raw, 0.0, 1.0)
        if self.tasks is not None and len(self.tasks) != self.num_tasks:
            raise ValueError(f"partition has {self.num_tasks} tasks but {len(self.tasks)} names")

    @property
    def num_tasks(self) -> int:
        return self.raw.shape[-1]

    @property
    def num_unique(self) -> int:
        return self.raw.shape[0]

    def fractions(self, unique: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Actual (forward, backward) fraction matrices of one unique partition; see `to_fractions`."""
        return to_fractions(self.raw[unique])

    def channel_use(self) -> np.ndarray:
        """Per-task fraction of channels used (forward diagonal), averaged over unique partitions."""
        return np.mean([np.diag(self.fractions(u)[0]) for u in range(self.num_unique)], axis=0)


def _interp(lo: np.ndarray, hi: np.ndarray, r: np.ndarray) -> np.ndarray:
    return lo + r * (hi - lo)


def _upper_sym(raw: np.ndarray) -> np.ndarray:
    """Symmetric matrix from the strict upper triangle of `raw` (diagonal kept)."""
    upper = np.triu(raw, 1)
    return upper + upper.T + np.diag(np.diag(raw))


def to_fractions(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map one raw [2, N, N] partition to its (forward, backward) fraction matrices.

    forward: diag f_i = raw; F_ij in [max(0, f_i + f_j - 1), min(f_i, f_j)].
    backward: diag b_i = raw * f_i (a task updates a subset of what it uses);
    B_ij in [max(0, b_i + b_j - f_i - f_j + F_ij), min(F_ij, b_i, b_j)].

    Args:
        raw: array [2, N, N] with values in [0, 1]; the lower triangle is ignored.

    Returns:
        (forward, backward): symmetric [N, N] arrays; diagonals are per-task fractions.
    """
    raw = np.clip(np.asarray(raw, dtype=np.float64), 0.0, 1.0)
    rf, rb = _upper_sym(raw[0]), _upper_sym(raw[1])
    f = np.diag(rf)
    fi, fj = f[:, None], f[None, :]
    fwd = _interp(np.maximum(0.0, fi + fj - 1.0), np.minimum(fi, fj), rf)
    np.fill_diagonal(fwd, f)
    b = np.diag(rb) * f
    bi, bj = b[:, None], b[None, :]
    lo = np.maximum(0.0, bi + bj - fi - fj + fwd)
    hi = np.minimum(np.minimum(fwd, bi), bj)
    bwd = _interp(lo, np.maximum(lo, hi), rb)
    np.fill_diagonal(bwd, b)
    return fwd, bwd


def _raw_for(target: float, lo: float, hi: float) -> float:
    return 0.0 if hi - lo < 1e-12 else float(np.clip((target - lo) / (hi - lo), 0.0, 1.0))


def from_fractions(fwd: np.ndarray, bwd: np.ndarray) -> np.ndarray:
    """Inverse of `to_fractions` (where the fractions are feasible): raw [2, N, N], upper triangle."""
    fwd, bwd = np.asarray(fwd, np.float64), np.asarray(bwd, np.float64)
    n = fwd.shape[0]
    raw = np.zeros((2, n, n))
    f, b = np.diag(fwd), np.diag(bwd)
    raw[0][np.diag_indices(n)] = f
    raw[1][np.diag_indices(n)] = [bi / fi if fi > 0 else 1.0 for bi, fi in zip(b, f)]
    for i in range(n):
        for j in range(i + 1, n):
            F = fwd[i, j]
            raw[0, i, j] = _raw_for(F, max(0.0, f[i] + f[j] - 1), min(f[i], f[j]))
            lo = max(0.0, b[i] + b[j] - f[i] - f[j] + F)
            raw[1, i, j] = _raw_for(bwd[i, j], lo, min(F, b[i], b[j]))
    return raw


# --- presets ---------------------------------------------------------------------------------


def preset(name: str, num_tasks: int, *, share_amt: float = SHARE_AMT, seed: int = 0,
           restrict_amt: float = 0.5, num_unique: int = 1, families: Sequence[str] | None = None) -> Partition:
    """A named starting partition.

    Args:
        name: share_all (every task uses and updates every channel); independent (disjoint 1/N
            blocks); share_fwd_only (all use all channels, each updates a disjoint 1/N);
            share_fixed (a common block of `share_amt` plus (1 - share_amt)/N private channels per
            task, backward = forward; its masks are built as blocks, see `share_fixed_masks`); random
            (the original's `restrict` sampler, seeded); families (the oracle of a dataset with task
            families: each family uses its own disjoint block of 1/K of the channels, K = number of
            families, shared by its tasks; nothing shared across families).
        num_tasks: N.
        share_amt: shared fraction for share_fixed.
        seed: seed for `random` and for the mask sampler.
        restrict_amt: mean channel fraction of `random`.
        num_unique: U, number of distinct partitions (one per partitioned layer group).
        families: each task's family name, for `families`.

    Returns:
        The partition, with `preset` set to `name`.
    """
    n = num_tasks
    if name == "random":
        rng = np.random.default_rng(seed)
        raws = [_random_raw(n, rng, restrict_amt) for _ in range(num_unique)]
        return Partition(np.stack(raws), seed=seed, preset=name)
    if name == "share_all":
        fwd, bwd = np.ones((n, n)), np.ones((n, n))
    elif name == "independent":
        fwd = bwd = np.diag(np.full(n, 1.0 / n))
    elif name == "share_fwd_only":
        fwd, bwd = np.ones((n, n)), np.diag(np.full(n, 1.0 / n))
    elif name == "families":
        fwd = bwd = family_fractions(families, n)
    elif name == "share_fixed":
        share_amt = float(share_amt)  # an int 0 would make an integer matrix
        if not 0.0 <= share_amt <= 1.0:
            raise ValueError(f"share_amt must be in [0, 1], got {share_amt}")
        fwd = np.full((n, n), share_amt)
        np.fill_diagonal(fwd, share_amt + (1.0 - share_amt) / n)
        bwd = fwd
    else:
        raise ValueError(f"unknown partition preset {name!r} (choices: {', '.join(PRESETS)})")
    raw = from_fractions(fwd, bwd)
    info = {"share_amt": share_amt} if name == "share_fixed" else {"families": list(families)} if name == "families" else {}
    return Partition(np.repeat(raw[None], num_unique, axis=0), seed=seed, preset=name, info=info)


def family_fractions(families: Sequence[str] | None, num_tasks: int) -> np.ndarray:
    """Fractions of the families oracle: 1/K for every task and pair of one family, 0 across families."""
    if not families or len(families) != num_tasks or not all(families):
        raise UserError("the families partition needs a dataset whose tasks belong to families (mini_families); "
                        f"got families {list(families or [])} for {num_tasks} tasks.")
    names = list(dict.fromkeys(families))
    if len(names) < 2:
        raise UserError(f"the families partition needs tasks of at least two families (got only {names[0]!r}); "
                        "choose tasks from several families with --task_choice.")
    same = np.array([[a == b for b in families] for a in families], dtype=np.float64)
    return same / len(names)


def crossed_families(families: Sequence[str], shift: int = 0) -> list[str] | None:
    """The families oracle's shape with every group crossing the families: for K families of K tasks each,
    group g holds the task of index (g + shift * family index) mod K of every family, so each group has one
    task of each family (K = 2, shifts 0 and 1: the two wrong pairings). None for other layouts.

    A reference for what sharing the *wrong* tasks costs at the oracle's size; `preset("families", n,
    families=crossed_families(...))` builds it."""
    names = list(dict.fromkeys(families))
    members = {f: [i for i, g in enumerate(families) if g == f] for f in names}
    k = len(names)
    if k < 2 or any(len(m) != k for m in members.values()):
        return None
    groups = [""] * len(families)
    for family_index, f in enumerate(names):
        for position, task in enumerate(members[f]):
            groups[task] = f"crossed{(position + shift * family_index) % k}"
    return groups


def family_mix(families: Sequence[str], crossed: Sequence[str], share: float, seed: int = 0) -> Partition:
    """Between the families oracle (share 0) and its shape on the crossed groups (share 1): each task
    keeps its channel fraction and shares `share` of it with its crossed group, the rest with its family."""
    n = len(families)
    fractions = (1.0 - share) * family_fractions(families, n) + share * family_fractions(crossed, n)
    return Partition(from_fractions(fractions, fractions)[None], seed=seed,
                     info={"family_mix": share, "crossed": list(crossed)})


def _family_count(families: Sequence[str]) -> int:
    """K, the number of task families (0 when a task has none)."""
    return len(set(families)) if all(families) else 0


def equal_size_of(fraction: float, families: Sequence[str]) -> float:
    """The channel fraction of an equal-size sample: `fraction`, or 1/K for K task families, else 0.5."""
    kinds = _family_count(families)
    return fraction or (1.0 / kinds if kinds > 1 else 0.5)


def equal_size_presets(families: Sequence[str], fraction: float, family_mix_shares: Sequence[float] = (),
                       seed: int = 0) -> dict[str, Partition]:
    """The named partitions in which every task uses `fraction` of the channels: the families oracle
    when fraction = 1/K, its shape on each crossing of the families and the `family_mix` partitions
    between the two, and share_fixed at that size (when fraction >= 1/N)."""
    n, kinds = len(families), _family_count(families)
    out: dict[str, Partition] = {}
    if kinds > 1 and abs(fraction - 1.0 / kinds) < 1e-9:
        out["families"] = preset("families", n, seed=seed, families=families)
        for shift in range(kinds):  # the oracle's shape on the wrong groups: what the proxy must rank lower
            crossed = crossed_families(families, shift)
            if crossed is not None:
                out[f"crossed_{shift + 1}"] = preset("families", n, seed=seed, families=crossed)
                for share in family_mix_shares:
                    out[f"mix_{shift + 1}_{share:g}"] = family_mix(families, crossed, share, seed)
    if fraction >= 1.0 / n:
        share = (fraction - 1.0 / n) / (1.0 - 1.0 / n)
        out[f"share_fixed_{share:.2g}"] = preset("share_fixed", n, share_amt=share, seed=seed)
    return out


def share_fixed_masks(num_tasks: int, channels: int, share_amt: float) -> np.ndarray:
    """The original's share_fixed masks, bool [N, C] (forward = backward): task i owns the block
    [i a, (i + 1) a) with a = floor(C (1 - s) / N), and every task uses the common block of the
    remaining C - N a channels at the end.

    Unlike the original, an empty common block stays empty (its `mask[-0:]` gave every task every
    channel at s = 0 when N divides C).
    """
    own = int(np.floor(channels * (1.0 - float(share_amt)) / num_tasks))
    common = channels - own * num_tasks
    masks = np.zeros((num_tasks, channels), dtype=bool)
    for i in range(num_tasks):
        masks[i, i * own:(i + 1) * own] = True
        masks[i, channels - common:] = True
    return masks


def layer_masks(partition: Partition, unique: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) bool [N, C] masks of one C-channel site of unique partition `unique`:
    share_fixed partitions as the original's blocks, every other one sampled from its fractions
    (seeded by the partition's seed, the unique index and C)."""
    if partition.preset == "share_fixed" and "share_amt" in partition.info:
        masks = share_fixed_masks(partition.num_tasks, channels, partition.info["share_amt"])
        return masks, masks.copy()
    from mtl.meta.masks import sample_masks

    masks = sample_masks(*partition.fractions(unique), channels, seed=[int(partition.seed), unique, channels])
    return masks.forward, masks.backward


def _random_raw(n: int, rng: np.random.Generator, restrict_amt: float) -> np.ndarray:
    """Original `rand_type=restrict`: diag f ~ N(restrict_amt, .2^2), b ~ N(1, .15^2), rest U(0,1)."""
    raw = rng.uniform(0.0, 1.0, size=(2, n, n))
    raw[0][np.diag_indices(n)] = restrict_amt + 0.2 * rng.standard_normal(n)
    raw[1][np.diag_indices(n)] = 1.0 + 0.15 * rng.standard_normal(n)
    return np.clip(raw, 0.05, 1.0)


# --- JSON ------------------------------------------------------------------------------------


RECORD_KEY = "partition_record"  # optional params entry: {"seed", "preset", "info"} of a partition file


def candidate_partition(params: dict, seed: int, tasks: Sequence[str] | None = None,
                        name: str = "partition") -> Partition:
    """The Partition a search candidate's params describe, its masks seeded by the candidate's seed.

    A candidate re-scoring a saved partition (the pipeline's proxy_scores stage) carries the file's
    seed, preset and info under RECORD_KEY, so it is scored on the very masks its retrain uses
    (share_fixed's exact blocks, the same sampled masks otherwise).
    """
    record = params.get(RECORD_KEY) or {}
    return Partition(np.asarray(params[name], dtype=np.float64), tasks=list(tasks) if tasks else None,
                     seed=int(record.get("seed", seed)), preset=record.get("preset"),
                     info=dict(record.get("info") or {}))


def partition_record(partition: Partition) -> dict:
    """What `candidate_partition` needs besides the raw values to rebuild `partition`'s masks."""
    return {"seed": int(partition.seed), "preset": partition.preset, "info": dict(partition.info)}


def rescoring_params(partition: Partition) -> dict:
    """Search params that score `partition` on its own masks (the inverse of `candidate_partition`)."""
    return {"partition": partition.raw[0].tolist(), RECORD_KEY: partition_record(partition)}


def to_json_dict(partition: Partition) -> dict:
    """The JSON form a search writes (`--partition FILE.json`); fractions are for readers only."""
    fracs = [partition.fractions(u) for u in range(partition.num_unique)]
    return {
        "format": FORMAT,
        "version": VERSION,
        "tasks": partition.tasks,
        "seed": partition.seed,
        "preset": partition.preset,
        "raw": np.round(partition.raw, 6).tolist(),
        "fractions": [{"forward": np.round(f, 4).tolist(), "backward": np.round(b, 4).tolist()}
                      for f, b in fracs],
        "info": partition.info,
    }


def from_json_dict(data: dict | list) -> Partition:
    """Parse `to_json_dict` output. Also accepted: a bare raw list ([2,N,N] or [U,2,N,N]) and a
    search params dict holding it under "partition" (optionally nested in "params", with "tasks")."""
    if isinstance(data, list):
        return Partition(np.asarray(data, dtype=np.float64))
    if "raw" not in data:
        params = data.get("params", data)
        if "partition" not in params:
            raise ValueError("no 'raw' or 'partition' entry")
        return Partition(np.asarray(params["partition"], np.float64), tasks=data.get("tasks"),
                         seed=int(data.get("seed", 0)))
    if data.get("format", FORMAT) != FORMAT or int(data.get("version", VERSION)) > VERSION:
        raise ValueError(f"not an {FORMAT} v{VERSION} file (format={data.get('format')!r}, "
                         f"version={data.get('version')!r})")
    return Partition(np.asarray(data["raw"], dtype=np.float64), tasks=data.get("tasks"),
                     seed=int(data.get("seed", 0)), preset=data.get("preset"),
                     info=dict(data.get("info") or {}))


def save_partition(partition: Partition, path: str | os.PathLike) -> None:
    """Write `partition` as JSON atomically (temp file + rename)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(to_json_dict(partition), fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


def load_partition(path: str | os.PathLike, tasks: Sequence[str] | None = None) -> Partition:
    """Read a partition file, checking it against the model's tasks.

    Args:
        path: JSON file written by `save_partition` (or a search).
        tasks: the model's task names; when given, the file's tasks must match them.

    Raises:
        UserError: missing/unreadable file, bad content, or tasks that do not match.
    """
    try:
        with open(path) as fh:
            partition = from_json_dict(json.load(fh))
    except FileNotFoundError:
        raise UserError(f"partition file {os.fspath(path)!r} does not exist") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read partition file {os.fspath(path)!r}: {e}") from None
    _check_tasks(partition, tasks, os.fspath(path))
    return partition


def _check_tasks(partition: Partition, tasks: Sequence[str] | None, where: str) -> None:
    if tasks is None:
        return
    if partition.num_tasks != len(tasks):
        raise UserError(f"partition {where} is for {partition.num_tasks} tasks, the model has "
                        f"{len(tasks)} ({', '.join(tasks)}); pick a matching --task_choice")
    if partition.tasks is not None and list(partition.tasks) != list(tasks):
        raise UserError(f"partition {where} is for tasks {partition.tasks}, the model has "
                        f"{list(tasks)}; use the same --task_choice (same order)")


def is_partition_file(spec: str) -> bool:
    """Whether a --partition value names a file (else a preset)."""
    return spec.endswith(".json") or os.path.sep in spec


def check_partition_file(spec: str, tasks: Sequence[str]) -> None:
    """A partition given as a file must exist and match `tasks` (a preset's value is checked by
    `check_partition_spec`); UserError otherwise."""
    if is_partition_file(spec):
        load_partition(spec, tasks)


def check_partition_spec(spec: str) -> None:
    """UserError unless `spec` is a partition file name or a preset (`share_fixed:S` with 0 <= S <= 1);
    values only: a file's existence and tasks are checked with the run's inputs."""
    if is_partition_file(spec):
        return
    name, colon, amt = spec.partition(":")
    if name not in PRESETS:
        raise UserError(f"--partition {spec!r} is neither a .json file nor a preset ({', '.join(PRESETS)}); "
                        "give a preset, share_fixed:S with S in [0, 1], or a partition .json file "
                        "(e.g. exp/<search>/best_partition.json).")
    try:
        share = float(amt) if colon else SHARE_AMT
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0 or (colon and name != "share_fixed"):
        raise UserError(f"--partition {spec!r}: only share_fixed takes an amount, share_fixed:S with S a "
                        "fraction in [0, 1] (e.g. share_fixed:0.5).")


def resolve_partition(spec: "Partition | str", tasks: Sequence[str], *, seed: int = 0,
                      share_amt: float = SHARE_AMT, families: Sequence[str] | None = None) -> Partition:
    """A Partition from a preset name, a JSON path or a Partition, tied to `tasks`.

    Args:
        spec: preset name ("share_fixed" or "share_fixed:0.5"), path to a .json file, or a Partition.
        tasks: the model's task names (checked against a file's, and recorded).
        seed: seed of the `random` preset and of the mask sampler (a file keeps its own seed).
        share_amt: default shared fraction of share_fixed.
        families: each task's family (the `families` preset; see `mtl.data.domains.task_families`).
    """
    if isinstance(spec, Partition):
        partition = dataclasses.replace(spec)
        _check_tasks(partition, tasks, "given")
    elif str(spec).endswith(".json") or os.path.sep in str(spec):
        partition = load_partition(spec, tasks)
    else:
        check_partition_spec(str(spec))
        name, _, amt = str(spec).partition(":")
        share = float(amt) if amt else share_amt
        partition = preset(name, len(tasks), share_amt=share, seed=seed, families=families)
    partition.tasks = list(tasks)
    return partition
