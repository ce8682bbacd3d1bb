"""Calls per second of a named queue, counted from task changes: once per
attempt however many changes show it, over a sliding window, while counting."""

from __future__ import annotations

from typing import Any

from ntorque.console.calls import WINDOW_S, CallRate
from tests.inprocess import Clock


def change(task_id: int, status: str, attempt: int, **more: Any) -> dict[str, Any]:
    return {"id": task_id, "status": status, "retry_count": attempt, "queue": "mail",
            "app_id": 7, **more}  # fmt: skip


def counting(now: float = 1000.0) -> tuple[CallRate, Clock]:
    clock = Clock(now)
    rate = CallRate(clock)
    rate.start()
    return rate, clock


def test_nothing_is_known_until_counting_starts() -> None:
    rate = CallRate(Clock(1000.0))
    rate.add([change(1, "in_progress", 1)])
    assert rate.per_s((7, "mail")) is None


def test_an_attempt_counts_once_however_many_changes_show_it() -> None:
    rate, clock = counting()
    clock.advance(WINDOW_S)
    rate.add([change(1, "in_progress", 1), change(2, "in_progress", 1)])
    rate.add([change(1, "completed", 1)])  # the same call, settled
    rate.add([change(2, "in_progress", 1)])  # a duplicate from another node
    assert rate.per_s((7, "mail")) == round(2 / WINDOW_S, 1)


def test_a_call_seen_only_settled_counts() -> None:
    """Another node's fast call: its in_progress was merged into its result."""
    rate, clock = counting()
    clock.advance(WINDOW_S)
    rate.add([change(1, "completed", 1), change(2, "failed", 3)])
    assert rate.per_s((7, "mail")) == round(2 / WINDOW_S, 1)


def test_a_retry_is_another_call() -> None:
    rate, clock = counting()
    clock.advance(WINDOW_S)
    rate.add([change(1, "in_progress", 1)])
    rate.add([change(1, "pending", 1, last_status_code=503)])
    rate.add([change(1, "in_progress", 2)])
    assert rate.per_s((7, "mail")) == round(2 / WINDOW_S, 1)


def test_no_call_without_an_attempt_under_way_or_settled() -> None:
    rate, clock = counting()
    clock.advance(WINDOW_S)
    rate.add([change(1, "pending", 0), change(2, "cancelled", 1), change(3, "pending", 2)])
    rate.add([{"id": 4, "status": "in_progress"}])  # not a summary: ignored
    assert rate.per_s((7, "mail")) == 0.0


def test_calls_leave_the_window_and_queues_are_apart() -> None:
    rate, clock = counting()
    clock.advance(WINDOW_S)
    rate.add([change(n, "in_progress", 1) for n in range(20)])
    rate.add([change(100, "in_progress", 1, queue="other")])
    rate.add([change(101, "in_progress", 1, app_id=None)])  # no auth: namespace 0
    assert rate.per_s((7, "mail")) == 2.0
    assert rate.per_s((7, "other")) == 0.1
    assert rate.per_s((0, "mail")) == 0.1
    clock.advance(WINDOW_S / 2)
    rate.add([change(20, "in_progress", 1)])
    assert rate.per_s((7, "mail")) == 2.1
    clock.advance(WINDOW_S / 2)
    assert rate.per_s((7, "mail")) == 0.1  # the first twenty left the window


def test_a_short_count_is_over_its_own_span() -> None:
    """Counting began 2 s ago: 4 calls are 2 per second, not 0.4."""
    rate, clock = counting()
    clock.advance(2.0)
    rate.add([change(n, "in_progress", 1) for n in range(4)])
    assert rate.per_s((7, "mail")) == 2.0


def test_stopping_forgets() -> None:
    rate, clock = counting()
    rate.add([change(1, "in_progress", 1)])
    rate.stop()
    assert rate.per_s((7, "mail")) is None
    rate.start()
    clock.advance(WINDOW_S)
    rate.add([change(1, "completed", 1)])  # seen again after a gap: counted anew
    assert rate.per_s((7, "mail")) == 0.1
