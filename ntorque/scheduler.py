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

from .errors import StorageUnavailable
from .schedules import Firing, Schedule, Settings, Template, plan
from .store.schedules import ScheduleStore
from .tasks import Task, iso

log = logging.getLogger(__name__)

Fire = Callable[[Sequence[tuple[Schedule, Firing]]], Awaitable[dict[int, list[Task]]]]
Signal = Callable[[], Awaitable[None]]
# Schedules fired per round, in one transaction; the next round follows at
# once. One transaction per schedule cost ~8 ms each: 100 schedules due at
# one second were made over a second late on three nodes.
DUE_BATCH = 100


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
        self._soonest: float | None = None  # the soonest tick the last look read

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
        """Fire every due schedule; the soonest next tick afterwards. Woken
        for a tick it read, a round costs three transactions (due, fire, the
        next soonest); an idle look, one."""
        soonest = self._soonest
        if soonest is None or soonest > self.clock():  # a look: anything new?
            soonest = await self.store.earliest()
        while soonest is not None and soonest <= self.clock():
            now = self.clock()
            due = await self.store.due(now, DUE_BATCH)
            if due:
                await self._fire_round(due, now)
            soonest = await self.store.earliest()
        self._soonest = soonest
        return soonest

    async def _fire_round(self, due: Sequence[Schedule], now: float) -> None:
        """One transaction for the round. Should it fail, each schedule alone,
        so that one which cannot fire holds up no other; then its error goes
        up (the ticker waits a look before it tries again)."""
        try:
            await self.fire(due, now)
            return
        except StorageUnavailable:
            raise
        except Exception:
            if len(due) == 1:
                raise
            log.warning("schedules: a round of %s failed; firing them one by one", len(due))
        failed: list[Exception] = []
        for schedule in due:
            try:
                await self.fire([schedule], now)
            except StorageUnavailable:
                raise
            except Exception as error:
                log.exception("schedule %s failed to fire", schedule.id)
                failed.append(error)
        if failed:
            raise failed[0]

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
