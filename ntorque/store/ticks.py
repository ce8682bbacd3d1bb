"""Schedules' ticks become tasks: in one transaction, a guarded UPDATE per
schedule moves its next tick on (only if it is still the one the firing
node read, and the schedule is active), then the ticks' tasks are inserted
by one statement. When several nodes fire the same tick, one UPDATE matches
and the others, waiting on the row's lock, then match nothing; the unique
(schedule_id, schedule_tick) index on tasks is the last word should anything
slip by. The UPDATEs go in schedule id order: every node takes the rows'
locks in one order, so two nodes firing the same schedules wait for each
other, never deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..schedules import Firing, Schedule
from ..tables import schedules
from ..tasks import NewTask, Task
from .rows import insert_tasks


async def fire(
    conn: AsyncConnection,
    firings: Sequence[tuple[Schedule, Firing]],
    now: float,
    default_timeout_s: int,
) -> dict[int, list[Task]]:
    """The tasks made for the firings' ticks, by schedule id; a schedule
    another node (or a change of it) got to first is not there."""
    ordered = sorted(firings, key=lambda each: each[0].id)
    won = [each for each in ordered if await _move(conn, *each)]
    specs = [tick_task(schedule, tick) for schedule, firing in won for tick in firing.ticks]
    made = iter(await insert_tasks(conn, specs, now, default_timeout_s))
    return {schedule.id: [next(made) for _ in firing.ticks] for schedule, firing in won}


async def _move(conn: AsyncConnection, schedule: Schedule, firing: Firing) -> bool:
    """Move the schedule's next tick on, if no one did since it was read."""
    moved = await conn.execute(
        schedules.update()
        .where(
            schedules.c.id == schedule.id,
            schedules.c.next_tick == schedule.next_tick,
            sa.not_(schedules.c.paused),
        )
        .values(
            next_tick=firing.next_tick,
            last_tick=firing.ticks[-1] if firing.ticks else schedules.c.last_tick,
        )
    )
    return bool(moved.rowcount)


def tick_task(schedule: Schedule, tick: float) -> NewTask:
    """The task of one tick: the template's, due at the tick."""
    template = schedule.template
    return NewTask(
        app_id=schedule.app_id or None,
        url=template.url,
        method=template.method,
        timeout_s=template.timeout_s,
        body=template.body,
        content_type=template.content_type,
        charset=template.charset,
        headers=template.headers,
        due=tick,
        queue=template.queue,
        retries=template.retries,
        backoff=template.backoff,
        callback_url=template.callback_url,
        schedule_id=schedule.id,
        schedule_tick=tick,
    )
