"""Partitioned multi-task ResNet-26 on Visual Decathlon, the original's settings (GPU).

    python main.py -e partitioned_mtl_network --config exp.dec --task_choice 1-2-3-4 --backbone exp/imagenet
    python main.py -e mtl9 --config exp.dec --backbone exp/imagenet --partition exp/my_es/best_partition.json

Tasks 1-9 on the ImageNet backbone (--backbone: a finished exp.imagenet run; without one,
--last_third_only false), last third trained, lr 0.05, batch 64, 40 rounds x 5000 steps = 200k
steps with a 10x LR drop at 150k, accuracy curriculum.
"""

JOB = "train"
OPTIONS = dict(
    dataset="decathlon",
    task_choice="1-2-3-4-5-6-7-8-9",
    model="partitioned_resnet26",
    partition="random",  # the original's default; pass share_all / independent / share_fixed:S / a file
    last_third_only=True,
    dropout=0.3,
    lr=0.05,
    batch_size=64,
    weight_decay=1e-4,
    num_rounds=40,
    train_iters=5000,
    lr_drop_steps=[150000],
    curriculum="train_accuracy",
    checkpoint_every=1000,
    log_every=100,
    val_max_images=3000,
    in_memory=True,
)
