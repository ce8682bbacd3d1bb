"""The rows of new tasks: what an insert writes, and the task it made.

A task's timeout, retries and backoff, when the client left them out, come
from its queue's settings (else the server's defaults), read in the
inserting transaction: a queue changed on one node applies at once on every
other. One read per batch, not a lookup per row: subqueries in the rows'
VALUES halved the insert rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..tables import queues, tasks
from ..tasks import DEFAULT_QUEUE, NewTask, Status, Task

QueueKey = tuple[int, str]  # (app_id, or 0 with no application; name)


async def insert_tasks(
    conn: AsyncConnection, specs: Sequence[NewTask], now: float, default_timeout_s: int
) -> list[Task]:
    """Insert pending tasks in one statement, in order (and the rows of the
    named queues they are the first to name)."""
    if not specs:
        return []
    named = {_key(spec) for spec in specs}
    settings = await _queue_settings(conn, named)
    await _name_queues(conn, named - set(settings), now)
    filled = [_filled(spec, settings.get(_key(spec)), default_timeout_s) for spec in specs]
    rows = [task_values(spec, now, *own) for spec, own in zip(specs, filled, strict=True)]
    ids = (await conn.execute(INSERT_TASKS, rows)).scalars()
    return [
        new_task(spec, task_id, now, *own, held=_paused(settings.get(_key(spec))))
        for spec, own, task_id in zip(specs, filled, ids, strict=True)
    ]


def _key(spec: NewTask) -> QueueKey:
    return (spec.app_id or 0, spec.queue)


async def _queue_settings(conn: AsyncConnection, named: set[QueueKey]) -> dict[QueueKey, Any]:
    """The stored rows of the named queues (those that have one)."""
    rows = (await conn.execute(QUEUE_SETTINGS, {"keys": sorted(named)})).all()
    return {(row.app_id, row.name): row for row in rows}


QUEUE_KEY = sa.tuple_(queues.c.app_id, queues.c.name)
QUEUE_SETTINGS = sa.select(
    queues.c.app_id, queues.c.name, queues.c.timeout_s, queues.c.retries,
    queues.c.backoff, queues.c.paused,
).where(QUEUE_KEY.in_(sa.bindparam("keys", expanding=True)))  # fmt: skip


async def _name_queues(conn: AsyncConnection, unknown: set[QueueKey], now: float) -> None:
    """A queue exists once a task names it: its row, with no settings. The
    default queue needs none (it always exists)."""
    rows = [
        {"app_id": app_id, "name": name, "created": now, "modified": now}
        for app_id, name in sorted(unknown)
        if name != DEFAULT_QUEUE
    ]
    if rows:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(dialect.insert(queues).values(rows).on_conflict_do_nothing())


def _filled(spec: NewTask, queue: Any, default_timeout_s: int) -> Filled:
    """What the spec leaves out, taken from its queue, else the server."""
    if queue is None:
        return Filled(spec.timeout_s or default_timeout_s, spec.retries, spec.backoff)
    return Filled(
        _first(spec.timeout_s, queue.timeout_s, default_timeout_s),
        _first(spec.retries, queue.retries),
        _first(spec.backoff, queue.backoff),
    )


class Filled(NamedTuple):
    timeout_s: int
    retries: int | None
    backoff: str | None


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _paused(queue: Any) -> bool:
    """Its queue is paused: no use notifying it now (the resume will)."""
    return bool(queue is not None and queue.paused)


def task_values(
    spec: NewTask, now: float, timeout_s: int, retries: int | None, backoff: str | None
) -> dict[str, Any]:
    """The row of a new pending task, with what its queue or the server filled in."""
    return {
        "app_id": spec.app_id,
        "queue": spec.queue,
        "url": spec.url,
        "method": spec.method,
        "timeout_s": timeout_s,
        "body": spec.body,
        "content_type": spec.content_type,
        "charset": spec.charset,
        "headers": [list(pair) for pair in spec.headers],
        "status": Status.PENDING.value,
        "retry_count": 0,
        "due": now if spec.due is None else spec.due,
        "created": now,
        "modified": now,
        "retries": retries,
        "backoff": backoff,
        "callback_url": spec.callback_url,
        "callback_of": spec.callback_of,
        "schedule_id": spec.schedule_id,
        "schedule_tick": spec.schedule_tick,
    }


# Built once, executed with parameters: building `.values(...)` per call costs
# more CPU than the round trip on the enqueue path. Several rows go in one
# multi-row INSERT whose ids come back in the rows' order.
INSERT_TASKS = tasks.insert().returning(tasks.c.id, sort_by_parameter_order=True)


def new_task(
    spec: NewTask,
    task_id: int,
    now: float,
    timeout_s: int,
    retries: int | None,
    backoff: str | None,
    held: bool = False,
) -> Task:
    """The stored task an insert of spec made."""
    return Task(
        id=task_id, app_id=spec.app_id, url=spec.url, method=spec.method,
        timeout_s=timeout_s, body=spec.body, content_type=spec.content_type,
        charset=spec.charset, headers=spec.headers, status=Status.PENDING, retry_count=0,
        due=now if spec.due is None else spec.due, created=now, modified=now,
        last_status_code=None, last_error=None, retries=retries, backoff=backoff,
        callback_url=spec.callback_url, callback_of=spec.callback_of, queue=spec.queue,
        schedule_id=spec.schedule_id, schedule_tick=spec.schedule_tick, held=held,
    )  # fmt: skip
