"""MultiDomainLoader: determinism, exact resume, sampling policies, flip safety; eval_batches."""

from __future__ import annotations

import io

import pytest
import torch

from mtl.data import augment
from mtl.data.batches import MultiDomainLoader, eval_batches

from mtl.data.sampling import domain_probabilities, generator_for
from mtl.data.store import DomainFile

DOMAINS = ["digits", "shapes", "colors", "symmetry"]


def _loader(root, **kwargs) -> MultiDomainLoader:
    options = dict(batch_size=8, seed=3, input_res=32, policy="uniform")
    return MultiDomainLoader(root, DOMAINS, **{**options, **kwargs})


def _take(loader, count):
    return [next(loader) for _ in range(count)]


def _same(a, b) -> bool:
    return all(x[0] == y[0] and torch.equal(x[1], y[1]) and torch.equal(x[2], y[2]) for x, y in zip(a, b))


def test_batches_are_shaped_normalized_and_deterministic(mini_root):
    first, second = _loader(mini_root), _loader(mini_root, prefetch=0)
    a, b = _take(first, 6), _take(second, 6)
    assert _same(a, b)  # prefetching does not change the stream
    domain, images, labels = a[0]
    assert domain in DOMAINS and images.shape == (8, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and abs(float(images.mean())) < 1.5
    assert not _same(a, _take(_loader(mini_root, seed=4), 6))
    first.close()


def test_resume_continues_the_same_stream(mini_root):
    reference = _take(_loader(mini_root, policy="train_accuracy"), 7)
    loader = _loader(mini_root, policy="train_accuracy")
    _take(loader, 3)
    buffer = io.BytesIO()
    torch.save(loader.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = _loader(mini_root, policy="train_accuracy")
    resumed.load_state_dict(state)
    assert resumed.step == 3 and _same(_take(resumed, 4), reference[3:])


def test_epochs_cover_every_image_once(mini_root):
    loader = MultiDomainLoader(mini_root, ["colors"], batch_size=40, seed=0, augment=False, prefetch=0)
    size = loader.sizes[0]
    labels = torch.cat([next(loader)[2] for _ in range(size // 40)])
    expected = torch.from_numpy(DomainFile(mini_root / "colors.h5").split("train").labels)
    assert torch.equal(labels.sort().values, expected.sort().values)


def test_train_accuracy_policy_favours_weak_tasks_and_is_checkpointed(mini_root):
    assert domain_probabilities("train_accuracy", [1, 1], [0.5, 0.5]) == [0.5, 0.5]
    expected = (1 - 0.9 + 0.15) ** (1 / 0.3) / ((1 - 0.9 + 0.15) ** (1 / 0.3) + 1.15 ** (1 / 0.3))
    assert domain_probabilities("train_accuracy", [1, 1], [0.9, 0.0])[0] == pytest.approx(expected)
    assert domain_probabilities("proportional", [30, 10], [0, 0]) == [0.75, 0.25]
    loader = _loader(mini_root, policy="train_accuracy")
    _take(loader, 1)  # plans (and prefetches) the next 2 batches with uniform probabilities
    for domain in DOMAINS[1:]:
        loader.update_task_accuracy(domain, 1.0)
    assert loader.probabilities()["digits"] > 0.99
    assert [d for d, _, _ in _take(loader, 8)[2:]] == ["digits"] * 6
    assert loader.state_dict()["accuracies"] == [0.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="unknown sampling policy"):
        _loader(mini_root, policy="nope")


def test_flips_only_for_flip_safe_domains(mini_root):
    loader = MultiDomainLoader(mini_root, ["digits", "glyphs", "shapes"], batch_size=4)
    assert [s.flip_safe for s in loader.sources] == [False, False, True]
    for seed in range(20):
        assert not augment.sample_params(64, 72, generator_for(seed), flip_safe=False).flips.any()
    assert augment.sample_params(64, 72, generator_for(0), flip_safe=True).flips.any()
    ramp = torch.arange(72, dtype=torch.uint8).view(1, 1, 72, 1).expand(2, 72, 72, 3).contiguous()
    params = augment.AugmentParams(torch.full((2, 2), 4), torch.tensor([False, True]),
                                   torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 2), torch.full((2, 2), -100))
    out = augment.train_transform(ramp, params, res=72, mean=torch.zeros(3), std=torch.ones(3) / 255)
    assert torch.allclose(out[0], ramp[0].permute(2, 0, 1).float(), atol=1e-3)  # centre crop, no flip
    assert torch.allclose(out[1], ramp[1].permute(2, 0, 1).float().flip(2), atol=1e-3)


def test_train_on_valid_adds_the_validation_images(mini_root):
    plain = MultiDomainLoader(mini_root, ["colors"], prefetch=0)
    both = MultiDomainLoader(mini_root, ["colors"], train_on_valid=True, prefetch=0)
    file = DomainFile(mini_root / "colors.h5")
    assert both.sizes[0] == plain.sizes[0] + len(file.split("val"))


def test_eval_batches_walk_the_split_in_order(mini_root):
    batches = list(eval_batches(mini_root, "symmetry", "test", batch_size=32, input_res=48))
    data = DomainFile(mini_root / "symmetry.h5").split("test")
    assert batches[0][0].shape == (32, 3, 48, 48)
    assert torch.cat([b[2] for b in batches]).tolist() == data.image_ids.tolist()
    assert torch.cat([b[1] for b in batches]).tolist() == data.labels.tolist()
