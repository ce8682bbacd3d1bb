"""Completion callbacks: when a task with a callback url ends, its callback
task is inserted in the same transaction, and the two are linked both ways.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..tables import attempts, tasks
from ..tasks import Task, callback_spec
from .rows import insert_tasks


class Made(NamedTuple):
    ended: list[Task]  # as given, with callback_task_id set where one was made
    callbacks: list[Task]


async def add(
    conn: AsyncConnection,
    ended: Sequence[Task],
    now: float,
    known_attempts: Mapping[int, Mapping[str, Any]] | None = None,
) -> Made:
    """Insert the callbacks of the ended tasks that want one and have none
    yet. known_attempts: the last attempt of some, already at hand."""
    wanting = [task for task in ended if task.callback_url and task.callback_task_id is None]
    if not wanting:
        return Made(list(ended), [])
    last = dict(known_attempts or {})
    missing = [task.id for task in wanting if task.id not in last]
    if missing:
        last.update(await _last_attempts(conn, missing))
    specs = [callback_spec(task, last.get(task.id)) for task in wanting]
    # Callbacks carry their task's timeout: no default is needed.
    made = await insert_tasks(conn, specs, now, default_timeout_s=0)
    await conn.execute(
        LINK, [{"ended_id": made_for.callback_of, "made_id": made_for.id} for made_for in made]
    )
    linked = {callback.callback_of: callback.id for callback in made}
    return Made(
        [
            dataclasses.replace(task, callback_task_id=linked[task.id])
            if task.id in linked
            else task
            for task in ended
        ],
        made,
    )


LINK = (
    tasks.update()
    .where(tasks.c.id == sa.bindparam("ended_id"))
    .values(callback_task_id=sa.bindparam("made_id"))
)


async def _last_attempts(conn: AsyncConnection, task_ids: list[int]) -> dict[int, dict[str, Any]]:
    latest = (
        sa.select(attempts.c.task_id, sa.func.max(attempts.c.number).label("number"))
        .where(attempts.c.task_id.in_(task_ids))
        .group_by(attempts.c.task_id)
        .subquery()
    )
    statement = attempts.select().join(
        latest,
        sa.and_(attempts.c.task_id == latest.c.task_id, attempts.c.number == latest.c.number),
    )
    rows = (await conn.execute(statement)).all()
    return {row.task_id: dict(row._mapping) for row in rows}
