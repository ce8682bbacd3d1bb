"""The lease of due tasks under their queues' limits: paused queues start
nothing, max_concurrency counts the calls in flight, rate_per_s spends a
token bucket. Exact across nodes because each limited queue is counted under
its row's lock, in the transaction that takes the tasks.

On PostgreSQL all of it is one call of ntorque_acquire (migration 0004), sent
on the driver, so the acquire is one round trip. SQLite runs the same steps here, one
statement at a time, after taking the database's write lock.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..tables import queues, tasks
from ..tasks import UNFINISHED, Status, Task
from .base import status_in, task_from_row, task_from_values, within_allowance

NO_LIMIT = 2**31


class Wait(NamedTuple):
    """A rate-limited queue had tasks it could not start: its next token."""

    app_id: int
    queue: str
    until: float


class Leased(NamedTuple):
    tasks: list[Task]  # those with .limited were leased under a limit
    waits: list[Wait]


def limited_queue() -> sa.ColumnElement[bool]:
    return sa.or_(
        queues.c.paused, queues.c.max_concurrency.is_not(None), queues.c.rate_per_s.is_not(None)
    )


def of_queue(app_id: Any, name: Any) -> sa.ColumnElement[bool]:
    """Tasks of one application's queue (app_id 0: no application)."""
    return sa.and_(tasks.c.queue == name, sa.func.coalesce(tasks.c.app_id, 0) == app_id)


def in_limited_queue() -> sa.Exists:
    """The task's queue is paused or limited."""
    return (
        sa.select(1)
        .where(
            queues.c.app_id == sa.func.coalesce(tasks.c.app_id, 0),
            queues.c.name == tasks.c.queue,
            limited_queue(),
        )
        .exists()
    )


def leasable() -> list[sa.ColumnElement[bool]]:
    """Unfinished, due (a fresh, unscheduled task a little early: clocks
    differ between nodes), with attempts left."""
    return [
        status_in(UNFINISHED),
        sa.or_(
            tasks.c.due <= sa.bindparam("now"),
            sa.and_(
                tasks.c.retry_count == 0,
                tasks.c.due == tasks.c.created,  # never a scheduled task early
                tasks.c.due <= sa.bindparam("fresh_due"),
            ),
        ),
        within_allowance(sa.bindparam("max_retries")),
    ]


LEASE_VALUES = {
    "status": Status.IN_PROGRESS.value,
    "retry_count": tasks.c.retry_count + 1,
    "due": sa.bindparam("lease_from", type_=sa.Float) + tasks.c.timeout_s,
    "modified": sa.bindparam("now"),
}

# One call of the function (migration 0004); written for the driver (see driver.py).
ACQUIRE_POSTGRESQL = (
    "SELECT (a.task).*, a.limited, a.wait_app, a.wait_queue, a.wait_until"
    " FROM ntorque_acquire($1::BIGINT[], $2::DOUBLE PRECISION, $3::DOUBLE PRECISION,"
    " $4::INTEGER, $5::DOUBLE PRECISION) AS a"
)
ACQUIRE_ARGS = ("ids", "now", "fresh_due", "max_retries", "lease_from")
TASK_COLUMNS = tuple(column.name for column in tasks.c)


async def acquire_postgresql(conn: asyncpg.Connection, params: dict[str, Any]) -> Leased:
    """On a lent connection: one statement, committed by itself."""
    leased, waits = [], []
    args = [params[name] for name in ACQUIRE_ARGS]
    for record in await conn.fetch(ACQUIRE_POSTGRESQL, *args):
        # The columns this code knows, by name: a column a newer migration adds
        # to tasks (the function returns the whole row) is left out, so a
        # node of the version before still acquires during a rolling upgrade.
        values = {name: record[name] for name in TASK_COLUMNS}
        limited = bool(record["limited"])
        wait = (record["wait_app"], record["wait_queue"], record["wait_until"])
        if values["id"] is None:
            waits.append(Wait(int(wait[0]), str(wait[1]), float(wait[2])))
        else:
            leased.append(task_from_row_values(values, limited))
    return Leased(leased, waits)


def task_from_row_values(values: dict[str, Any], limited: bool) -> Task:
    return dataclasses.replace(task_from_values(values), limited=limited)


