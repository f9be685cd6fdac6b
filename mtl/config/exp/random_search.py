"""Random search over feature partitions with the distillation proxy: the baseline for exp.es_dist.

    python main.py -e random_partitions --config exp.random_search

Partitions are drawn like ES's initial samples (the original's "restrict" sampler: channel fraction
0.5 +- 0.2 per task); the same 10,000-evaluation budget as exp.es_dist, 16 candidates in flight.
"""

from mtl.config.options import dotted

JOB = "search"
OPTIONS = dict(
    dataset="decathlon",
    task_choice="1-2-3-4-5-6-7-8-9",
    optimizer="random",
    **dotted("optimizer", batch_size=16),
    objective="proxy",
    **dotted("objective", teachers="teachers"),  # exp/teachers/: one exp.finetune run per task
    budget=10000,
)
