"""A graph-composed multi-task CNN on three mini-decathlon tasks, trained with an MTL method (CPU, a minute).

    python main.py -e mini_graph --config exp.mini_graph
    python main.py -e mini_graph_mgda --config exp.mini_graph --mtl_method mgda --grad_source representation
    python main.py --plot_model mini_graph.png --config exp.mini_graph

A shared stem; digits and shapes share a second stage, colors reads the stem directly. Node specs
are documented in mtl/models/graph_config.py; 'auto' is learned uncertainty weighting.
"""

JOB = "train"
_HEAD = [{"type": "pool"}, {"type": "linear", "in_features": 32, "out_features": "num_classes"}]
OPTIONS = dict(
    dataset="mini_decathlon",
    task_choice="digits-shapes-colors",
    model="graph",
    graph_model=[
        {"name": "stem", "module": [{"type": "conv", "in_channels": 3, "out_channels": 16},
                                    {"type": "conv", "in_channels": 16, "out_channels": 32, "stride": 2}]},
        {"name": "stage2", "anchor": "stem",
         "module": [{"type": "conv", "in_channels": 32, "out_channels": 32, "stride": 2},
                    {"type": "conv", "in_channels": 32, "out_channels": 32}]},
        {"name": "digits", "anchor": "stage2", "module": _HEAD, "loss_weight": "auto"},
        {"name": "shapes", "anchor": "stage2", "module": _HEAD, "loss_weight": "auto"},
        {"name": "colors", "anchor": "stem", "module": _HEAD, "loss_weight": 1.0},
    ],
    mtl_method="uncertainty",
    input_res=32,
    batch_size=32,
    lr=0.05,
    weight_decay=5e-4,
    num_rounds=3,
    train_iters=100,
    lr_drop_steps=[250],
    checkpoint_every=50,
    log_every=10,
    in_memory=True,
)
