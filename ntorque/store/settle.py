"""Settling attempts: record each attempt, then set its task's result,
guarded by the attempt number so a late answer cannot overwrite a newer one.

PostgreSQL settles a whole batch in one statement (on the driver: one round
trip); SQLite one by one inside one transaction (it has no round trips to
save, only the commit, shared).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..tables import attempts, tasks
from ..tasks import FINISHED, Outcome, Status, Task
from .driver import Connection, fetch


class Settlement(NamedTuple):
    """One attempt's result and the state it leaves its task in."""

    task: Task
    outcome: Outcome
    status: Status
    due: float


def settled(item: Settlement, now: float) -> Task:
    """The task as a held settlement leaves it."""
    return dataclasses.replace(
        item.task,
        status=item.status,
        due=item.due,
        modified=now,
        last_status_code=item.outcome.status_code,
        last_error=item.outcome.error,
    )


def makes_callback(item: Settlement) -> bool:
    """The attempt ends a task that has a callback to make (if it holds)."""
    return item.status in FINISHED and item.task.callback_url is not None


async def settle_batch(conn: Connection, batch: Sequence[Settlement], now: float) -> set[int]:
    """Record every attempt; the ids of the tasks still held by their attempt."""
    if isinstance(conn, AsyncConnection) and conn.dialect.name == "sqlite":
        return await _settle_one_by_one(conn, batch, now)
    return await _settle_postgresql(conn, batch, now)


# The attempts go in and the guarded updates happen together, from arrays, so
# the statement text (and its prepared plan) is the same whatever the batch
# size. Written for the driver (see driver.py).
SETTLE_POSTGRESQL = """
WITH batch AS (
    SELECT * FROM unnest(
        $1::BIGINT[], $2::INTEGER[], $3::TEXT[], $4::DOUBLE PRECISION[], $5::INTEGER[],
        $6::TEXT[], $7::DOUBLE PRECISION[], $8::DOUBLE PRECISION[], $9::DOUBLE PRECISION[]
    ) AS b(id, number, status, due, code, error, started, duration_s, retry_after_s)
), recorded AS (
    INSERT INTO attempts (task_id, number, started, duration_s, status_code, error, retry_after_s)
    SELECT id, number, started, duration_s, code, error, retry_after_s FROM batch
    WHERE EXISTS (SELECT 1 FROM tasks WHERE tasks.id = batch.id)
)
UPDATE tasks SET status = batch.status, due = batch.due, modified = $10,
    last_status_code = batch.code, last_error = batch.error
FROM batch
WHERE tasks.id = batch.id AND tasks.retry_count = batch.number
    AND tasks.status = 'in_progress'
RETURNING tasks.id
"""


async def _settle_postgresql(conn: Connection, batch: Sequence[Settlement], now: float) -> set[int]:
    columns = [
        [item.task.id for item in batch],
        [item.task.retry_count for item in batch],
        [item.status.value for item in batch],
        [item.due for item in batch],
        [item.outcome.status_code for item in batch],
        [item.outcome.error for item in batch],
        [item.outcome.started for item in batch],
        [item.outcome.duration_s for item in batch],
        [item.outcome.retry_after_s for item in batch],
    ]
    return {row[0] for row in await fetch(conn, SETTLE_POSTGRESQL, [*columns, now])}


RECORD_ATTEMPT = attempts.insert()
SETTLE_ONE = (
    tasks.update()
    .where(
        tasks.c.id == sa.bindparam("held_id"),
        tasks.c.retry_count == sa.bindparam("held_number"),
        tasks.c.status == Status.IN_PROGRESS.value,
    )
    .values(
        status=sa.bindparam("new_status"),
        due=sa.bindparam("new_due"),
        modified=sa.bindparam("now"),
        last_status_code=sa.bindparam("code"),
        last_error=sa.bindparam("error"),
    )
)


async def _settle_one_by_one(
    conn: AsyncConnection, batch: Sequence[Settlement], now: float
) -> set[int]:
    held: set[int] = set()
    for item in batch:
        task, outcome = item.task, item.outcome
        await conn.execute(RECORD_ATTEMPT, attempt_row(item))
        result = await conn.execute(
            SETTLE_ONE,
            {
                "held_id": task.id, "held_number": task.retry_count,
                "new_status": item.status.value, "new_due": item.due, "now": now,
                "code": outcome.status_code, "error": outcome.error,
            },
        )  # fmt: skip
        if result.rowcount:
            held.add(task.id)
    return held


def attempt_row(item: Settlement) -> dict[str, Any]:
    """The attempts row a settlement records."""
    task, outcome = item.task, item.outcome
    return {
        "task_id": task.id, "number": task.retry_count, "started": outcome.started,
        "duration_s": outcome.duration_s, "status_code": outcome.status_code,
        "error": outcome.error, "retry_after_s": outcome.retry_after_s,
    }  # fmt: skip


def last_attempts(batch: Sequence[Settlement], held: set[int]) -> dict[int, dict[str, Any]]:
    """The attempt each held settlement recorded, by task id (the last one of
    its task)."""
    return {item.task.id: attempt_row(item) for item in batch if item.task.id in held}


def held_by(task: Task) -> sa.ColumnElement[bool]:
    """The attempt guard: the task is still in progress under this very attempt."""
    return sa.and_(
        tasks.c.id == task.id,
        tasks.c.retry_count == task.retry_count,
        tasks.c.status == Status.IN_PROGRESS.value,
    )
