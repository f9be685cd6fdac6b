"""Distillation proxy score of one partition on Visual Decathlon, the original's exps.dist settings (GPU).

    python main.py -e distillation_test --config exp.dist --partition P.json
    python main.py -e distillation_test --config exp.dist --teachers exp/teachers --partition independent

Teachers: one finished exp.finetune run per task under exp/teachers/ (a pipeline fills it), or a comma
list of runs. Tasks 1-9; student = the partitioned last stage fed by each teacher's frozen trunk;
3000 steps of batch 4 in round robin, Nesterov SGD lr 1.0 momentum 0.9 wd 1e-5, LR / 10 at 2000;
score = teacher-head accuracy on <= 3000 validation images per task / task reference, averaged.
The original initialised the student from the ImageNet model: pass that run as --student_init.
"""

JOB = "distill"
OPTIONS = dict(
    dataset="decathlon",
    task_choice="1-2-3-4-5-6-7-8-9",
    teachers="teachers",
    width=1.0,
    input_res=72,
    partition="share_all",
    steps=3000,
    batch_size=4,
    lr=1.0,
    lr_drop_steps=[2000],
    weight_decay=1e-5,
    val_images=3000,
    checkpoint_every=500,
    log_every=50,
)
