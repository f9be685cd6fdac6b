"""Every MTL method on one small ResNet-26 over three mini-decathlon tasks, with single-task baselines: one table.

    python main.py -e methods --config exp.methods
    python main.py -e methods_quick --config exp.methods --methods naive,mean,mgda,pcgrad --train.train_iters 25

Writes exp/<RUN>/methods_table.md and .json: per-task validation accuracy at the round chosen on
validation, Δm against the single-task baselines trained in the same benchmark, time per step and
peak memory (conventions in the table's notes). CPU-sized (about half a minute to two minutes per
run on two cores): width 0.25, 24 px, batch 16, 4 rounds x 40 steps with a 10x LR drop after 3 rounds.
Multi-task methods see one batch of every task per step; naive (one task per step) gets 3x the steps
(equal_images) and the single-task baselines the same steps as the methods, so every run trains on
as many images per task.
"""

JOB = "methods_benchmark"
OPTIONS = dict(
    seed=0,
    log_every=10,
    checkpoint_every=40,
    train=dict(
        dataset="mini_decathlon",
        task_choice="digits-glyphs-shapes",  # 10, 40 and 8 classes: an easy, a hard and a middle task
        model="resnet26",
        width=0.25,
        input_res=24,
        dropout=0.1,
        batch_size=16,
        lr=0.05,  # the methods' weights sum to K for the sum-convention ones: keep the LR moderate
        weight_decay=5e-4,
        num_rounds=4,
        train_iters=40,
        lr_drop_steps=[120],
        curriculum="uniform",  # naive: the same task mix in expectation as the every-task methods
        val_max_images=0,  # the validation splits are small: select on all of them
        eval_batch_size=256,
        prefetch=0,
        in_memory=True,
    ),
)
