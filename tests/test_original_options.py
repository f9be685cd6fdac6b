"""Options of the original kept beside ours: the curriculum's temperature and bias, clip_grad."""

import numpy as np
import pytest
import torch

from mtl.data.sampling import domain_probabilities
from mtl.models.resnet import ResNet26
from mtl.train.loop import train_step
from mtl.train.optim import make_sgd


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


@pytest.mark.parametrize("temperature,bias", [(0.3, 0.15), (0.05, 0.01), (2.0, 0.5)])
def test_curriculum_is_the_originals_softmax_of_log_error(temperature, bias):
    acc = np.array([0.9, 0.5, 0.1])
    ours = domain_probabilities("train_accuracy", [1, 1, 1], acc.tolist(), temperature=temperature, bias=bias)
    assert ours == pytest.approx(_softmax(np.log(1 - acc + bias) / temperature))


def test_clip_grad_bounds_the_gradient_norm_of_the_step():
    torch.manual_seed(0)
    model = ResNet26([("a", 3)], width=0.125)
    opt = make_sgd(model.parameters_for("a"), 0.1, 0.0, 0.0, False)
    before = [p.detach().clone() for g in opt.param_groups for p in g["params"]]
    train_step(model, opt, "a", torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), amp=False, clip_grad=1e-3)
    after = [p for g in opt.param_groups for p in g["params"]]
    step = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before)))
    assert step.item() == pytest.approx(0.1 * 1e-3, rel=1e-3)  # lr x clipped norm
