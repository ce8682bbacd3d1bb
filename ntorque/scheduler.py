"""Recurring schedules at work: their settings, and firing the due ones.

Every node fires (see ticker.py); the database decides which node makes a
tick's task (see store/ticks.py), so a tick makes one task however many
nodes run, and a node that dies costs no tick while another runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .errors import StorageUnavailable
from .schedules import Firing, Schedule, Settings, Template, plan
from .store.schedules import ScheduleStore
from .tasks import Task, iso

log = logging.getLogger(__name__)

Fire = Callable[[Schedule, Firing], Awaitable[list[Task] | None]]
Signal = Callable[[], Awaitable[None]]
DUE_BATCH = 100  # schedules fired per round; the next round follows at once


class Scheduler:
    def __init__(
        self,
        store: ScheduleStore,
        fire: Fire,
        signal: Signal,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._fire = fire
        self._signal = signal
        self.clock = clock
        self._changed: asyncio.Event | None = None

    @property
    def changed(self) -> asyncio.Event:
        """Set when a schedule changed: the ticker looks again now."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    async def _tell(self) -> None:
        """This node's ticker looks again now, and so does one other worker
        (the signal goes through the channel: a node that serves the API
        only, or the CLI, may run no ticker). The rest look within look_s."""
        self.changed.set()
        await self._signal()

    # -- settings ------------------------------------------------------------

    async def create(self, app_id: int, settings: Settings, template: Template) -> Schedule | None:
        made = await self.store.create(app_id, settings, template, self.clock())
        if made is not None:
            log.info("schedule %s created app=%s rule=%s", made.id, app_id, made.rule.describe())
            await self._tell()
        return made

    async def get(self, app_id: int, schedule_id: int) -> Schedule | None:
        return await self.store.get(app_id, schedule_id, last_tasks=True)

    async def page(
        self,
        app_id: int,
        limit: int,
        before_id: int | None,
        name: str | None = None,
        last_tasks: int = 0,
    ) -> list[Schedule]:
        """Newest first; with last_tasks, each with that many of its newest tasks."""
        return await self.store.page(app_id, limit, before_id, name, last_tasks)

    async def update(
        self, current: Schedule, settings: Settings, template: Template
    ) -> Schedule | None:
        """Change a schedule; a new rule starts from now, the same rule
        keeps its next tick."""
        now = self.clock()
        same_rule = settings.rule == current.rule
        next_tick = current.next_tick if same_rule else settings.rule.after(now)
        changed = await self.store.update(
            current.app_id, current.id, settings, template, next_tick, now
        )
        if changed is not None:
            log.info("schedule %s changed rule=%s", changed.id, changed.rule.describe())
            await self._tell()
        return changed

    async def set_paused(self, app_id: int, schedule_id: int, paused: bool) -> Schedule | None:
        changed = await self.store.set_paused(app_id, schedule_id, paused, self.clock())
        if changed is not None:
            log.info("schedule %s %s", schedule_id, "paused" if paused else "resumed")
            await self._tell()
        return changed

    async def delete(self, app_id: int, schedule_id: int) -> bool:
        deleted = await self.store.delete(app_id, schedule_id)
        if deleted:
            log.info("schedule %s deleted", schedule_id)
        return deleted

    # -- firing --------------------------------------------------------------

    async def fire_due(self) -> float | None:
        """Fire every due schedule; the soonest next tick afterwards. A
        schedule that fails does not hold up the others: they fire, then its
        error goes up (the ticker waits a while before it tries again)."""
        soonest = await self.store.earliest()  # idle, the one query of a look
        while soonest is not None and soonest <= self.clock():
            now = self.clock()
            due = await self.store.due(now, DUE_BATCH)
            failed: list[Exception] = []
            for schedule in due:
                try:
                    await self.fire(schedule, now)
                except StorageUnavailable:
                    raise
                except Exception as error:
                    log.exception("schedule %s failed to fire", schedule.id)
                    failed.append(error)
            if failed:
                raise failed[0]
            soonest = await self.store.earliest()
        return soonest

    async def fire(self, schedule: Schedule, now: float) -> list[Task] | None:
        """Make the tasks of a due schedule's ticks (None: another node did)."""
        assert schedule.next_tick is not None
        firing = plan(schedule.rule, schedule.settings.catch_up, schedule.next_tick, now)
        made = await self._fire(schedule, firing)
        if made is None:
            return None
        if firing.skipped:
            log.warning(
                "schedule %s skipped %s missed ticks from %s (catch_up=%s)",
                schedule.id, firing.skipped, iso(schedule.next_tick), schedule.settings.catch_up,
            )  # fmt: skip
        return made
