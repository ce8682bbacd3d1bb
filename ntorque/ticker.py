"""The ticker: on every node, sleep until the soonest tick of any schedule,
fire the due ones, and look again. It wakes early when this node changes a
schedule, and looks at least every look_s for schedules other nodes made or
changed. Idle, it costs one small query per look_s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .errors import StorageUnavailable
from .scheduler import Scheduler

log = logging.getLogger(__name__)

TICK_MARGIN_S = 0.001  # a hair after the tick: early is "not due yet"
STOP_GRACE_S = 5.0


class Ticker:
    def __init__(self, scheduler: Scheduler, look_s: float, clock: Callable[[], float]) -> None:
        self.scheduler = scheduler
        self.look_s = look_s
        self.clock = clock
        self._running: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._running = asyncio.ensure_future(self._run())

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Let a round under way finish (a firing is one short transaction),
        then stop; cancel it only past the grace."""
        self._stopping = True
        self.scheduler.changed.set()
        if self._running is None:
            return
        await asyncio.wait([self._running], timeout=grace_s)
        self._running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._running

    async def _run(self) -> None:
        changed = self.scheduler.changed
        while not self._stopping:
            changed.clear()
            wait = await self.round()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)

    async def round(self) -> float:
        """Fire what is due; how long to sleep before the next look."""
        try:
            soonest = await self.scheduler.fire_due()
        except StorageUnavailable:
            log.warning("schedules: database unavailable, trying again in %.0f s", self.look_s)
            return self.look_s
        except Exception as error:  # logged where it happened, with its schedule
            log.warning("schedules: %s; trying again in %.0f s", error, self.look_s)
            return self.look_s
        if soonest is None:
            return self.look_s
        return min(max(soonest - self.clock(), 0.0) + TICK_MARGIN_S, self.look_s)
