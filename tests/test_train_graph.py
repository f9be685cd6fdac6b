"""Graph-composed models declared in a config: trained by the train job, plotted, errors naming the node."""

import copy
import json

import pytest

TASKS = ["digits", "shapes", "colors"]
NODES = [
    {"name": "body", "module": [{"type": "conv", "in_channels": 3, "out_channels": 8, "stride": 2},
                                {"type": "conv", "in_channels": 8, "out_channels": 8, "stride": 2}]},
    {"name": "digits", "anchor": "body", "loss_weight": "auto",
     "module": [{"type": "pool"}, {"type": "linear", "in_features": 8, "out_features": "num_classes"}]},
    {"name": "shapes", "anchor": "body", "loss_weight": 2.0,
     "module": [{"type": "conv", "in_channels": 8, "out_channels": 8}, {"type": "pool"},
                {"type": "torch.nn.Linear", "in_features": 8, "out_features": "num_classes"}]},
    {"name": "colors", "anchors": ["body"],
     "module": [{"type": "pool"}, {"type": "linear", "in_features": 8, "out_features": "num_classes"}]},
]
ARGS = ["--device", "cpu", "--batch_size", "8", "--val_max_images", "40", "--prefetch", "0", "--num_rounds", "1",
        "--train_iters", "3", "--log_every", "1"]


def _config(tmp_path, nodes=NODES, **options):
    path = tmp_path / "graph.json"
    values = {"dataset": "mini_decathlon", "task_choice": "-".join(TASKS), "model": "graph",
              "graph_model": nodes, "input_res": 16, **options}
    path.write_text(json.dumps({"job": "train", "options": values}))
    return str(path)


@pytest.mark.parametrize("method", ["pcgrad", "rotograd", "naive"])
def test_graph_model_config_trains_with_a_method(cli, tmp_path, mini_data_dir, method):
    result = cli("-e", "g", "--config", _config(tmp_path), *ARGS, "--data_dir", str(mini_data_dir),
                 "--mtl_method", method)
    assert result.returncode == 0, result.stderr
    results = json.loads((cli.cwd / "exp/g/results.json").read_text())
    assert sorted(results["val_accuracy"]) == sorted(TASKS) and results["steps"] == 3


def test_plot_model_writes_the_png(cli, tmp_path):
    config = _config(tmp_path)
    named = cli("--plot_model", str(tmp_path / "g.png"), "--config", config)
    assert named.returncode == 0, named.stderr
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    default = cli("--plot_model", "--config", config)
    assert default.returncode == 0 and (cli.cwd / "graph_model.png").exists()
    not_graph = cli("--plot_model", "--config", "exp.mini_dec")
    assert not_graph.returncode == 2 and "model='graph'" in not_graph.stderr


def _broken(edit):
    nodes = copy.deepcopy(NODES)
    edit(nodes)
    return nodes


@pytest.mark.parametrize("nodes,fragment", [
    (_broken(lambda n: n[1].update(anchor="bdy")), "graph node 'digits': unknown anchor node 'bdy'; did you mean 'body'"),
    (_broken(lambda n: n[0]["module"][0].update(type="cnv")), "graph node 'body': bad module spec: unknown graph "
                                                              "module type 'cnv'; did you mean 'conv'"),
    (_broken(lambda n: n[0]["module"][1].update(in_channels=4)), "graph node 'body' fails on its inputs"),
    (_broken(lambda n: n[3]["module"][1].update(out_features=7)), "graph node 'colors' outputs shape (2, 7)"),
    (_broken(lambda n: n.pop(2)), "graph_model has no node for task(s) shapes"),
    (_broken(lambda n: n[1].update(anchor="colors")), "graph node 'digits' fails on its inputs"),
    (_broken(lambda n: n[0].update(loss="cross_entropy")), "graph node 'body' has a loss but is not one of the run's tasks"),
])
def test_graph_config_errors_name_the_node_and_exit_2(cli, tmp_path, mini_data_dir, nodes, fragment):
    config = _config(tmp_path, nodes)
    for args in (["-e", "bad", "--config", config, "--data_dir", str(mini_data_dir)],
                 ["--plot_model", "--config", config]):
        result = cli(*args)
        assert result.returncode == 2, result.stderr
        assert fragment in " ".join(result.stderr.split()), result.stderr
        assert "Traceback" not in result.stderr
    assert not (cli.cwd / "exp" / "bad").exists()
