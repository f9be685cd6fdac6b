"""The search loop: ask the optimizer -> skip recorded candidates -> evaluate (with retries) -> record -> tell.

Why a kill at any moment loses nothing and repeats nothing:
- each finished evaluation is its own committed row (candidate ids are unique), written as it finishes;
- candidates are a pure function of (seed, generation, optimizer state), so after a restart the
  optimizer, restored from its last saved state, proposes the same generation with the same ids,
  and only the unrecorded ones are evaluated;
- `tell()` always receives the rows read back from the store, so an interrupted and an
  uninterrupted search feed the optimizer bit-identical numbers;
- the state after generation g is saved once all of g's rows exist. A kill between the last row
  and the state only means g is told again from its rows on resume: same result;
- an optimizer whose state is not JSON (Nevergrad: `replays_history`) is rebuilt fresh and told the
  stored generations again in order instead of loading a state: the same numbers in, the same state out;
- an evaluation that fails while a stop (SIGTERM) is pending is not recorded: it was probably cut
  short by the stop, and is evaluated again on continue.
"""

from __future__ import annotations

import json
import logging
import math
import traceback
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Sequence

from mtl.errors import UserError
from mtl.meta.optimizers.base import Candidate, MetaOptimizer
from mtl.meta.results_store import Evaluation, ResultsStore
from mtl.meta.pool import EvaluationError, WorkerPool
from mtl.meta.workers import InProcessPool
from mtl.util.faults import maybe_inject_fault

_logger = logging.getLogger(__name__)


def run_search(store_path: str | Path, optimizer: MetaOptimizer, objective: Callable | None = None,
               pool: WorkerPool | None = None, budget: int = 10_000, logger: logging.Logger | None = None,
               writer: Any = None, stop_flag: Any = None, max_retries: int = 2) -> dict:
    """Run (or continue) a search until `budget` evaluations are recorded or the optimizer is done.

    Args:
        store_path: SQLite results file (created, or continued when it exists).
        optimizer: a fresh meta-optimizer; its saved state is loaded from the store on continue.
        objective: `evaluate(params, seed) -> dict`; only used when `pool` is None (in-process).
        pool: a WorkerPool; the caller owns (and closes) it.
        budget: total evaluations (failed ones count) in the store when the search stops.
        logger: defaults to this module's logger.
        writer: optional TensorBoard-like object with `add_scalar(tag, value, step)`.
        stop_flag: optional mtl.util.signals.StopFlag, threading.Event or callable -> bool; checked
            after each recorded evaluation (graceful stop on SIGTERM: nothing recorded is lost).
        max_retries: extra attempts for an evaluation that raised or whose worker crashed.

    Returns:
        {"evaluations", "ok", "failed", "generations", "best", "reason"}; reason is "budget",
        "finished" (the optimizer has nothing left) or "stopped".
    """
    log = logger or _logger
    if pool is None and objective is None:
        raise ValueError("run_search needs an objective or a pool")
    own_pool = pool is None
    pool = pool or InProcessPool(objective)
    try:
        with ResultsStore(store_path) as store:
            _check_settings(store, optimizer)
            _restore(store, optimizer, log)
            reason = _loop(store, optimizer, pool, budget, log, writer, stop_flag, max_retries)
            return summarize(store, optimizer.generation, reason)
    finally:
        if own_pool:
            pool.close()


def _loop(store, optimizer, pool, budget, log, writer, stop_flag, max_retries) -> str:
    while True:
        if _stop_requested(stop_flag):
            return "stopped"
        candidates = [] if optimizer.finished else optimizer.ask()
        if not candidates:
            return "finished"
        recorded = store.get(c.id for c in candidates)
        todo = [c for c in candidates if c.id not in recorded]
        room = budget - store.count()
        if todo and room <= 0:
            return "budget"
        if not _evaluate(todo[:room], store, pool, max_retries, stop_flag, log):
            return "stopped"
        rows = store.get(c.id for c in candidates)
        if len(rows) < len(candidates):
            return "budget"
        evaluations = [rows[c.id] for c in candidates]
        optimizer.tell(evaluations)
        store.save_state(optimizer.generation - 1, optimizer.state_dict())
        _log_generation(optimizer.generation - 1, evaluations, store, log, writer)


def _evaluate(candidates: Sequence[Candidate], store: ResultsStore, pool: WorkerPool, max_retries: int,
              stop_flag, log) -> bool:
    """Evaluate and record every candidate, retrying failures; False if stopped early."""
    attempts: Counter[str] = Counter()
    queue = list(candidates)
    while queue:
        futures = {pool.submit(c): c for c in queue}
        queue = []
        for future in pool.as_completed(futures):
            candidate = futures[future]
            attempts[candidate.id] += 1
            evaluation = to_evaluation(candidate, future, attempts[candidate.id])
            if not evaluation.ok and _stop_requested(stop_flag):
                # Probably cut short by the stop itself (an interrupted training, a killed worker):
                # leave it unrecorded so that --continue evaluates it again.
                log.warning("%s did not finish before the stop; it is evaluated again on continue", candidate.id)
                return False
            if not evaluation.ok and attempts[candidate.id] <= max_retries:
                log.warning("%s failed (attempt %d of %d), retrying: %s", candidate.id, attempts[candidate.id],
                            max_retries + 1, _last_line(evaluation.error))
                queue.append(candidate)
                continue
            if not evaluation.ok:
                log.error("%s failed after %d attempts: %s", candidate.id, attempts[candidate.id], evaluation.error)
            store.record(evaluation)
            maybe_inject_fault("search_record", store.count())  # crash tests: MTL_FAULT=KILL@search_record=K
            if _stop_requested(stop_flag):
                return False
    return True


