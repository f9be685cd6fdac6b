"""ES hyperparameter search: random search over exp.es_dist's ES settings, 50 draws (GPU).

    python main.py -e es_hyperparams --config exp.es_hyperparams      # teachers: exp/teachers/<task>

The original's es_hyperparams: 50 random draws, each a whole exp.es_dist run with 5,000 proxy
evaluations (a nested search under trials/), scored by that run's last generation's mean score. Its
cmd file es.txt: learning rate 0.01-1 (log), momentum 0.5-0.99, sigma 0.01-0.15 (log), num_deltas
and num_to_use 8-12 (integers; num_to_use above num_deltas uses every pair, as the original's slice).
"""

from mtl.config.options import dotted

JOB = "search"
OPTIONS = dict(
    dataset="decathlon",
    task_choice="1-2-3-4-5-6-7-8-9",
    optimizer="random",
    **dotted("optimizer", batch_size=1),  # the original ran one child at a time (num_procs 1)
    search_partition=False,
    hyperparameters=["learning_rate 0.1 0.01 1 log 0", "momentum 0.9 0.5 0.99 linear 0",
                     "delta_size 0.1 0.01 0.15 log 0", "num_deltas 8 8 12 linear 1", "num_to_use 6 8 12 linear 1"],
    objective="search",
    **dotted("objective", config="exp.es_dist", options=dict(budget=5000)),
    budget=50,
    max_retries=1,
)
