"""ES over feature partitions scored by the distillation proxy, the original's es_dist settings (GPU).

    python main.py -e es_optimization_test --config exp.es_dist       # teachers: exp/teachers/<task>
    python main.py -e es_optimization_test --continue                  # after a crash or preemption
    python main.py -e es_multi_gpu --config exp.es_dist --backend local   # one worker per visible GPU

Tasks 1-9; 32 random initial partitions, then 8 antithetic pairs per generation, top 7 used, sigma 0.04,
Nesterov SGD lr 0.25 momentum 0.8, L2 penalty 0.001 on each task's channel fraction; 10,000 evaluations.
The result: best_partition.json (train it with exp.dec --partition), Pareto front, plots, report.md.
"""

from mtl.config.options import dotted

JOB = "search"
OPTIONS = dict(
    dataset="decathlon",
    task_choice="1-2-3-4-5-6-7-8-9",
    optimizer="es",
    **dotted("optimizer", init_random=32, num_deltas=8, num_to_use=7, delta_size=0.04, learning_rate=0.25,
             momentum=0.8, nesterov=True, weight_reg="l2", diag_weight_decay=0.001),
    objective="proxy",
    **dotted("objective", teachers="teachers"),  # exp/teachers/: one exp.finetune run per task
    budget=10000,
)
