"""Partitioned multi-task ResNet-26 on the mini-decathlon, a few minutes on a CPU.

    python main.py -e mini_mtl --config exp.mini_dec --task_choice 0-1-2 --partition independent

Reduced for CPU: width 0.5 and 32 px inputs (stated in results); everything else as exp.dec.
"""

JOB = "train"
OPTIONS = dict(
    dataset="mini_decathlon",
    task_choice="0-1-2-3-4-5",
    model="partitioned_resnet26",
    partition="share_all",
    width=0.5,
    input_res=32,
    dropout=0.1,
    lr=0.05,
    batch_size=32,
    weight_decay=5e-4,
    num_rounds=4,
    train_iters=150,
    lr_drop_steps=[450],
    curriculum="train_accuracy",
    checkpoint_every=50,
    log_every=10,
    in_memory=True,
)
