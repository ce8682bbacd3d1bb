"""The supervisor's arithmetic, and the start refusing several processes where
they cannot share work (the forks themselves: tests/e2e/test_processes.py)."""

from __future__ import annotations

import os

import pytest

from ntorque import processes
from ntorque.__main__ import main


def test_zero_means_one_per_core() -> None:
    assert processes.count(0) == (os.cpu_count() or 1)
    assert processes.count(3) == 3


def supervisor(count: int, now: list[float]) -> processes.Supervisor:
    return processes.Supervisor(count, run=lambda _index: 0, clock=lambda: now[0])


def test_exits_past_the_bound_within_the_window_give_up() -> None:
    now = [100.0]
    two = supervisor(2, now)
    assert [two.too_many_exits() for _ in range(6)] == [False] * 5 + [True]
    eight = supervisor(8, now)  # at least one exit per process is forgiven
    assert [eight.too_many_exits() for _ in range(9)] == [False] * 8 + [True]


def test_exits_spread_out_never_give_up() -> None:
    now = [0.0]
    two = supervisor(2, now)
    for _ in range(20):
        now[0] += processes.RESTART_WINDOW_S / 5 + 0.1  # five within any window
        assert not two.too_many_exits()


def test_several_processes_are_refused_on_the_embedded_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--processes", "2"], environ={}) == 2
    error = capsys.readouterr().err
    assert error.startswith("ntorque: --processes: 2 needs PostgreSQL and Redis"), error