# -- SQLite: the same steps, one statement at a time ---------------------------

LIMITED_AMONG = (
    sa.select(queues)
    .where(
        sa.tuple_(queues.c.app_id, queues.c.name).in_(
            sa.select(sa.func.coalesce(tasks.c.app_id, 0), tasks.c.queue).where(
                tasks.c.id.in_(sa.bindparam("ids", expanding=True))
            )
        ),
        limited_queue(),
    )
    .order_by(queues.c.app_id, queues.c.name)
)

UNLIMITED_LEASE = (
    tasks.update()
    .where(tasks.c.id.in_(sa.bindparam("ids", expanding=True)), *leasable(), ~in_limited_queue())
    .values(LEASE_VALUES)
    .returning(*tasks.c)
)


async def acquire_sqlite(conn: AsyncConnection, params: dict[str, Any]) -> Leased:
    """SQLite reads outside a transaction until the first write: the lease
    of the unlimited tasks comes first, and with it the write lock (held
    until the commit, matched rows or not), so every count after it is
    exact."""
    rows = (await conn.execute(UNLIMITED_LEASE, params)).all()
    leased = [task_from_row(row) for row in rows]
    waits: list[Wait] = []
    if len(leased) >= len(params["ids"]):
        return Leased(leased, waits)  # the usual call: none in a limited queue
    for row in (await conn.execute(LIMITED_AMONG, params)).all():
        taken, wait = await _lease_limited(conn, row, params)
        leased += taken
        waits += [wait] if wait else []
    return Leased(leased, waits)


async def _lease_limited(
    conn: AsyncConnection, queue: sa.Row[Any], params: dict[str, Any]
) -> tuple[list[Task], Wait | None]:
    if queue.paused:
        return [], None
    now = params["now"]
    room = await concurrency_room(conn, queue, now)
    tokens = tokens_now(queue, now) if queue.rate_per_s is not None else 0.0
    if queue.rate_per_s is not None:
        room = min(room, math.floor(tokens))
    taken: list[Task] = []
    if room > 0:
        chosen = (
            sa.select(tasks.c.id)
            .where(tasks.c.id.in_(params["ids"]), of_queue(queue.app_id, queue.name), *leasable())
            .order_by(tasks.c.due, tasks.c.id)
            .limit(room)
        )
        statement = (
            tasks.update()
            .where(tasks.c.id.in_(chosen.scalar_subquery()))
            .values(LEASE_VALUES)
            .returning(*tasks.c)
        )
        rows = (await conn.execute(statement, params)).all()
        taken = [task_from_row_values(dict(row._mapping), limited=True) for row in rows]
    if queue.rate_per_s is None:
        return taken, None
    tokens -= len(taken)
    since = max(now, queue.tokens_at)
    await conn.execute(
        queues.update()
        .where(queues.c.app_id == queue.app_id, queues.c.name == queue.name)
        .values(tokens=tokens, tokens_at=since)
    )
    if tokens >= 1:
        return taken, None
    return taken, Wait(queue.app_id, queue.name, since + (1 - tokens) / queue.rate_per_s)


async def concurrency_room(conn: AsyncConnection, queue: sa.Row[Any], now: float) -> int:
    """Calls the queue may start under max_concurrency (NO_LIMIT without
    one): the limit less its calls in flight, leased with the lease still
    running (a crashed node's stop counting when theirs runs out)."""
    if queue.max_concurrency is None:
        return NO_LIMIT
    statement = sa.select(sa.func.count()).where(
        of_queue(queue.app_id, queue.name),
        status_in(UNFINISHED),  # the partial index's condition, so SQLite uses it
        tasks.c.status == Status.IN_PROGRESS.value,
        tasks.c.due > now,
    )
    return int(queue.max_concurrency) - int((await conn.execute(statement)).scalar_one())


def tokens_now(queue: sa.Row[Any], now: float) -> float:
    """A rate-limited queue's bucket at now: refilled since it was last spent,
    never above the burst."""
    refill = max(now - queue.tokens_at, 0.0) * queue.rate_per_s
    return float(min(float(queue.burst), queue.tokens + refill))
