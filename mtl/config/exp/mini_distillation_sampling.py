"""Proxy validation on the mini-decathlon (CPU, about 45 minutes on one core): proxy vs full training ranks.

    python main.py -e proxy_check --config exp.mini_distillation_sampling
    python main.py -e proxy_check --continue                        # after a crash: finished parts are kept
    python main.py -e proxy_check --continue --full_seeds 0,1       # add a training seed: the noise ceiling

Trains the six teachers (exp.mini_finetune, width 0.25, 32 px), samples 14 partitions (share_all,
independent and 12 random draws spanning mean channel fractions 0.15-0.85), scores them with the proxy at
the original's budget (3000 x 4) and cheaper ones, trains each with exp.mini_dec (1200 steps), and
writes report.md, scatter.png and the raw data. Goal: Spearman >= 0.7 at the default budget.

Partitions cover every conv of the last stage (partition_layers=last_stage), in the proxy's student and
in the full trainings alike. With the original's layout (each block's first conv only), partitions make
no reproducible difference at this size: two training seeds of the same 14 partitions rank them with
Spearman -0.07, so no proxy can rank them (measured; README, "The distillation proxy").
"""

from mtl.config.exp.mini_dist import OPTIONS as _MINI_DIST

JOB = "proxy_validation"
OPTIONS = {
    **_MINI_DIST,
    "teachers": "",  # train them here under exp/<id>/teachers/
    "teacher_config": "exp.mini_finetune",
    "full_config": "exp.mini_dec",
    "partition_layers": "last_stage",
    "num_partitions": 12,
    "presets": ["share_all", "independent"],
}
