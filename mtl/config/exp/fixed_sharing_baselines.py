"""Fixed-sharing baselines: exp.dec trained with share_fixed partitions at s = 0, .25, .5, .75, 1 (GPU).

    python main.py -e fixed_sharing --config exp.fixed_sharing_baselines --backend local \
        --objective_options.options '{"backbone": "exp/imagenet"}'      # one GPU each; exp.imagenet's run
    python main.py -e fixed_sharing_mini --config exp.fixed_sharing_baselines \
        --objective_options.config exp.mini_dec --dataset mini_decathlon --task_choice 0-1-2 --device cpu

A grid of 5 values of share_amt (each task: (1 - s)/N private channels plus a common block of s),
each a full multi-task training (a nested run under trials/); score = mean validation accuracy.
The original's cmd file fixed_sharing.txt: "--share_amt .75 0 1 linear 0".
"""

from mtl.config.options import dotted

JOB = "search"
OPTIONS = dict(
    dataset="decathlon",
    task_choice="1-2-3-4-5-6-7-8-9",
    optimizer="grid",
    **dotted("optimizer", steps=5, batch_size=5),
    search_partition=False,
    hyperparameters=["share_amt 0.75 0 1 linear 0"],
    objective="train",
    **dotted("objective", config="exp.dec"),
    budget=5,
    max_retries=1,
)
