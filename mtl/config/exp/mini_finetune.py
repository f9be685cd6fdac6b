"""Single-task ResNet-26 on one mini-decathlon domain, a minute or two on a CPU.

    python main.py -e mini_single --config exp.mini_finetune --task_choice 2

Reduced for CPU: width 0.5 and 32 px inputs.
"""

JOB = "train"
OPTIONS = dict(
    dataset="mini_decathlon",
    task_choice="0",
    model="resnet26",
    width=0.5,
    input_res=32,
    dropout=0.1,
    lr=0.05,
    batch_size=32,
    weight_decay=5e-4,
    num_rounds=3,
    train_iters=100,
    lr_drop_steps=[250],
    curriculum="uniform",
    checkpoint_every=50,
    log_every=10,
    in_memory=True,
)
