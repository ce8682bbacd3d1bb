"""The rows of new tasks: what an insert writes, and the task it made.

A task's timeout, retries and backoff, when the client left them out, come
from its queue's settings (else the server's defaults), read by the
inserting statement: a queue changed on one node applies at once on every
other. On PostgreSQL the whole insert (the queue settings read, the rows of
newly named queues, the tasks) is one statement, so a lone enqueue costs one
round trip and commits by itself. SQLite reads the settings once per batch,
then inserts (subqueries in the rows' VALUES halved its insert rate).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..tables import queues, tasks
from ..tasks import DEFAULT_QUEUE, NewTask, Status, Task
from .driver import Connection, fetch

QueueKey = tuple[int, str]  # (app_id, or 0 with no application; name)


async def insert_tasks(
    conn: AsyncConnection, specs: Sequence[NewTask], now: float, default_timeout_s: int
) -> list[Task]:
    """Insert pending tasks in one statement, in order (and the rows of the
    named queues they are the first to name)."""
    if not specs:
        return []
    if conn.dialect.name == "postgresql":
        return await insert_postgresql(conn, specs, now, default_timeout_s)
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


# The rows come as arrays, so the text (and its prepared plan) is the same
# whatever the batch size. Rows are inserted in the specs' order, and ids are
# drawn from the sequence as they go in, so ids in ascending order are the
# specs' order. A queue named here for the first time gets its row, with no
# settings (the tasks' own values or the server's defaults apply). Written
# for the driver: see driver.py.
INSERT_POSTGRESQL = """
WITH spec AS (
    SELECT * FROM unnest(
        $1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::INTEGER[], $6::BYTEA[],
        $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::DOUBLE PRECISION[], $11::INTEGER[],
        $12::TEXT[], $13::TEXT[], $14::BIGINT[], $15::BIGINT[], $16::DOUBLE PRECISION[]
    ) WITH ORDINALITY AS s(app_id, queue, url, method, timeout_s, body, content_type,
        charset, headers, due, retries, backoff, callback_url, callback_of, schedule_id,
        schedule_tick, n)
), named AS (
    INSERT INTO queues (app_id, name, created, modified)
    SELECT DISTINCT coalesce(app_id, 0), queue, $17::DOUBLE PRECISION, $17::DOUBLE PRECISION
    FROM spec WHERE queue <> 'default'
    ON CONFLICT DO NOTHING
), made AS (
    INSERT INTO tasks (app_id, queue, url, method, timeout_s, body, content_type, charset,
        headers, status, retry_count, due, created, modified, retries, backoff, callback_url,
        callback_of, schedule_id, schedule_tick)
    SELECT s.app_id, s.queue, s.url, s.method, coalesce(s.timeout_s, q.timeout_s, $18::INTEGER),
        s.body, s.content_type, s.charset, CAST(s.headers AS JSON), 'pending', 0,
        coalesce(s.due, $17), $17, $17, coalesce(s.retries, q.retries),
        coalesce(s.backoff, q.backoff), s.callback_url, s.callback_of, s.schedule_id,
        s.schedule_tick
    FROM spec AS s LEFT JOIN queues AS q ON q.app_id = coalesce(s.app_id, 0) AND q.name = s.queue
    ORDER BY s.n
    RETURNING id, app_id, queue, timeout_s, retries, backoff
)
SELECT made.id, made.timeout_s, made.retries, made.backoff, coalesce(q.paused, false)
FROM made LEFT JOIN queues AS q ON q.app_id = coalesce(made.app_id, 0) AND q.name = made.queue
ORDER BY made.id
"""


async def insert_postgresql(
    conn: Connection, specs: Sequence[NewTask], now: float, default_timeout_s: int
) -> list[Task]:
    """insert_tasks on PostgreSQL: one statement, on a lent connection (it
    commits by itself) or in a transaction."""
    columns = [
        [spec.app_id for spec in specs],
        [spec.queue for spec in specs],
        [spec.url for spec in specs],
        [spec.method for spec in specs],
        [spec.timeout_s for spec in specs],
        [spec.body for spec in specs],
        [spec.content_type for spec in specs],
        [spec.charset for spec in specs],
        [json.dumps([list(pair) for pair in spec.headers]) for spec in specs],
        [spec.due for spec in specs],
        [spec.retries for spec in specs],
        [spec.backoff for spec in specs],
        [spec.callback_url for spec in specs],
        [spec.callback_of for spec in specs],
        [spec.schedule_id for spec in specs],
        [spec.schedule_tick for spec in specs],
    ]
    rows = await fetch(conn, INSERT_POSTGRESQL, [*columns, now, default_timeout_s])
    return [
        new_task(spec, task_id, now, timeout_s, retries, backoff, held=paused)
        for spec, (task_id, timeout_s, retries, backoff, paused) in zip(specs, rows, strict=True)
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
