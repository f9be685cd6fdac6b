"""Search outputs: Pareto front, best_partition.json readable by --partition, PNGs and markdown."""

import json

from mtl.meta.objectives import DebugObjective
from mtl.meta.optimizers import create_optimizer
from mtl.meta.report import pareto_front, write_report
from mtl.meta.search_loop import run_search
from mtl.meta.space import PartitionBlock, Space
from mtl.meta.results_store import Evaluation


def _e(cid, score, resource, status="ok"):
    return Evaluation(cid, 0, 0, {}, 0, status=status, score=score, resource=resource)


def test_pareto_front_keeps_the_non_dominated_points():
    points = [_e("a", 0.5, 0.2), _e("b", 0.4, 0.3), _e("c", 0.9, 0.8), _e("d", 0.7, 0.5), _e("e", 0.7, 0.6),
              _e("f", None, 0.1, status="failed"), _e("g", 0.5, 0.2)]
    assert [e.candidate_id for e in pareto_front(points)] == ["a", "d", "c"]


def test_report_files(tmp_path):
    space = Space((PartitionBlock(("a", "b", "c")),))
    store = tmp_path / "results.sqlite"
    run_search(store, create_optimizer("es", space, seed=0), DebugObjective(space), budget=48)
    paths = write_report(store, tmp_path / "report")
    for key in ("best_partition", "pareto_front", "progress_png", "pareto_png", "partition_png", "report"):
        assert paths[key].stat().st_size > 0, key
    for key in ("progress_png", "pareto_png", "partition_png"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = json.loads(paths["best_partition"].read_text())
    assert best["tasks"] == ["a", "b", "c"] and len(best["partition"]) == 2
    assert "Pareto front" in paths["report"].read_text()

    from mtl.meta.partition import load_partition  # the --partition reader (another module) accepts it

    partition = load_partition(paths["best_partition"], ["a", "b", "c"])
    assert partition.raw.shape == (1, 2, 3, 3)