def to_evaluation(candidate: Candidate, future: Future, attempts: int) -> Evaluation:
    """The record of one attempt: ok with the objective's numbers, or failed with its error."""
    base = dict(candidate_id=candidate.id, generation=candidate.generation, position=candidate.position,
                params=candidate.params, seed=candidate.seed, attempts=attempts)
    try:
        outcome = future.result()
    except EvaluationError as exc:
        return Evaluation(**base, status="failed", error=str(exc))
    except Exception as exc:  # Ray task errors, cancelled futures, ...
        return Evaluation(**base, status="failed", error="".join(traceback.format_exception_only(exc)))
    try:
        fields = _check_result(outcome["result"])
    except (KeyError, TypeError, ValueError) as exc:
        return Evaluation(**base, status="failed", error=f"invalid objective result: {exc!r}")
    return Evaluation(**base, **fields, worker=outcome["worker"], duration=float(outcome["duration"]))


def _check_result(result: dict) -> dict:
    """Validate and normalize an objective's dict to plain floats."""
    score = float(result["score"])
    if not math.isfinite(score):
        raise ValueError(f"score is {score}")
    resource = result.get("resource")
    return {
        "score": score,
        "per_task": {str(k): float(v) for k, v in dict(result.get("per_task") or {}).items()},
        "resource": None if resource is None else float(resource),
        "resource_per_task": {str(k): float(v) for k, v in dict(result.get("resource_per_task") or {}).items()},
    }


def _check_settings(store: ResultsStore, optimizer: MetaOptimizer) -> None:
    """Refuse to continue a search with a different optimizer, options, seed or space."""
    described = json.loads(json.dumps(optimizer.describe(), sort_keys=True))
    stored = store.get_meta("search")
    if stored is None:
        store.set_meta("search", described)
    elif stored != described:
        changed = sorted(k for k in set(stored) | set(described) if stored.get(k) != described.get(k))
        raise UserError(f"{store.path} holds a search with different settings ({', '.join(changed)} differ); "
                        f"continue it with the original settings or start a new run")


def _restore(store: ResultsStore, optimizer: MetaOptimizer, log) -> None:
    latest = store.latest_state()
    if latest is not None and getattr(optimizer, "replays_history", False):
        optimizer.replay(_generations(store, latest[0] + 1))
    elif latest is not None:
        optimizer.load_state_dict(latest[1])
    if store.count():
        log.info("continuing search at generation %d with %d recorded evaluations", optimizer.generation,
                 store.count())


def _generations(store: ResultsStore, count: int) -> list[list[Evaluation]]:
    """The rows of generations 0 .. count-1, each in ask order (position)."""
    by_generation: dict[int, list[Evaluation]] = {g: [] for g in range(count)}
    for evaluation in store.evaluations():
        if evaluation.generation < count:
            by_generation[evaluation.generation].append(evaluation)
    return [sorted(by_generation[g], key=lambda e: e.position) for g in range(count)]


def _log_generation(generation: int, evaluations: list[Evaluation], store: ResultsStore, log, writer) -> None:
    ok = [e for e in evaluations if e.ok]
    step = store.count()
    best = store.max_score()
    best = float("nan") if best is None else best
    mean = sum(e.score for e in ok) / len(ok) if ok else float("nan")
    log.info("generation %d: %d/%d ok, mean score %.4f, best so far %.4f, %d evaluations", generation, len(ok),
             len(evaluations), mean, best, step)
    if writer is None:
        return
    writer.add_scalar("search/score_mean", mean, step)
    writer.add_scalar("search/best_score", best, step)
    writer.add_scalar("search/failed", len(evaluations) - len(ok), step)
    resources = [e.resource for e in ok if e.resource is not None]
    if resources:
        writer.add_scalar("search/resource_mean", sum(resources) / len(resources), step)
    for key, tag in (("resource_per_task", "resource"), ("per_task", "score")):
        # each task over the evaluations that have it (a runner's variants may cover different tasks)
        for task in dict.fromkeys(t for e in ok for t in getattr(e, key)):
            values = [getattr(e, key)[task] for e in ok if task in getattr(e, key)]
            writer.add_scalar(f"search/{tag}/{task}", sum(values) / len(values), step)


def summarize(store: ResultsStore, generations: int, reason: str = "") -> dict:
    """Counts and the best ok evaluation of a store."""
    ok = store.evaluations("ok")
    best = max(ok, key=lambda e: e.score, default=None)
    return {
        "evaluations": store.count(), "ok": len(ok), "failed": store.count("failed"), "generations": generations,
        "best": None if best is None else {"candidate_id": best.candidate_id, "score": best.score,
                                           "resource": best.resource, "params": best.params},
        "reason": reason,
    }


def _stop_requested(flag) -> bool:
    """Accepts mtl.util.signals.StopFlag (`.requested`), threading.Event (`.is_set()`) or a callable."""
    if flag is None:
        return False
    if hasattr(flag, "requested"):
        return bool(flag.requested)
    if hasattr(flag, "is_set"):
        return flag.is_set()
    return bool(flag())


def _last_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[-1] if (text or "").strip() else ""
