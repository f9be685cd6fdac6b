"""The whole pipeline on the task-families benchmark in minutes on a CPU (what `make demo` runs).

    python main.py -e demo --config exp.demo
    python main.py -e demo --continue          # finished stages are skipped

The searches run at one resource level (fixed_fraction=0.5: every task uses half of every partitioned
layer's channels) and look only for what to share. The benchmark (mtl/data/families.py) has a known answer: two families of two tasks (handwritten digits
twice, photo patches twice, every image a digit over a photo), so sharing inside a family helps and
sharing across families costs. Train one teacher per task, search partitions with ES scored by the
distillation proxy, search at random with the same budget, retrain the best partitions, the baselines
(share_all, share_fixed at s = 1/3, the size of the oracle) and the families oracle (a reference row:
nothing searched uses it) with three seeds each, then print the table (mean ± std, the share_fixed
curve at each variant's resource, the structure the searches recovered) and write pareto.png.
Reduced for 2 CPU cores (stated in the table): ResNet-26 at width 0.125 with 32 px inputs, every conv
of the last stage partitioned, 400 teacher and 600 multi-task steps, 192 proxy evaluations per search;
the trainings run two at a time, about 10 minutes on 2 cores with the install.
The same pipeline at full size: exp.pipeline.
"""

from mtl.config.options import dotted

JOB = "pipeline"
OPTIONS = dict(
    dataset="mini_families",
    task_choice="0-1-2-3",
    backbone="none",  # no ImageNet for the embedded data: every layer trains (as in exp.mini_finetune)
    train=dict(width=0.125, input_res=32, batch_size=32, dropout=0.1, val_max_images=0,
               eval_batch_size=300, prefetch=0, checkpoint_every=100, log_every=50),
    teacher_config="exp.mini_finetune",
    teacher=dict(num_rounds=1, train_iters=400, lr_drop_steps=[300]),
    search_config="exp.es_dist",
    search=dict(fixed_fraction=0.5,
                **dotted("optimizer", init_random=16, num_deltas=8, num_to_use=6, delta_size=0.1)),
    objective="proxy",
    **dotted("objective", steps=300, batch_size=8, lr_drop_steps=[200], val_images=150, eval_batch_size=300,
             partition_layers="last_stage"),
    budget=192,
    random_batch_size=16,
    retrain_config="exp.families",
    retrain=dict(num_rounds=2, train_iters=300, lr_drop_steps=[450], partition_layers="last_stage"),
    # share_all only: every searched partition has the oracle's size, where share_fixed s = 1/3 is the
    # curve; independent (s = 0, a quarter of the channels) would add three retrains to the ten minutes.
    baselines=["share_all"],
    share_fixed=[0.3333],
    oracle=True,
    retrain_seeds=3,
    # One torch thread: these small convolutions gain little from a second one, and on a busy 2-core
    # machine two spinning OpenMP threads made a training step 5x slower (measured).
    num_threads=1,
    parallel_stages=2,
)
