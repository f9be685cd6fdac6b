"""ES on the debug objective (a known optimum, no training): checks an optimizer in seconds.

    python main.py -e es_debug --config exp.es_debug
    python main.py -e es_debug_noisy --config exp.es_debug --objective_options.noise 0.05 --budget 2000

The original's es_debug settings: 10 tasks, 32 random initial samples, 32 antithetic pairs of which
the top 24 are used, sigma 0.005, lr 1, momentum 0.8, no resource penalty, 10,000 evaluations.
Score = -distance to a random target in unit coordinates (0 at the optimum).
"""

from mtl.config.options import dotted

JOB = "search"
OPTIONS = dict(
    dataset="decathlon",  # only for the task names: no data is read
    task_choice="0-1-2-3-4-5-6-7-8-9",
    optimizer="es",
    **dotted("optimizer", init_random=32, num_deltas=32, num_to_use=24, delta_size=0.005, learning_rate=1.0,
             momentum=0.8, weight_reg="none"),
    objective="debug",
    **dotted("objective", target_seed=0, noise=0.0),
    budget=10000,
)
