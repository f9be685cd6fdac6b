"""Distillation proxy score of one partition on the mini-decathlon, a minute or two on a CPU.

    python main.py -e mini_teachers/digits --config exp.mini_finetune --task_choice digits   # one per task
    python main.py -e mini_proxy --config exp.mini_dist --partition independent

exp.dist's schedule (3000 steps of batch 4, lr 1.0, drop at 2000) on the mini-decathlon's six domains,
with the mini teachers' size: ResNet-26 at width 0.25, 32 px inputs (teachers in exp/mini_teachers/).
"""

from mtl.config.exp.dist import OPTIONS as _DIST

JOB = "distill"
OPTIONS = {
    **_DIST,
    "dataset": "mini_decathlon",
    "task_choice": "0-1-2-3-4-5",
    "teachers": "mini_teachers",
    "width": 0.25,
    "input_res": 32,
    "val_images": 400,
}
