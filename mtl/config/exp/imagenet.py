"""The ImageNet backbone: ResNet-26 trained from scratch on the decathlon's imagenet12 (GPU).

    python main.py -e imagenet --config exp.imagenet
    python main.py -e mtl9 --config exp.dec --backbone exp/imagenet       # what it is for

The original loaded such a model (exp/finetuned/0) into every run and into the proxy's student, but
ships no config for it; its closest one is the "scratch" variant of single_task_baselines: exp.finetune
without pretraining, every layer trained, 30 rounds x 5000 steps with the LR drop at 100k (lr 0.05,
batch 64, weight decay 1e-4, dropout 0.3). exp.pipeline trains it as its first stage.
"""

from mtl.config.exp.finetune import OPTIONS as _FINETUNE

JOB = "train"
OPTIONS = {
    **_FINETUNE,
    "task_choice": "imagenet12",
    "last_third_only": False,
    "backbone": "none",
    "num_rounds": 30,
    "lr_drop_steps": [100000],
}
