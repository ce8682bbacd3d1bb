"""config.example.yml documents every setting, with its default."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import yaml

from ntorque import config

EXAMPLE = Path(__file__).parent.parent / "config.example.yml"


def test_example_lists_every_setting() -> None:
    keys = set(yaml.safe_load(EXAMPLE.read_text()))
    assert keys == {field.name for field in fields(config.Settings)}


def test_example_values_are_the_defaults() -> None:
    assert config.load(str(EXAMPLE), environ={}) == config.Settings()


def test_example_names_each_environment_variable() -> None:
    text = EXAMPLE.read_text()
    for names in config.ENVIRONMENT.values():
        for name in names:
            assert f"env: {name}" in text or f", {name}" in text or f"then {name}" in text
