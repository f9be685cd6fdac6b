"""The pipeline's table is recomputable from its per-seed results; the share_fixed curve is interpolated
at each variant's resource; best_partition.png plots the fractions of realised masks."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from mtl.jobs.pipeline_table import build_table, render_table, summarize_table, variant_row
from mtl.data.domains import task_families
from mtl.meta.partition import Partition, preset
from mtl.meta.report import partition_figure
from mtl.meta.structure import family_overlap, realised_masks
from mtl.models.factory import build_model

TASKS = ["a", "b"]
SETTINGS = {"dataset": "mini_families", "device": "cpu", "objective": "proxy", "budget": 8, "seed": 0,
            "retrain_seeds": 3, "width": 0.125, "input_res": 24, "teacher_steps": 1, "retrain_steps": 1,
            "partition_layers": "last_stage"}


def _row(variant, channels, accuracies):
    seeds = [{"seed": k, "accuracy": dict(zip(TASKS, acc)), "decathlon_score": 100.0 * k}
             for k, acc in enumerate(accuracies)]
    return variant_row(variant, seeds, channels, 1e3, None, TASKS, "mini_families")


def _table():
    rows = [_row("independent", 0.5, [(0.5, 0.7), (0.6, 0.6), (0.4, 0.6)]),  # means .6 .6 .5 -> .5667
            _row("share_fixed_0.5", 0.75, [(0.7, 0.7), (0.8, 0.6), (0.6, 0.8)]),  # .7 .7 .7 -> .7
            _row("share_all", 1.0, [(0.8, 0.8), (0.8, 0.8), (0.9, 0.7)]),  # .8 .8 .8 -> .8
            _row("es_best", 0.6, [(0.9, 0.7), (0.7, 0.7), (0.8, 0.8)]),  # .8 .7 .8
            _row("families", 0.4, [(0.5, 0.5)] * 3)]
    return build_table(TASKS, rows, SETTINGS, {"es_best": {"within": 0.4, "cross": 0.1}})


def test_mean_std_and_curve_are_recomputed_from_the_seeds():
    table = _table()
    es = table["summary"]["variants"]["es_best"]
    assert es["mean"]["values"] == pytest.approx([0.8, 0.7, 0.8])
    assert es["mean"]["mean"] == pytest.approx(0.76667, abs=1e-4)
    assert es["mean"]["std"] == pytest.approx(np.std([0.8, 0.7, 0.8], ddof=1))
    assert es["per_task"]["a"]["mean"] == pytest.approx(0.8)
    # curve: (0.5, .5667), (0.75, .7), (1.0, .8); at 0.6: .5667 + 0.4 * (.7 - .5667)
    assert es["share_fixed_at_resource"] == pytest.approx(0.56667 + 0.4 * (0.7 - 0.56667), abs=1e-4)
    assert es["margin"] == pytest.approx(es["mean"]["mean"] - es["share_fixed_at_resource"])
    assert table["summary"]["variants"]["families"]["share_fixed_at_resource"] is None  # below the curve's range
    # a saved table, reread, gives the same summary; a changed seed result changes it
    saved = copy.deepcopy(table)
    assert summarize_table(saved) == table["summary"]
    saved["rows"][-1]["seeds"][0]["accuracy"]["a"] = 0.0
    assert summarize_table(saved)["variants"]["es_best"]["mean"]["mean"] != pytest.approx(es["mean"]["mean"])


def test_rendered_table_states_mean_std_margin_and_structure():
    text = render_table(_table())
    assert [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ") and "±" in line][-1] == \
        "| ES best (searched)"
    es_line = next(line for line in text.splitlines() if line.startswith("| ES best"))
    assert "76.7 ± 5.8" in es_line and "62.0" in es_line and "+14.7" in es_line
    assert "| ES best (searched) | 0.40 | 0.10 | yes |" in text


def test_partition_heatmap_plots_the_fractions_of_the_models_realised_masks():
    raw = preset("random", 3, seed=4).raw[0]
    raw[1] = 0.95  # high raw backward values: what a model realises is far less
    model = build_model("partitioned_resnet26", [("x", 2), ("y", 2), ("z", 2)], width=0.25,
                        partition=Partition(raw, tasks=["x", "y", "z"], seed=7), partition_layers="last_stage")
    forward, backward = (m.numpy().astype(np.int64) for m in model.masks())
    channels = forward.shape[1]
    fig = partition_figure(raw.tolist(), ["x", "y", "z"], seed=7, channels=channels)
    for ax, masks in zip(fig.axes[:2], (forward, backward)):
        plotted = np.array([float(t.get_text()) for t in ax.texts]).reshape(3, 3)
        assert plotted == pytest.approx(np.round(masks @ masks.T / channels, 2), abs=0.006)
    assert not np.allclose(np.round(backward @ backward.T / channels, 2), np.round(raw[1], 2))


def test_equal_size_sample_has_one_resource_level_and_the_oracle():
    from mtl.config.loader import load_config
    from mtl.config.options import build_options
    from mtl.jobs.proxy_validation import sample_candidates
    from mtl.jobs.proxy_validation_options import ProxyValidationOptions

    spec = load_config("exp.families_proxy_check")
    opts = build_options(ProxyValidationOptions, dict(spec.options), "test")
    tasks = opts.task_names()
    candidates = sample_candidates(opts, tasks)
    assert [c["id"] for c in candidates[:4]] == ["families", "crossed_1", "crossed_2", "share_fixed_0.33"]
    assert len(candidates) == 4 + opts.num_partitions
    families = task_families("mini_families", tasks)
    for c in candidates[1:3]:  # the oracle's shape on wrong pairs: every block holds one task of each family
        overlap = family_overlap(c["partition"], families, 32)
        assert overlap["within"] == 0.0 and overlap["cross"] == pytest.approx(0.25)
    for c in candidates:
        assert c["partition"].channel_use() == pytest.approx([0.5] * 4)
        used = realised_masks(c["partition"], 32)[0].sum(axis=1)
        # realised: 16 of 32 channels each; share_fixed's original blocks round its private part down
        assert used.tolist() == [16] * 4 if c["id"] != "share_fixed_0.33" else abs(used - 16).max() <= 1
    shared = {tuple(np.round(c["partition"].fractions()[0][np.triu_indices(4, 1)], 3)) for c in candidates}
    assert len(shared) == len(candidates)  # they differ in what they share


def test_family_mix_partitions_move_sharing_from_the_family_to_the_crossed_partner():
    from mtl.config.loader import load_config
    from mtl.config.options import build_options
    from mtl.errors import UserError
    from mtl.jobs.proxy_validation import sample_candidates
    from mtl.jobs.proxy_validation_options import ProxyValidationOptions

    values = {**load_config("exp.families_proxy_check").options, "family_mix": [0.25, 0.5], "num_partitions": 1}
    opts = build_options(ProxyValidationOptions, values, "test")
    tasks = opts.task_names()
    candidates = {c["id"]: c["partition"] for c in sample_candidates(opts, tasks)}
    assert list(candidates) == ["families", "crossed_1", "mix_1_0.25", "mix_1_0.5", "crossed_2", "mix_2_0.25",
                                "mix_2_0.5", "share_fixed_0.33", "e000"]
    families = task_families("mini_families", tasks)
    for name, share in [("mix_1_0.25", 0.25), ("mix_2_0.5", 0.5)]:
        assert candidates[name].channel_use() == pytest.approx([0.5] * 4)
        assert realised_masks(candidates[name], 32)[0].sum(axis=1).tolist() == [16] * 4
        overlap = family_overlap(candidates[name], families, 32)
        assert overlap["within"] == pytest.approx(0.5 * (1 - share)) and overlap["cross"] == pytest.approx(0.25 * share)
    build_options(ProxyValidationOptions, {**values, "num_partitions": 0}, "test").validate()  # 8 named ones
    for bad in ({"family_mix": [1.0]}, {"family_mix": [0.5], "sample": "spread"},
                {"dataset": "mini_decathlon", "task_choice": "0-1", "family_mix": [], "num_partitions": 1},
                {"equal_size_fraction": 0.4, "num_partitions": 3}):  # no oracle at 0.4, so no mixes
        with pytest.raises(UserError, match="family_mix|at least 3 partitions"):
            build_options(ProxyValidationOptions, {**values, **bad}, "test").validate()


def test_families_benchmark_reads_the_saved_tables(tmp_path, capsys):
    import importlib.util
    import json

    from conftest import REPO

    rows = _table()["rows"] + [_row("random_best", 0.6, [(0.6, 0.6)] * 3)]
    table = build_table(TASKS, rows, SETTINGS, {"es_best": {"within": 0.4, "cross": 0.1}})
    (tmp_path / "demo_s0").mkdir()
    (tmp_path / "demo_s0" / "table.json").write_text(json.dumps(table))
    spec = importlib.util.spec_from_file_location("families_benchmark", REPO / "benchmarks" / "families_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--seeds", "0", "--exp_root", str(tmp_path), "--no-run"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("| 0 | 76.7 ± 5.8 | 62.0 | +14.7 | yes | 60.0 ± 0.0 (-2.0) |") and "0.40 / 0.10 | - |" in line
