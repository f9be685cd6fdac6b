"""Single-task baselines: exp.finetune per task in three variants, three trials each (GPU).

    python main.py -e single_task_baselines --config exp.single_task_baselines --backend local \
        --objective_options.options '{"backbone": "exp/imagenet"}'      # one GPU each; exp.imagenet's run

The original's single_task_baselines (a runner over exps.finetune): for every task 1-9, "last_third"
(exp.finetune as it is: ImageNet backbone, last third trained), "full" (every layer trained) and
"scratch" (no backbone, every layer trained, 30 rounds, LR drop at 100k); trials 0-2 of each, the
variants of one trial sharing a seed. Candidates trial_<k>/<task>_<variant>, 81 trainings.
"""

from mtl.config.options import dotted

JOB = "search"
OPTIONS = dict(
    dataset="decathlon",
    task_choice="1-2-3-4-5-6-7-8-9",
    optimizer="runner",
    **dotted(
        "optimizer",
        variants={
            "last_third": {},
            "full": {"last_third_only": False},
            "scratch": {"backbone": "none", "last_third_only": False, "num_rounds": 30, "lr_drop_steps": [100000]},
        },
        trials=3,
        per_task=True,
    ),
    search_partition=False,
    objective="train",
    **dotted("objective", config="exp.finetune"),
    budget=81,
    max_retries=1,
)
