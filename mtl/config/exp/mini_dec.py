"""Partitioned multi-task ResNet-26 on the mini-decathlon, a few minutes on a CPU.

    python main.py -e mini_mtl --config exp.mini_dec --task_choice 0-1-2 --partition independent

Reduced for CPU: width 0.25 and 32 px inputs, 1200 steps; otherwise as exp.dec (per-task SGD,
accuracy curriculum, one 10x LR drop at 3/4 of training).
"""

JOB = "train"
OPTIONS = dict(
    dataset="mini_decathlon",
    task_choice="0-1-2-3-4-5",
    model="partitioned_resnet26",
    partition="share_all",
    width=0.25,
    input_res=32,
    dropout=0.1,
    lr=0.1,
    batch_size=32,
    weight_decay=5e-4,
    num_rounds=6,
    train_iters=200,
    lr_drop_steps=[900],
    curriculum="train_accuracy",
    checkpoint_every=50,
    log_every=10,
    in_memory=True,
)
