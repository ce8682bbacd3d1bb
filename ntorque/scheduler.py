"""Recurring schedules at work: their settings, and firing the due ones.

Every node fires (see ticker.py); the database decides which node makes a
tick's task (see store/ticks.py), so a tick makes one task however many
nodes run, and a node that dies costs no tick while another runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from .schedules import Firing, Schedule, Settings, Template, plan
from .store.schedules import ScheduleStore
from .tasks import Task, iso

log = logging.getLogger(__name__)

Fire = Callable[[Sequence[tuple[Schedule, Firing]]], Awaitable[dict[int, list[Task]]]]
# Schedules fired per round, in one transaction; the next round follows at
# once. One transaction per schedule cost ~8 ms each: 100 schedules due at
# one second were made over a second late on three nodes.
DUE_BATCH = 100


class Scheduler:
    def __init__(
        self, store: ScheduleStore, fire: Fire, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self._fire = fire
        self.clock = clock
        self._changed: asyncio.Event | None = None

    @property
    def changed(self) -> asyncio.Event:
        """Set when this node changed a schedule: its ticker looks again now
        (other nodes' tickers find the change in their next look)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    # -- settings ------------------------------------------------------------

    async def create(self, app_id: int, settings: Settings, template: Template) -> Schedule | None:
        made = await self.store.create(app_id, settings, template, self.clock())
        if made is not None:
            log.info("schedule %s created app=%s rule=%s", made.id, app_id, made.rule.describe())
            self.changed.set()
        return made

    async def get(self, app_id: int, schedule_id: int) -> Schedule | None:
        return await self.store.get(app_id, schedule_id, last_tasks=True)

    async def page(self, app_id: int, limit: int, before_id: int | None) -> list[Schedule]:
        return await self.store.page(app_id, limit, before_id)

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
            self.changed.set()
        return changed

    async def set_paused(self, app_id: int, schedule_id: int, paused: bool) -> Schedule | None:
        changed = await self.store.set_paused(app_id, schedule_id, paused, self.clock())
        if changed is not None:
            log.info("schedule %s %s", schedule_id, "paused" if paused else "resumed")
            self.changed.set()
        return changed

    async def delete(self, app_id: int, schedule_id: int) -> bool:
        deleted = await self.store.delete(app_id, schedule_id)
        if deleted:
            log.info("schedule %s deleted", schedule_id)
        return deleted

    # -- firing --------------------------------------------------------------

    async def fire_due(self) -> float | None:
        """Fire every due schedule; the soonest next tick afterwards."""
        while True:
            now = self.clock()
            due = await self.store.due(now, DUE_BATCH)
            if due:
                await self.fire(due, now)
            if len(due) < DUE_BATCH:
                return await self.store.earliest()

    async def fire(self, due: Sequence[Schedule], now: float) -> dict[int, list[Task]]:
        """Make the tasks of due schedules' ticks, by schedule id (those
        another node fired first are not there)."""
        firings = [(schedule, firing_of(schedule, now)) for schedule in due]
        made = await self._fire(firings)
        for schedule, firing in firings:
            if schedule.id in made and firing.skipped:
                log_skipped(schedule, firing)
        return made


def firing_of(schedule: Schedule, now: float) -> Firing:
    """What firing a due schedule at now does."""
    assert schedule.next_tick is not None
    return plan(schedule.rule, schedule.settings.catch_up, schedule.next_tick, now)


def log_skipped(schedule: Schedule, firing: Firing) -> None:
    assert schedule.next_tick is not None
    log.warning(
        "schedule %s skipped %s missed ticks from %s (catch_up=%s)",
        schedule.id, firing.skipped, iso(schedule.next_tick), schedule.settings.catch_up,
    )  # fmt: skip
