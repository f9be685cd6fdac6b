"""The whole pipeline on the mini-decathlon in minutes on a CPU (what `make demo` runs).

    python main.py -e demo --config exp.demo
    python main.py -e demo --continue          # finished stages are skipped

Train one teacher per task, search partitions with ES scored by the distillation proxy, search at
random with the same budget, retrain the best partitions and the baselines (share_all, independent,
share_fixed at s = .25, .5, .75), then print one table. Reduced for 2 CPU cores (stated in the table):
3 tasks, ResNet-26 at width 0.125 with 24 px inputs, 300 teacher and 720 multi-task steps, a proxy of
80 steps of batch 8 on 100 validation images per task, 48 evaluations per search; the trainings run
two at a time (--parallel_stages 2). Partitions cover every conv of the last stage
(partition_layers=last_stage): with the original's layout (only each block's first conv) partitions
barely change accuracy at this size, so there would be nothing to search (proxy validation, README).
The same pipeline at full size: exp.pipeline.
"""

JOB = "pipeline"
OPTIONS = dict(
    dataset="mini_decathlon",
    task_choice="digits-shapes-colors",
    backbone="none",  # the mini-decathlon has no ImageNet: every layer trains (as in exp.mini_finetune)
    train_options=dict(width=0.125, input_res=24, batch_size=32, dropout=0.1, val_max_images=200,
                       eval_batch_size=200, prefetch=0, checkpoint_every=100, log_every=50),
    teacher_config="exp.mini_finetune",
    teacher_options=dict(num_rounds=1, train_iters=300, lr_drop_steps=[225]),
    search_config="exp.es_dist",
    search_options=dict(optimizer_options=dict(init_random=8, num_deltas=4, num_to_use=3, delta_size=0.1)),
    objective="proxy",
    objective_options=dict(steps=80, batch_size=8, lr_drop_steps=[60], val_images=100, eval_batch_size=200,
                           partition_layers="last_stage"),
    budget=48,
    random_batch_size=16,
    retrain_config="exp.mini_dec",
    retrain_options=dict(num_rounds=3, train_iters=240, lr_drop_steps=[540], partition_layers="last_stage"),
    baselines=["share_all", "independent"],
    share_fixed=[0.25, 0.5, 0.75],
    # One torch thread: these small convolutions gain little from a second one, and on a busy 2-core
    # machine two spinning OpenMP threads made a training step 5x slower (measured).
    num_threads=1,
    parallel_stages=2,
)
