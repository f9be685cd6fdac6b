"""Proxy validation on Visual Decathlon (GPU; the original's exps.distillation_sampling, plus the full runs).

    python main.py -e distillation_sampling --config exp.distillation_sampling --teachers exp/teachers \
        --student_init exp/imagenet --full_options.backbone exp/imagenet     # exp.imagenet's run

Scores 100 sampled partitions (and share_all, independent) with the proxy at the original's budget and
cheaper ones (one population run per budget), trains each with a shortened exp.dec schedule (4 x 5000
steps, LR drop at 15k; about 102 trainings, the expensive part), and reports Spearman / Kendall with
bootstrap CIs, a scatter plot and the raw data. Teachers: finished exp.finetune runs, one per task.
"""

from mtl.config.exp.dist import OPTIONS as _DIST

JOB = "proxy_validation"
OPTIONS = {
    **_DIST,
    "num_partitions": 100,
    "presets": ["share_all", "independent"],
    "full_config": "exp.dec",
    "full": {"num_rounds": 4, "lr_drop_steps": [15000]},
    "max_population": 16,
}
