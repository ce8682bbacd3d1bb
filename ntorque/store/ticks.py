"""A schedule's tick becomes a task: in one transaction, a guarded UPDATE
moves the schedule's next tick on (only if it is still the one the firing
node read, and the schedule is active), then the ticks' tasks are inserted.
When several nodes fire the same tick, one UPDATE matches and the others,
waiting on the row's lock, then match nothing; the unique (schedule_id,
schedule_tick) index on tasks is the last word should anything slip by.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..schedules import Firing, Schedule
from ..tables import schedules
from ..tasks import NewTask, Task
from .rows import insert_tasks


async def fire(
    conn: AsyncConnection, schedule: Schedule, firing: Firing, now: float, default_timeout_s: int
) -> list[Task] | None:
    """The tasks made for the firing's ticks; None when another node (or a
    change of the schedule) got there first."""
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
    if not moved.rowcount:
        return None
    specs = [tick_task(schedule, tick) for tick in firing.ticks]
    return await insert_tasks(conn, specs, now, default_timeout_s)


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
