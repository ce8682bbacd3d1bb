"""The fault suite: marked `faults` (run alone with `pytest -m faults`); each
scenario's one-line summary is printed at the end of the run (by
tests/conftest.py: the process that prints is not always the one that ran
the scenario)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)
