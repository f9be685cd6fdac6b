"""The decathlon-sized path on a decathlon-shaped devkit (the ten real domains, codes and class counts,
one tiny image per class): the devkit's layout, and exp.pipeline itself with size overrides only, on a
CPU, through submission.json for all ten domains (imagenet12 merged from the backbone, as the original's
prepare_submission); then every other decathlon-sized config, on the pipeline's backbone and teachers,
with size overrides only (a handful of steps each)."""

import json

import pytest

from mtl.data.decathlon_shaped import generate_decathlon_shaped
from mtl.data.devkit import read_domain
from mtl.data.domains import DECATHLON


def test_devkit_has_the_real_domains_codes_classes_and_id_encoding(tmp_path):
    root = generate_decathlon_shaped(tmp_path, domains=["omniglot", "vgg-flowers"])
    omniglot = read_domain(root, "omniglot")
    assert len(omniglot["train"].categories) == 1623 and omniglot["train"].labels[-1] == 1622
    assert omniglot["train"].categories[0].id == 7 * 10**7 + 1
    assert omniglot["train"].image_ids[0] == 7 * 10**7 + 200001
    assert omniglot["test"].image_ids[0] == 7 * 10**7 + 200001 + 1623 + 8
    flowers = read_domain(root, "vgg-flowers")
    assert flowers["val"].file_names[0] == "data/vgg-flowers/val/000001.jpg"
    assert flowers["train"].categories[-1].id == 10 * 10**7 + 102
    doc = json.loads((root / "annotations" / "vgg-flowers_test_stripped.json").read_text())
    assert set(doc) == {"info", "images", "categories", "licenses"}


SIZES = ["--device", "cpu", "--budget", "4", "--random_batch_size", "2",
         "--train_options.width", "0.0625", "--train_options.input_res", "8", "--train_options.batch_size", "4",
         "--train_options.val_max_images", "8", "--train_options.eval_batch_size", "64",
         "--train_options.prefetch", "0", "--train_options.in_memory", "false",
         "--train_options.checkpoint_every", "100", "--train_options.log_every", "100",
         "--backbone_options.num_rounds", "1", "--backbone_options.train_iters", "4",
         "--teacher_options.num_rounds", "1", "--teacher_options.train_iters", "2",
         "--retrain_options.num_rounds", "1", "--retrain_options.train_iters", "9",
         "--objective_options.steps", "9", "--objective_options.val_images", "4",
         "--objective_options.eval_batch_size", "64",
         "--search_options.optimizer_options.init_random", "2", "--search_options.optimizer_options.num_deltas", "1",
         "--search_options.optimizer_options.num_to_use", "1", "--num_threads", "1"]


def _cli(*args: str) -> int:
    """main.py's run_cli in this process (module fixtures cannot use the function-scoped `cli`)."""
    import sys

    from conftest import REPO

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import main

    return main.run_cli(list(args))


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    """(data root, experiment root holding exp.pipeline's run "full") on the decathlon-shaped devkit."""
    from mtl.data.prepare import prepare_dataset

    base = tmp_path_factory.mktemp("decathlon_shaped")
    root, exp = base / "data", base / "exp"
    generate_decathlon_shaped(root / "decathlon")
    prepare_dataset("decathlon", root / "decathlon", workers=0, progress=False)
    code = _cli("-e", "full", "--config", "exp.pipeline", "--data_dir", str(root), "--exp_root", str(exp), *SIZES)
    assert code == 0, (exp / "full" / "log.txt").read_text()[-3000:]
    return root, exp


@pytest.mark.slow
def test_exp_pipeline_runs_end_to_end_to_a_ten_domain_submission(shaped):
    root, exp = shaped
    run = exp / "full"
    entries = json.loads((run / "submission.json").read_text())
    codes = sorted({e["image_id"] // 10**7 for e in entries})
    assert codes == sorted(d.code for d in DECATHLON.domains)  # all ten, imagenet12 (code 6) from the backbone
    test_images = sum(len(json.loads(f.read_text())["images"])
                      for f in (root / "decathlon" / "annotations").glob("*_test_stripped.json"))
    assert len(entries) == test_images and entries[0]["category_id"] // 10**7 == 6  # every test image once
    assert "backbone full/backbone" in (run / "table.md").read_text()


TRAIN = {"width": 0.0625, "input_res": 8, "batch_size": 4, "num_rounds": 1, "train_iters": 2, "val_max_images": 8,
         "eval_batch_size": 64, "prefetch": 0, "in_memory": False, "checkpoint_every": 100, "log_every": 100}
PROXY = {"steps": 9, "val_images": 4, "eval_batch_size": 64}
ES = ["--optimizer_options.init_random", "2", "--optimizer_options.num_deltas", "1",
      "--optimizer_options.num_to_use", "1"]
INPUTS = {"backbone": "full/backbone"}  # the pipeline's exp.imagenet run; its teachers: full/teachers


def _flags(options: dict, prefix: str = "") -> list[str]:
    return [x for k, v in options.items() for x in (f"--{prefix}{k}", json.dumps(v) if not isinstance(v, str) else v)]


# Each decathlon-sized config with size overrides only (and the pipeline's backbone / teachers as inputs).
CONFIGS = {
    "exp.imagenet": _flags(TRAIN),
    "exp.finetune": _flags({**TRAIN, **INPUTS}),
    "exp.dec": _flags({**TRAIN, **INPUTS}),
    "exp.dist": ["--teachers", "full/teachers", "--width", "0.0625", "--input_res", "8", "--student_init",
                 "full/backbone", *_flags(PROXY)],
    "exp.es_dist": ["--budget", "4", *ES, *_flags({"teachers": "full/teachers", "student_init": "full/backbone",
                                                  **PROXY}, "objective_options.")],
    "exp.random_search": ["--budget", "2", *_flags({"teachers": "full/teachers", **PROXY}, "objective_options.")],
    "exp.fixed_sharing_baselines": ["--budget", "1", "--objective_options.options", json.dumps({**TRAIN, **INPUTS})],
    "exp.single_task_baselines": ["--budget", "3", "--objective_options.options", json.dumps({**TRAIN, **INPUTS})],
    "exp.curriculum_baselines": ["--budget", "1", "--objective_options.options", json.dumps({**TRAIN, **INPUTS})],
    "exp.distillation_sampling": ["--teachers", "full/teachers", "--student_init", "full/backbone", "--width", "0.0625",
                                  "--input_res", "8", *_flags(PROXY), "--num_partitions", "1", "--budgets", "{}",
                                  "--full_options", json.dumps({**TRAIN, **INPUTS})],
    "exp.es_hyperparams": ["--budget", "1", "--objective_options.options", json.dumps(
        {"budget": 2, "optimizer_options": {"init_random": 2},
         "objective_options": {"teachers": "full/teachers", "student_init": "full/backbone", **PROXY}})],
}


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_decathlon_sized_config_runs_with_size_overrides_only(shaped, config):
    root, exp = shaped
    name = config.removeprefix("exp.")
    code = _cli("-e", name, "--config", config, "--data_dir", str(root), "--exp_root", str(exp), "--device", "cpu",
                *CONFIGS[config])
    assert code == 0, (exp / name / "log.txt").read_text()[-3000:]
    results = json.loads((exp / name / "results.json").read_text())
    if "evaluations" in results:  # a search: every evaluation it made succeeded
        assert results["evaluations"] >= 1 and results["failed"] == 0
