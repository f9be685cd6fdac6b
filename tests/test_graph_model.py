"""Graph-composed models: structure, validation errors naming the node, 'auto' weights, methods, PNG."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, Linear, MSELoss, Sequential

from mtl.errors import UserError
from mtl.methods import build_method
from mtl.models.graph import Concat, GraphModel, Node, Select



def torchmtl_example():
    """The torchMTL README graph, in its own dict format."""
    torch.manual_seed(0)
    return [
        {"name": "Embed1", "layers": Sequential(Linear(16, 32), Linear(32, 8))},
        {"name": "Embed2", "layers": Sequential(Linear(16, 32), Linear(32, 8))},
        {"name": "CatTask", "layers": Concat(dim=1), "anchor_layer": ["Embed1", "Embed2"]},
        {"name": "Task1", "layers": Sequential(Linear(8, 32), Linear(32, 1)), "loss": MSELoss(),
         "loss_weight": 1.0, "anchor_layer": "Embed1"},
        {"name": "Task2", "layers": Sequential(Linear(8, 64), Linear(64, 1)), "loss": BCEWithLogitsLoss(),
         "loss_weight": 1.0, "anchor_layer": "Embed2"},
        {"name": "FNN", "layers": Sequential(Linear(16, 32), Linear(32, 32)), "anchor_layer": "CatTask"},
        {"name": "Task3", "layers": Sequential(Linear(32, 16), Linear(16, 1)), "anchor_layer": "FNN",
         "loss": MSELoss(), "loss_weight": "auto", "loss_init_val": 1.0},
    ]


def targets(n=8):
    return {"Task1": torch.randn(n, 1), "Task2": torch.rand(n, 1).round(), "Task3": torch.randn(n, 1)}


def test_graph_structure_sharing_and_outputs():
    model = GraphModel(torchmtl_example(), example_input=torch.zeros(2, 16))
    assert model.tasks == ["Task1", "Task2", "Task3"]
    assert model.boundary() == ["Embed1", "Embed2"]
    assert [model.is_shared(n) for n in ("Embed1", "CatTask", "FNN")] == [True, False, False]
    shared = {id(p) for p in model.shared_parameters()}
    assert shared == {id(p) for n in ("Embed1", "Embed2") for p in model.nodes[n].module.parameters()}
    assert any(p is model.log_vars["Task3"] for p in model.task_parameters("Task3"))
    assert not shared & {id(p) for p in model.task_parameters()}
    assert len(model.last_shared_parameters()) == 4  # the last Linear of each embedding
    out = model(torch.randn(8, 16))
    assert {k: tuple(v.shape) for k, v in out.items()} == {t: (8, 1) for t in model.tasks}
    assert [tuple(z.shape) for z in model.shared_parts().representation] == [(8, 8), (8, 8)]


def test_auto_weight_is_uncertainty_weighting():
    model = GraphModel(torchmtl_example())
    out, y = model(torch.randn(8, 16)), targets()
    raw = model.losses(out, y, weighted=False)
    weighted = model.losses(out, y)
    s = model.log_vars["Task3"]
    assert float(s.detach()) == 1.0
    torch.testing.assert_close(weighted[2], 0.5 * torch.exp(-s) * raw[2] + 0.5 * s)
    (grad,) = torch.autograd.grad(weighted[2], s)
    torch.testing.assert_close(grad, 0.5 * (1 - torch.exp(-s) * raw[2]))
    torch.testing.assert_close(weighted[0], raw[0])


def test_auto_weight_converges_instead_of_running_to_minus_infinity():
    model = GraphModel([Node("body", Linear(4, 4)), Node("head", Linear(4, 1), "body", MSELoss(), "auto")])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 4), {"head": torch.randn(32, 1)}
    for _ in range(200):
        optimizer.zero_grad()
        model.losses(model(x), y)[0].backward()
        optimizer.step()
    loss = float(model.losses(model(x), y, weighted=False)[0].detach())
    assert float(model.log_vars["head"].detach()) == pytest.approx(torch.log(torch.tensor(loss)).item(), abs=0.1)


def test_unknown_anchor_names_the_node_and_suggests():
    nodes = torchmtl_example()
    nodes[3]["anchor_layer"] = "Embd1"
    with pytest.raises(UserError, match=r"graph node 'Task1'.*'Embd1'.*did you mean 'Embed1'"):
        GraphModel(nodes)


def test_cycle_is_reported_with_its_nodes():
    nodes = [Node("a", Linear(2, 2), "c"), Node("b", Linear(2, 2), "a"), Node("c", Linear(2, 2), "b"),
             Node("out", Linear(2, 1), "c", MSELoss())]
    with pytest.raises(UserError, match=r"cycle: (a|b|c) -> .* -> (a|b|c)"):
        GraphModel(nodes)


def test_shape_mismatch_found_by_one_dry_forward_names_the_node():
    nodes = torchmtl_example()
    nodes[5]["layers"] = Sequential(Linear(8, 32), Linear(32, 32))  # CatTask gives 16 features
    with pytest.raises(UserError, match=r"graph node 'FNN' fails on its inputs \('CatTask' \(2, 16\)\)"):
        GraphModel(nodes, example_input=torch.zeros(2, 16))


def test_other_declaration_errors():
    with pytest.raises(UserError, match="defined twice"):
        GraphModel([Node("a", Linear(2, 1), loss=MSELoss()), Node("a", Linear(2, 1), loss=MSELoss())])
    with pytest.raises(UserError, match="'dead' feeds no output"):
        GraphModel([Node("dead", Linear(2, 2)), Node("out", Linear(2, 1), loss=MSELoss())])
    with pytest.raises(UserError, match="unknown output node 'nope'"):
        GraphModel([Node("out", Linear(2, 1), loss=MSELoss())], outputs=["nope"])
    with pytest.raises(UserError, match="unknown key"):
        GraphModel([{"name": "out", "layers": Linear(2, 1), "los": MSELoss()}])


def test_select_wrapper_reads_one_input_of_several():
    model = GraphModel([Node("first", Select(0)), Node("out", Linear(3, 1), "first", MSELoss())],
                       example_input=[torch.zeros(2, 3), torch.zeros(2, 5)])
    assert model([torch.ones(4, 3), torch.ones(4, 5)])["out"].shape == (4, 1)


@pytest.mark.parametrize("name", ["pcgrad", "mgda_ub", "rotograd", "sum"])
def test_methods_train_a_graph_model(name):
    model = GraphModel(torchmtl_example(), example_input=torch.zeros(2, 16))
    method = build_method(name, 3)
    adapter = None
    if name == "rotograd":  # RotoGrad needs one representation: a single shared body
        torch.manual_seed(0)
        model = GraphModel([Node("body", Sequential(Linear(16, 8), nn.Tanh())),
                            Node("Task1", Linear(8, 1), "body", MSELoss()),
                            Node("Task2", Linear(8, 1), "body", BCEWithLogitsLoss()),
                            Node("Task3", Linear(8, 1), "body", MSELoss(), "auto")])
        adapter = method.adapt_representation
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(16, 16), targets(16)
    totals = []
    for _ in range(8):
        optimizer.zero_grad()
        losses = model.losses(model(x, adapter=adapter), y)
        totals.append(sum(float(v.detach()) for v in model.losses(model(x), y, weighted=False)))
        method.backward(losses, model.shared_parts())
        optimizer.step()
    assert totals[-1] < totals[0]


def test_plot_writes_a_png(tmp_path):
    model = GraphModel(torchmtl_example())
    path = model.plot(str(tmp_path / "graph.png"))
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_a_graph_config_cannot_import_code(tmp_path, monkeypatch):
    """Issue 14.7: a node type naming a foreign module is refused before anything is imported."""
    from mtl.data.domains import get_dataset
    from mtl.models.graph_config import build_graph_model

    marker = tmp_path / "imported"
    (tmp_path / "foreign_mod.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nimport torch\n"
        "class Evil(torch.nn.Module):\n    def forward(self, x):\n        return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = get_dataset("mini_decathlon")
    nodes = [{"name": "body", "module": {"type": "foreign_mod.Evil"}},
             {"name": "digits", "anchor": "body", "module": [{"type": "pool"}, {"type": "flatten"},
                                                              {"type": "torch.nn.LazyLinear",
                                                               "out_features": "num_classes"}]}]
    with pytest.raises(UserError, match="configs cannot import other code"):
        build_graph_model(nodes, [spec.domain("digits")], input_res=16)
    assert not marker.exists()
