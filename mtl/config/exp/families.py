"""Partitioned multi-task ResNet-26 on the task-families benchmark (mtl/data/families.py), a minute on a CPU.

    python main.py -e fam_oracle --config exp.families --partition families
    python main.py -e fam_fixed --config exp.families --partition share_fixed:0.33

The benchmark whose best partition is known: two families of two tasks (handwritten digits twice,
photo patches twice), little data per task, every conv of the last stage partitioned, capacity tight
(width 0.125, 32 px). Otherwise as exp.mini_dec (per-task SGD, accuracy curriculum, one 10x LR drop).
"""

from mtl.config.exp.mini_dec import OPTIONS as _MINI

JOB = "train"
OPTIONS = {
    **_MINI,
    "dataset": "mini_families",
    "task_choice": "0-1-2-3",
    "width": 0.125,
    "input_res": 32,
    "partition_layers": "last_stage",
    "num_rounds": 3,
    "train_iters": 300,
    "lr_drop_steps": [675],
    "val_max_images": 0,
    "eval_batch_size": 300,
}
