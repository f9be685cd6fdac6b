"""The whole pipeline on Visual Decathlon at full size, the original's settings (GPU machine).

    ./setup_cloud.sh                                   # install, download and prepare the data
    python main.py -e full --config exp.pipeline
    python main.py -e full --config exp.pipeline --search_options.backend local   # every visible GPU
    python main.py -e full --continue                  # finished stages are skipped
    python main.py -e full --config exp.pipeline --parallel_stages 8   # 8 GPUs: 8 trainings at a time

First the ImageNet backbone (exp.imagenet, 150k steps; --backbone exp/<id> reuses a finished one,
--backbone none trains every layer of every stage instead), which initialises every training and
the proxy's student. Tasks 1-9: a teacher per task (exp.finetune, 50k steps), ES over partitions with the distillation
proxy (exp.es_dist: 10,000 evaluations), random search at the same budget, then exp.dec (200k steps)
for the best partitions and the baselines share_all, independent and share_fixed at s = .25, .5, .75.
exp.demo is the same pipeline reduced for a CPU.
"""

JOB = "pipeline"
OPTIONS = dict(
    dataset="decathlon",
    task_choice="1-2-3-4-5-6-7-8-9",
    backbone="",
    backbone_config="exp.imagenet",
    teacher_config="exp.finetune",
    search_config="exp.es_dist",
    objective="proxy",
    budget=10000,
    random_batch_size=16,
    retrain_config="exp.dec",
    baselines=["share_all", "independent"],
    share_fixed=[0.25, 0.5, 0.75],
    submission=True,  # submission.json: the ES best network's test predictions + the backbone's imagenet12
)
