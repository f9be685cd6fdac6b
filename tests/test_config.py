"""Option resolution: precedence, types, unknown keys, config files, resume rules, task choice."""

import json

import pytest

from mtl.config.cli import parse_args, resolve_new, resolve_resume
from mtl.config.loader import available_configs, load_config
from mtl.data.domains import DECATHLON, parse_task_choice
from mtl.errors import UserError


def _resolve(argv):
    return resolve_new(parse_args(argv))


def test_precedence_default_config_cli(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("job: toy\nlr: 0.5\nhidden: 8\n")
    _, opts, _ = _resolve(["--config", str(config), "--hidden", "16"])
    assert opts.lr == 0.5          # from the config
    assert opts.hidden == 16       # the command line wins
    assert opts.batch_size == 32   # the default


def test_json_config_with_options_block(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"job": "toy", "options": {"train_iters": 7}}))
    _, opts, name = _resolve(["--config", str(config)])
    assert opts.train_iters == 7 and name == str(config)


def test_unknown_option_suggests_close_match():
    with pytest.raises(UserError, match="did you mean 'train_iters'"):
        _resolve(["--config", "exp.toy", "--train_iter", "3"])


def test_unknown_key_in_config_file_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("job: toy\nlrr: 0.5\n")
    with pytest.raises(UserError, match="did you mean 'lr'"):
        _resolve(["--config", str(config)])


def test_unknown_config_suggests_close_match():
    with pytest.raises(UserError, match="did you mean 'exp.toy'"):
        _resolve(["--config", "exp.tou"])


@pytest.mark.parametrize("flag,value", [("--train_iters", "ten"), ("--lr", "fast"), ("--train_iters", "1.5"),
                                        ("--num_rounds", "0")])
def test_bad_values_are_user_errors(flag, value):
    with pytest.raises(UserError):
        _resolve(["--config", "exp.toy", flag, value])


def test_list_and_bool_values():
    _, opts, _ = _resolve(["--config", "exp.toy", "--lr_drop_rounds", "1,2", "--seed=5"])
    assert opts.lr_drop_rounds == [1, 2] and opts.seed == 5


def test_every_config_module_loads():
    for name in available_configs():
        spec = load_config(name)
        assert spec.job and spec.description, name


def _saved(**options):
    _, opts, name = _resolve(["--config", "exp.toy", *sum((["--" + k, str(v)] for k, v in options.items()), [])])
    import dataclasses
    return {"job": "toy", "config": name, "options": dataclasses.asdict(opts)}


def test_resume_allows_safe_changes_only():
    saved = _saved(num_rounds=2)
    _, opts = resolve_resume(parse_args(["--num_rounds", "5", "--device", "cpu"]), saved)
    assert opts.num_rounds == 5 and opts.device == "cpu"
    with pytest.raises(UserError, match="cannot change hidden"):
        resolve_resume(parse_args(["--hidden", "64"]), saved)


def test_resume_keeps_saved_values_not_config_defaults():
    saved = _saved(hidden=12)
    _, opts = resolve_resume(parse_args([]), saved)
    assert opts.hidden == 12
    # repeating the saved value explicitly is not a change
    resolve_resume(parse_args(["--hidden", "12"]), saved)


def test_task_choice_indices_and_names():
    assert parse_task_choice("1-2-3", DECATHLON) == ["aircraft", "cifar100", "daimlerpedcls"]
    assert parse_task_choice("vgg-flowers-svhn", DECATHLON) == ["vgg-flowers", "svhn"]
    assert parse_task_choice("0", DECATHLON) == ["imagenet12"]
    for bad in ("10", "1-1", "", "cifar10"):
        with pytest.raises(ValueError):
            parse_task_choice(bad, DECATHLON)


def test_stray_argument_is_refused():
    with pytest.raises(UserError, match="unexpected argument"):
        parse_args(["-e", "x", "stray"])
