"""The fault suite: marked `faults` (run alone with `pytest -m faults`); each
scenario's one-line summary is printed at the end of the run."""

from __future__ import annotations

import pytest

from tests.faults.harness import SUMMARIES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARIES:
        terminalreporter.section("fault suite")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
