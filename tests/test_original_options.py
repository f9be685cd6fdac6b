"""Options of the original kept beside ours: the curriculum's temperature and bias, its fixed curriculum,
clip_grad."""

import numpy as np
import pytest
import torch

from mtl.data.batches import MultiDomainLoader
from mtl.data.sampling import domain_probabilities, load_task_order
from mtl.models.resnet import ResNet26
from mtl.train.task_step import train_step
from mtl.train.optim import make_sgd
from mtl.util.checkpoint import CheckpointStore


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


def _original_fixed(order, num_tasks, step):
    """The original's sample_task in training: its fixed curriculum (dec_order.npy) cycled by the
    global step, and its uniform curriculum, a round robin."""
    return order[step % len(order)] if order is not None else step % num_tasks


@pytest.mark.parametrize("order", [None, [2, 0, 0, 1, 2]])
def test_fixed_curriculum_follows_the_order_like_the_originals(mini_root, order):
    domains = ["digits", "shapes", "colors"]
    loader = MultiDomainLoader(mini_root, domains, batch_size=4, input_res=16, policy="fixed", order=order)
    assert [next(loader)[0] for _ in range(12)] == [domains[_original_fixed(order, 3, s)] for s in range(12)]
    counts = [1, 1, 1] if order is None else [2, 1, 2]
    assert list(loader.probabilities().values()) == pytest.approx([c / sum(counts) for c in counts])
    resumed = MultiDomainLoader(mini_root, domains, batch_size=4, input_res=16, policy="fixed", order=order)
    resumed.load_state_dict(loader.state_dict())
    assert [next(resumed)[0] for _ in range(4)] == [domains[_original_fixed(order, 3, s)] for s in range(12, 16)]
    loader.close(), resumed.close()


def test_task_order_files_and_their_errors(tmp_path):
    np.save(tmp_path / "dec_order.npy", np.array([1, 0, 1]))
    (tmp_path / "order.json").write_text("[2, 2, 0]")
    (tmp_path / "bad.json").write_text("[0, 3]")
    assert load_task_order(str(tmp_path / "dec_order.npy"), 3) == [1, 0, 1]
    assert load_task_order(str(tmp_path / "order.json"), 3) == [2, 2, 0]
    with pytest.raises(ValueError, match="outside 0..2"):
        load_task_order(str(tmp_path / "bad.json"), 3)
    with pytest.raises(ValueError, match="cannot read"):
        load_task_order(str(tmp_path / "missing.npy"), 3)


FIXED = ["--config", "exp.mini_dec", "--device", "cpu", "--width", "0.125", "--input_res", "16",
         "--batch_size", "8", "--task_choice", "digits-shapes-colors", "--num_rounds", "1", "--train_iters", "10",
         "--val_max_images", "16", "--prefetch", "0", "--curriculum", "fixed"]


def test_train_job_steps_each_task_as_the_fixed_order_says(cli, mini_data_dir, tmp_path):
    np.save(tmp_path / "dec_order.npy", np.array([0, 0, 2]))
    result = cli("-e", "fixed", *FIXED, "--data_dir", str(mini_data_dir), "--curriculum_order",
                 str(tmp_path / "dec_order.npy"))
    assert result.returncode == 0, result.stderr
    saved = CheckpointStore(cli.cwd / "exp/fixed/checkpoints").load_latest()[1]
    assert saved["train"]["seen"] == {"digits": 7, "shapes": 0, "colors": 3}  # steps 0..9 of 0,0,2,0,0,2,...


def test_bad_or_unused_curriculum_order_is_a_user_error_before_the_run_folder(cli, mini_data_dir, tmp_path):
    (tmp_path / "bad.json").write_text("[0, 5]")
    bad = cli("-e", "bad", *FIXED, "--data_dir", str(mini_data_dir), "--curriculum_order", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "outside 0..2" in bad.stderr
    unused = cli("-e", "unused", *FIXED[:-2], "--data_dir", str(mini_data_dir), "--curriculum_order", "x.json")
    assert unused.returncode == 2 and "--curriculum fixed" in unused.stderr
    assert not (cli.cwd / "exp/bad").exists() and not (cli.cwd / "exp/unused").exists()
