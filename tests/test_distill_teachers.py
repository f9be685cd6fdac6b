"""Teachers: found by run name or folder, loaded frozen; missing or mismatched ones are clear user errors."""

import json
import shutil

import pytest

from distill_helpers import RES, TASKS, WIDTH, train_tiny_teachers
from mtl.distill.teachers import load_teachers, teacher_runs
from mtl.errors import UserError


@pytest.fixture(scope="session")
def teachers(mini_data_dir, tmp_path_factory):
    return train_tiny_teachers(tmp_path_factory.getbasetemp() / "distill_exp", mini_data_dir)


def test_teachers_by_folder_and_by_run_names_agree(teachers):
    by_folder = teacher_runs(str(teachers), TASKS, teachers.parent, "mini_decathlon")
    names = ",".join(f"exp/teachers/{t}" for t in reversed(TASKS))  # order of names does not matter
    assert teacher_runs(names, TASKS, teachers.parent, "mini_decathlon") == by_folder
    loaded = load_teachers(str(teachers), TASKS, teachers.parent, "mini_decathlon")
    assert list(loaded) == TASKS
    model = loaded["digits"].model
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert loaded["digits"].width == WIDTH and loaded["digits"].input_res == RES


def test_missing_teacher_is_a_clear_error(teachers):
    with pytest.raises(UserError, match="no teacher for task.*glyphs.*--task_choice glyphs"):
        teacher_runs(str(teachers), TASKS + ["glyphs"], teachers.parent, "mini_decathlon")
    with pytest.raises(UserError, match="no such run folder"):
        teacher_runs("exp/nowhere", TASKS, teachers.parent, "mini_decathlon")


def test_teacher_of_another_width_or_input_size_is_refused(teachers):
    with pytest.raises(UserError, match="width 0.5.*digits"):
        load_teachers(str(teachers), TASKS, teachers.parent, "mini_decathlon", width=0.5)
    with pytest.raises(UserError, match="input_res 32"):
        load_teachers(str(teachers), TASKS, teachers.parent, "mini_decathlon", input_res=32)


@pytest.mark.parametrize("change, message", [
    ({"model": "partitioned_resnet26"}, "needs plain resnet26"),
    ({"task_choice": "digits-shapes"}, "learned 2 tasks"),
    ({"dataset": "decathlon"}, "trained on 'decathlon'"),
])
def test_teacher_of_another_architecture_is_refused(teachers, tmp_path, change, message):
    fake = tmp_path / "digits"
    shutil.copytree(teachers / "digits", fake)
    config = json.loads((fake / "config.json").read_text())
    config["options"].update(change)
    (fake / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=message):
        load_teachers(f"{fake},{teachers / 'shapes'},{teachers / 'colors'}", TASKS, tmp_path, "mini_decathlon")
