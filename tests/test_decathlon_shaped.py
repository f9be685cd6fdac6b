"""The decathlon-sized path on a decathlon-shaped devkit (the ten real domains, codes and class counts,
one tiny image per class): the devkit's layout, and exp.pipeline itself with size overrides only, on a
CPU, through submission.json for all ten domains (imagenet12 merged from the backbone, as the original's
prepare_submission), then exp.dist on its teachers."""

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


@pytest.mark.slow
def test_exp_pipeline_runs_end_to_end_to_a_ten_domain_submission(cli, tmp_path):
    from mtl.data.prepare import prepare_dataset

    root = tmp_path / "data"
    generate_decathlon_shaped(root / "decathlon")
    prepare_dataset("decathlon", root / "decathlon", workers=0, progress=False)
    result = cli("-e", "full", "--config", "exp.pipeline", "--data_dir", str(root), *SIZES)
    assert result.returncode == 0, result.stderr
    run = cli.cwd / "exp" / "full"
    entries = json.loads((run / "submission.json").read_text())
    codes = sorted({e["image_id"] // 10**7 for e in entries})
    assert codes == sorted(d.code for d in DECATHLON.domains)  # all ten, imagenet12 (code 6) from the backbone
    test_images = sum(len(json.loads(f.read_text())["images"])
                      for f in (root / "decathlon" / "annotations").glob("*_test_stripped.json"))
    assert len(entries) == test_images and entries[0]["category_id"] // 10**7 == 6  # every test image once
    assert "backbone full/backbone" in (run / "table.md").read_text()
    dist = cli("-e", "dist", "--config", "exp.dist", "--data_dir", str(root), "--teachers", "full/teachers",
               "--device", "cpu", "--width", "0.0625", "--input_res", "8", "--steps", "9", "--val_images", "4",
               "--student_init", "full/backbone")
    assert dist.returncode == 0, dist.stderr
