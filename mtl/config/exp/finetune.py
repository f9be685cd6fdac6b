"""Single-task ResNet-26 fine-tuning on one Visual Decathlon domain, the original's settings (GPU).

    python main.py -e single_task_network --config exp.finetune --task_choice 2

10 rounds x 5000 steps, LR drop at 30k, last third trained. Finished runs serve as teachers and
pretrained backbones (--init_from exp/<id>).
"""

JOB = "train"
OPTIONS = dict(
    dataset="decathlon",
    task_choice="1",
    model="resnet26",
    last_third_only=True,
    dropout=0.3,
    lr=0.05,
    batch_size=64,
    weight_decay=1e-4,
    num_rounds=10,
    train_iters=5000,
    lr_drop_steps=[30000],
    curriculum="uniform",
    checkpoint_every=1000,
    log_every=100,
    in_memory=True,
)
