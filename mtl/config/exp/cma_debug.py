"""Nevergrad's CMA-ES on the debug objective (a known optimum, no training): the ES debug run's twin.

    python main.py -e cma_debug --config exp.cma_debug
    python main.py -e ngopt_debug --config exp.cma_debug --nevergrad_optimizer NGOpt --budget 2000

10 tasks (90 unit coordinates), 16 candidates per generation; score = -distance to a random target.
"""

from mtl.config.options import dotted

JOB = "search"
OPTIONS = dict(
    dataset="decathlon",  # only for the task names: no data is read
    task_choice="0-1-2-3-4-5-6-7-8-9",
    optimizer="nevergrad",
    nevergrad_optimizer="CMA",
    nevergrad_population=16,
    objective="debug",
    **dotted("objective", target_seed=0, noise=0.0),
    budget=10000,
)
