"""Search spaces: ranges (linear/log, int/float) sample in range, vector <-> params round trips."""

import numpy as np
import pytest

from mtl.errors import UserError
from mtl.meta.space import Hyperparameter, PartitionBlock, Space, parse_hyperparameters

ES_TXT = """\
--learning_rate 1e-1 .01 1 log 0
--momentum .9 .5 .99 linear 0
--delta_size .1 .01 .15 log 0
--num_deltas 8 8 12 linear 1
--num_to_use 6 8 12 linear 1
"""


def _space() -> Space:
    return Space((PartitionBlock(("a", "b", "c")), *parse_hyperparameters(ES_TXT),
                  Hyperparameter("batch", 1, 1024, "log", integer=True)))


def test_parse_es_txt_reads_the_originals_format():
    lr, momentum, delta, num_deltas, _ = parse_hyperparameters(ES_TXT)
    assert (lr.name, lr.low, lr.high, lr.scale, lr.integer, lr.default) == ("learning_rate", 0.01, 1.0, "log", False, 0.1)
    assert momentum.scale == "linear" and not momentum.integer
    assert num_deltas.integer and (num_deltas.low, num_deltas.high) == (8, 12) and isinstance(num_deltas.low, int)


def test_log_and_int_ranges_sample_in_range():
    space = _space()
    rng = np.random.default_rng(0)
    values = [space.to_params(space.sample(rng)) for _ in range(2000)]
    for hp in space.blocks[1:]:
        xs = np.array([v[hp.name] for v in values])
        assert xs.min() >= hp.low and xs.max() <= hp.high, hp.name
        if hp.integer:
            assert all(isinstance(v[hp.name], int) for v in values)
            assert set(xs.tolist()) == set(range(int(hp.low), int(hp.high) + 1)) or hp.scale == "log"
    # log scale: about half the draws below the geometric midpoint
    lr = np.array([v["learning_rate"] for v in values])
    assert 0.45 < np.mean(lr < 0.1) < 0.55
    batch = np.array([v["batch"] for v in values])
    assert 0.4 < np.mean(batch < 32) < 0.6 and batch.min() <= 2 and batch.max() >= 700


def test_int_linear_range_gives_every_value_an_equal_share():
    hp = Hyperparameter("n", 8, 12, integer=True)
    counts = np.bincount([hp.to_value(u) for u in np.linspace(0, 1, 10_001)])[8:]
    assert len(counts) == 5 and counts.min() > 0.19 * 10_001


def test_unit_vector_round_trips_through_params():
    space = _space()
    u = space.sample(np.random.default_rng(1))
    params = space.to_params(u)
    back = space.to_vector(params)
    part = slice(0, space.blocks[0].dim)
    np.testing.assert_allclose(back[part], u[part])
    floats = [i for i, b in enumerate(space.blocks[1:], space.blocks[0].dim) if not b.integer]
    np.testing.assert_allclose(back[floats], u[floats])
    assert space.to_params(back) == params  # integers map to the centre of their share


def test_partition_is_symmetric_with_forward_diagonal_as_resource():
    block = PartitionBlock(("a", "b", "c"))
    space = Space((block,))
    u = space.sample(np.random.default_rng(2))
    mat = np.array(space.to_params(u)["partition"])
    assert mat.shape == (2, 3, 3) and (mat >= 0).all() and (mat <= 1).all()
    np.testing.assert_array_equal(mat, mat.transpose(0, 2, 1))
    assert space.resource_per_task({"partition": mat}) == {t: mat[0, i, i] for i, t in enumerate("abc")}
    assert space.penalty_mask().sum() == 3 and space.dim == 12
    masks = space.task_masks()
    assert masks.shape == (3, 12) and masks.sum(axis=0).max() == 2  # a shared entry belongs to two tasks


def test_partition_samples_follow_the_restrict_draw():
    block = PartitionBlock(tuple("abcd"))
    draws = np.array([block.sample(np.random.default_rng(s)) for s in range(300)])
    fwd, bwd = draws[:, block.forward_diag_mask()], draws[:, block.backward_diag_mask()]
    assert draws.min() >= 0.05 and draws.max() <= 1.0
    assert abs(fwd.mean() - 0.5) < 0.03 and bwd.mean() > 0.85


def test_spec_round_trip_and_bad_declarations():
    space = _space()
    assert Space.from_spec(space.spec()) == space
    with pytest.raises(UserError, match="log scale"):
        Hyperparameter("x", 0.0, 1.0, "log")
    with pytest.raises(UserError, match="scale"):
        Hyperparameter("x", 0.0, 1.0, "cubic")
    with pytest.raises(UserError, match="duplicate"):
        Space((Hyperparameter("x", 0, 1), Hyperparameter("x", 0, 2)))
    with pytest.raises(UserError, match="lack"):
        space.to_vector({"partition": np.ones((2, 3, 3))})


def test_fixed_fraction_partition_block_searches_only_the_sharing():
    import numpy as np

    from mtl.meta.space import PartitionBlock, Space

    block = PartitionBlock(("a", "b", "c"), fixed_fraction=0.5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        value = np.asarray(block.to_value(block.sample(rng)))
        assert np.diag(value[0]).tolist() == [0.5] * 3 and value[0, 0, 1] != value[0, 0, 2]
    assert block.resource_per_task(block.to_value(np.ones(block.dim))) == {"a": 0.5, "b": 0.5, "c": 0.5}
    space = Space((block,))
    assert Space.from_spec(space.spec()).blocks == (block,)  # resumes with the same space
    assert "fixed_fraction" not in Space((PartitionBlock(("a", "b")),)).spec()[0]  # older searches' spec unchanged
