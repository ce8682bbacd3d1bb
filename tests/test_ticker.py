"""The ticker's timing, with a scheduler stand-in: how long it sleeps, what
wakes it, and that a stop lets a round under way finish."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from ntorque.errors import StorageUnavailable
from ntorque.scheduler import Scheduler
from ntorque.ticker import TICK_MARGIN_S, Ticker

NOW = 1_800_000_000.0


class Stand:
    """fire_due answers what it is told to; counts its calls."""

    def __init__(self, soonest: float | None = None, error: Exception | None = None) -> None:
        self.soonest = soonest
        self.error = error
        self.calls = 0
        self.changed = asyncio.Event()
        self.slow_s = 0.0

    async def fire_due(self) -> float | None:
        self.calls += 1
        await asyncio.sleep(self.slow_s)
        if self.error is not None:
            raise self.error
        return self.soonest


def ticker(stand: Stand, look_s: float = 5.0) -> Ticker:
    return Ticker(cast(Scheduler, stand), look_s, clock=lambda: NOW)


async def test_it_sleeps_until_the_soonest_tick_or_one_look() -> None:
    assert await ticker(Stand(soonest=NOW + 0.25)).round() == 0.25 + TICK_MARGIN_S
    assert await ticker(Stand(soonest=NOW + 60)).round() == 5.0
    assert await ticker(Stand(soonest=None)).round() == 5.0
    assert await ticker(Stand(soonest=NOW - 3)).round() == TICK_MARGIN_S


async def test_a_database_away_or_an_error_waits_one_look() -> None:
    assert await ticker(Stand(error=StorageUnavailable())).round() == 5.0
    assert await ticker(Stand(error=RuntimeError("boom"))).round() == 5.0


async def test_a_change_wakes_it_at_once_and_stop_ends_it() -> None:
    stand = Stand(soonest=None)
    running = ticker(stand, look_s=60.0)
    running.start()
    await asyncio.sleep(0.05)
    assert stand.calls == 1
    stand.changed.set()
    await asyncio.sleep(0.05)
    assert stand.calls == 2
    await asyncio.wait_for(running.stop(), 1.0)


async def test_stop_lets_a_round_under_way_finish() -> None:
    stand = Stand(soonest=None)
    stand.slow_s = 0.2
    running = ticker(stand)
    running.start()
    await asyncio.sleep(0.05)
    task: Any = running._running
    await running.stop()
    assert task.done() and not task.cancelled()
