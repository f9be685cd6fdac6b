"""Curriculum baselines: exp.dec trained on a 4 x 4 grid of curriculum temperature x bias (GPU).

    python main.py -e curriculum_baselines --config exp.curriculum_baselines --backend local \
        --objective_options.options '{"backbone": "exp/imagenet"}'      # one GPU each; exp.imagenet's run

The original's curriculum_baselines: a grid of 4 values per dimension (ends included, log-spaced) of
the train_accuracy curriculum p ∝ (1 - acc + bias)^(1/temperature), each a full multi-task training
(a nested run under trials/); score = mean validation accuracy. Its cmd file curriculum.txt:
"--temperature .6 .05 2 log 0" and "--curriculum_bias .05 .01 .5 log 0".
"""

from mtl.config.options import dotted

JOB = "search"
OPTIONS = dict(
    dataset="decathlon",
    task_choice="1-2-3-4-5-6-7-8-9",
    optimizer="grid",
    **dotted("optimizer", steps=4, batch_size=16),
    search_partition=False,
    hyperparameters=["curriculum_temperature 0.6 0.05 2 log 0", "curriculum_bias 0.05 0.01 0.5 log 0"],
    objective="train",
    **dotted("objective", config="exp.dec"),
    budget=16,
    max_retries=1,
)
