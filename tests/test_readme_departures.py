"""The README's "Departures from the original" table names options that exist, with the defaults it claims."""

import dataclasses
import re

from conftest import REPO

from mtl.config.options import coerce_value, field_types
from mtl.jobs.distill_options import DistillOptions
from mtl.jobs.train_options import TrainOptions


def test_every_option_the_departures_table_names_exists_with_that_default():
    text = (REPO / "README.md").read_text()
    section = text.split("## Departures from the original", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`--(\w+) (\w+)`", section)
    assert len(named) >= 3
    for name, value in named:
        owners = [cls for cls in (TrainOptions, DistillOptions) if name in {f.name for f in dataclasses.fields(cls)}]
        assert owners, f"--{name} is no train or distill option"
        for cls in owners:
            assert getattr(cls(), name) == coerce_value(name, field_types(cls)[name], value, "README"), name


def test_option_values_and_flags_the_table_names_are_real_choices():
    text = (REPO / "README.md").read_text()
    section = text.split("## Departures from the original", 1)[1].split("\n## ", 1)[0]
    fields = {cls: {f.name: f for f in dataclasses.fields(cls)} for cls in (TrainOptions, DistillOptions)}
    choices = [(name, value) for name, value in re.findall(r"\b([a-z_]+) `([\w-]+)`", section)
               if any(name in f for f in fields.values())]
    assert ("partition_layers", "all_stages_conv1") in choices and ("curriculum", "fixed") in choices
    for name, value in choices:
        allowed = [f[name].metadata["choices"] for f in fields.values() if name in f]
        assert any(value in a for a in allowed), (name, value)
    for flag in re.findall(r"`--(\w+)`", section):
        assert any(flag in f for f in fields.values()), flag
