"""Single-task ResNet-26 on one mini-decathlon domain, a minute or two on a CPU.

    python main.py -e mini_single --config exp.mini_finetune --task_choice 2

exp.mini_dec with one plain ResNet-26 (width 0.25, 32 px inputs), 300 steps.
"""

from mtl.config.exp.mini_dec import OPTIONS as _MINI

JOB = "train"
OPTIONS = {
    **{k: v for k, v in _MINI.items() if k != "partition"},
    "task_choice": "0",
    "model": "resnet26",
    "num_rounds": 3,
    "train_iters": 100,
    "lr_drop_steps": [250],
    "curriculum": "uniform",
}
