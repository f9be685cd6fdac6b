"""Single-task ResNet-26 fine-tuning on one Visual Decathlon domain, the original's settings (GPU).

    python main.py -e single_task_network --config exp.finetune --task_choice 2 --backbone exp/imagenet

exp.dec with one plain ResNet-26: 10 rounds x 5000 steps, LR drop at 30k, last third trained.
Needs the ImageNet backbone (the original loaded one into every run): --backbone exp/<id> of a
finished exp.imagenet run. Finished runs serve as teachers (exp.dist --teachers).
"""

from mtl.config.exp.dec import OPTIONS as _DEC

JOB = "train"
OPTIONS = {
    **{k: v for k, v in _DEC.items() if k not in ("partition", "val_max_images")},
    "task_choice": "1",
    "model": "resnet26",
    "num_rounds": 10,
    "lr_drop_steps": [30000],
    "curriculum": "uniform",
}
