"""Seeded mask sampler: determinism, target overlaps, backward within forward."""

import numpy as np
import pytest

from mtl.meta.masks import overlaps, sample_masks
from mtl.meta.partition import preset, share_fixed_masks
from mtl.models import build_model


def test_same_partition_and_seed_give_same_masks():
    fwd, bwd = preset("random", 5, seed=1).fractions()
    a, b = sample_masks(fwd, bwd, 64, seed=[1, 0, 64]), sample_masks(fwd, bwd, 64, seed=[1, 0, 64])
    c = sample_masks(fwd, bwd, 64, seed=[2, 0, 64])
    assert np.array_equal(a.forward, b.forward) and np.array_equal(a.backward, b.backward)
    assert not np.array_equal(a.forward, c.forward)


def test_sampler_recovers_realisable_overlaps_within_one_channel():
    # Targets measured on random ground-truth masks are realisable by construction.
    rng = np.random.default_rng(0)
    errors = []
    for trial in range(12):
        n, c = int(rng.integers(2, 8)), int(rng.choice([32, 64, 256]))
        fwd = rng.random((n, c)) < rng.uniform(0.1, 1, size=(n, 1))
        fwd[:, 0] = True
        bwd = fwd & (rng.random((n, c)) < rng.uniform(0.3, 1, size=(n, 1)))
        masks = sample_masks(overlaps(fwd) / c, overlaps(bwd) / c, c, seed=trial)
        report = masks.report()
        errors += [report["forward"]["mean_abs_error_channels"], report["backward"]["mean_abs_error_channels"]]
        assert np.array_equal(masks.forward.sum(1), fwd.sum(1))
    assert np.mean(errors) < 1.0


@pytest.mark.parametrize("name", ["share_all", "independent", "share_fwd_only", "share_fixed"])
def test_presets_are_sampled_exactly(name):
    fwd, bwd = preset(name, 4).fractions()
    masks = sample_masks(fwd, bwd, 256, seed=0)
    report = masks.report()
    assert report["forward"]["max_abs_error_channels"] == 0
    assert report["backward"]["max_abs_error_channels"] == 0
    if name == "independent":
        assert masks.forward.sum(0).max() == 1 and masks.forward.sum() == 256


def test_backward_masks_lie_inside_forward_masks_and_counts_match():
    for seed in range(5):
        part = preset("random", 6, seed=seed)
        fwd, bwd = part.fractions()
        masks = sample_masks(fwd, bwd, 128, seed=seed)
        assert not np.any(masks.backward & ~masks.forward)
        assert np.all(masks.forward.sum(1) == np.maximum(1, np.rint(np.diag(fwd) * 128)))
        report = masks.report()
        assert np.array(report["forward"]["achieved"]).shape == (6, 6)


@pytest.mark.parametrize("n,c,own,common", [(3, 64, 5, 49), (3, 256, 21, 193), (9, 64, 1, 55), (9, 256, 7, 193)])
def test_share_fixed_masks_are_the_originals_blocks(n, c, own, common):
    # a = floor(C (1 - s) / N) private channels per task, the other C - N a channels common (s = .75)
    model = build_model("partitioned_resnet26", [(f"t{i}", 2) for i in range(n)], partition="share_fixed:0.75",
                        width=c / 256)
    fwd, bwd = (m.numpy() for m in model.masks(channels=c))
    assert (fwd == bwd).all() and list(fwd.sum(1)) == [own + common] * n
    assert fwd[:, c - common:].all() and (fwd[:, :c - common].sum(0) == 1).all()
    assert [list(np.flatnonzero(fwd[i, :c - common])) for i in range(n)] == \
        [list(range(i * own, (i + 1) * own)) for i in range(n)]


def test_share_fixed_at_zero_is_disjoint_when_tasks_divide_the_channels():
    # the original gave every task every channel here (an empty common block sliced as mask[-0:])
    masks = share_fixed_masks(4, 64, 0.0)
    assert list(masks.sum(1)) == [16] * 4 and (masks.sum(0) == 1).all()
    assert list(share_fixed_masks(9, 64, 0).sum(1)) == [8] * 9  # 7 own + 1 common
    assert share_fixed_masks(3, 64, 1.0).all()


def test_int_zero_share_fixed_preset_is_a_float_partition():
    part = preset("share_fixed", 4, share_amt=0)
    fwd, bwd = part.fractions()
    assert part.raw.dtype == np.float64
    assert np.allclose(np.diag(fwd), 0.25) and np.allclose(fwd[0, 1], 0.0) and np.allclose(np.diag(bwd), 0.25)


def test_a_rescored_partition_file_gets_the_masks_of_its_retrain():
    """The pipeline's proxy_scores stage re-scores saved partitions: share_fixed must be scored on its exact
    blocks (not masks sampled from its fractions) and every file on its own mask seed, not the candidate's."""
    from mtl.meta.partition import candidate_partition, layer_masks, partition_record

    fixed = preset("share_fixed", 4, share_amt=1 / 3, seed=7)
    params = {"partition": fixed.raw[0].tolist(), "partition_record": partition_record(fixed)}
    rescored = candidate_partition(params, seed=12345)
    for got, want in zip(layer_masks(rescored, 0, 32), layer_masks(fixed, 0, 32)):
        np.testing.assert_array_equal(got, want)
    bare = candidate_partition({"partition": fixed.raw[0].tolist()}, seed=12345)
    assert not np.array_equal(layer_masks(bare, 0, 32)[0], layer_masks(fixed, 0, 32)[0])

    searched = preset("random", 4, seed=3)
    searched.seed = 99  # the seed its search candidate had, which its retrain samples with
    params = {"partition": searched.raw[0].tolist(), "partition_record": partition_record(searched)}
    np.testing.assert_array_equal(layer_masks(candidate_partition(params, seed=1), 0, 32)[0],
                                  layer_masks(searched, 0, 32)[0])
