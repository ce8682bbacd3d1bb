"""The rows of new tasks: what an insert writes, and the task it made.

A task's timeout, retries and backoff, when the client left them out, come
from its queue's settings (else the server's defaults), read in the insert
itself: a queue changed on one node applies at once on every other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..tables import queues, tasks
from ..tasks import DEFAULT_QUEUE, NewTask, Status, Task


async def insert_tasks(
    conn: AsyncConnection, specs: Sequence[NewTask], now: float, default_timeout_s: int
) -> list[Task]:
    """Insert pending tasks in one statement, in order (and the rows of the
    named queues they are the first to name)."""
    if not specs:
        return []
    await _name_queues(conn, {(spec.app_id or 0, spec.queue) for spec in specs}, now)
    rows = [task_values(spec, now, default_timeout_s) for spec in specs]
    made = (await conn.execute(INSERT_TASKS, rows)).all()
    return [new_task(spec, row, now) for spec, row in zip(specs, made, strict=True)]


async def _name_queues(conn: AsyncConnection, named: set[tuple[int, str]], now: float) -> None:
    """A queue exists once a task names it: its row, with no settings, unless
    it has one. The default queue needs none (it always exists)."""
    rows = [
        {"app_id": app_id, "name": name, "created": now, "modified": now}
        for app_id, name in sorted(named)
        if name != DEFAULT_QUEUE
    ]
    if rows:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(dialect.insert(queues).values(rows).on_conflict_do_nothing())


def task_values(spec: NewTask, now: float, default_timeout_s: int) -> dict[str, Any]:
    """The parameters of INSERT_TASKS for a new pending task."""
    return {
        "app_id": spec.app_id,
        "queue": spec.queue,
        **_queue_keys(spec),
        "url": spec.url,
        "method": spec.method,
        "own_timeout_s": spec.timeout_s,
        "default_timeout_s": default_timeout_s,
        "body": spec.body,
        "content_type": spec.content_type,
        "charset": spec.charset,
        "headers": [list(pair) for pair in spec.headers],
        "status": Status.PENDING.value,
        "retry_count": 0,
        "due": now if spec.due is None else spec.due,
        "created": now,
        "modified": now,
        "own_retries": spec.retries,
        "own_backoff": spec.backoff,
        "callback_url": spec.callback_url,
        "callback_of": spec.callback_of,
    }


# A multi-row INSERT renames each row's parameters, and takes a parameter
# used twice in one row for two: each lookup of the queue has its own names.
QUEUE_SETTINGS = ("timeout_s", "retries", "backoff")


def _queue_keys(spec: NewTask) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for setting in QUEUE_SETTINGS:
        keys[f"{setting}_of_app"] = spec.app_id or 0
        keys[f"{setting}_of_queue"] = spec.queue
    return keys


def _queue_setting(column: sa.Column[Any]) -> sa.ScalarSelect[Any]:
    """The task's queue's setting, or null (no row, or not set)."""
    return (
        sa.select(column)
        .where(
            queues.c.app_id == sa.bindparam(f"{column.name}_of_app"),
            queues.c.name == sa.bindparam(f"{column.name}_of_queue"),
        )
        .scalar_subquery()
    )


# Built once, executed with parameters: building `.values(...)` per call costs
# more CPU than the round trip on the enqueue path. Several rows go in one
# multi-row INSERT whose ids come back in the rows' order.
INSERT_TASKS = (
    tasks.insert()
    .values(
        timeout_s=sa.func.coalesce(
            sa.bindparam("own_timeout_s", type_=sa.Integer),
            _queue_setting(queues.c.timeout_s),
            sa.bindparam("default_timeout_s", type_=sa.Integer),
        ),
        retries=sa.func.coalesce(
            sa.bindparam("own_retries", type_=sa.Integer), _queue_setting(queues.c.retries)
        ),
        backoff=sa.func.coalesce(
            sa.bindparam("own_backoff", type_=sa.String), _queue_setting(queues.c.backoff)
        ),
    )
    .returning(
        tasks.c.id,
        tasks.c.timeout_s,
        tasks.c.retries,
        tasks.c.backoff,
        # Its queue is paused: no use notifying it now (the resume will).
        # Written out: SQLAlchemy leaves RETURNING's columns unqualified, and
        # app_id alone would be ambiguous in the subquery.
        sa.literal_column(
            "(SELECT queues.paused FROM queues WHERE queues.app_id ="
            " coalesce(tasks.app_id, 0) AND queues.name = tasks.queue)",
            sa.Boolean,
        ).label("held"),
        sort_by_parameter_order=True,
    )
)


def new_task(spec: NewTask, row: sa.Row[Any], now: float) -> Task:
    """The stored task an insert of spec made (row: what INSERT_TASKS returned)."""
    return Task(
        id=row.id, app_id=spec.app_id, url=spec.url, method=spec.method,
        timeout_s=row.timeout_s, body=spec.body, content_type=spec.content_type,
        charset=spec.charset, headers=spec.headers, status=Status.PENDING, retry_count=0,
        due=now if spec.due is None else spec.due, created=now, modified=now,
        last_status_code=None, last_error=None, retries=row.retries, backoff=row.backoff,
        callback_url=spec.callback_url, callback_of=spec.callback_of, queue=spec.queue,
        held=bool(row.held),
    )  # fmt: skip
