"""Tasks: insert, read, and every state transition as one guarded statement,
so the database settles races, never Python locks. Only `queue` calls the
writers (an import-linter contract says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..schedules import Firing, Schedule
from ..tables import attempts, tasks
from ..tasks import FINISHED, UNFINISHED, NewTask, Outcome, Status, Task
from . import callbacks
from .admission import Leased, acquire_postgresql, acquire_sqlite, in_limited_queue
from .base import Database, status_in, task_from_row, within_allowance
from .control import Control
from .idempotency import Idempotency
from .listing import Listing
from .queues import QueueStore
from .rows import insert_postgresql, insert_tasks
from .schedules import ScheduleStore
from .settle import Settlement, held_by, last_attempts, makes_callback, settle_batch, settled
from .ticks import fire

# A fresh task (never attempted) may be acquired this much before its due
# date, so a consumer whose clock runs a little behind the enqueuing node's
# does not drop its notification. Leases and retries (retry_count >= 1) get
# no such slack: their due dates hold exactly.
FRESH_TASK_CLOCK_SKEW_S = 1.0


class TaskStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.control = Control(db)
        self.listing = Listing(db)
        self.keys = Idempotency(db)
        self.queues = QueueStore(db)
        self.schedules = ScheduleStore(db)

    async def insert(self, spec: NewTask, now: float) -> Task:
        """Store a pending task, due now; committed when this returns."""
        return (await self.insert_many([spec], now))[0]

    async def insert_many(self, specs: Sequence[NewTask], now: float) -> list[Task]:
        """Store pending tasks in one statement that commits by itself, in order."""
        if self.db.postgresql:
            async with self.db.driver() as conn:
                return await insert_postgresql(conn, specs, now, self.db.default_timeout_s)
        async with self.db.begin() as conn:
            return await insert_tasks(conn, specs, now, self.db.default_timeout_s)

    async def fire(
        self, firings: Sequence[tuple[Schedule, Firing]], now: float
    ) -> dict[int, list[Task]]:
        """The tasks of schedules' ticks, committed with their next ticks in
        one transaction, by schedule id; those another node fired first are
        not there (see ticks)."""
        async with self.db.begin() as conn:
            return await fire(conn, firings, now, self.db.default_timeout_s)

    async def get(self, task_id: int) -> Task | None:
        async with self.db.single() as conn:
            row = (await conn.execute(tasks.select().where(tasks.c.id == task_id))).first()
        return task_from_row(row) if row else None

    async def attempts(self, task_id: int) -> list[dict[str, Any]]:
        statement = (
            attempts.select().where(attempts.c.task_id == task_id).order_by(attempts.c.number)
        )
        async with self.db.begin() as conn:
            return [dict(row._mapping) for row in (await conn.execute(statement)).all()]

    async def acquire(
        self, ids: Sequence[int], now: float, lease_extra_s: float, max_retries: int
    ) -> list[Task]:
        """lease()'s tasks."""
        return (await self.lease(ids, now, lease_extra_s, max_retries)).tasks

    async def lease(
        self, ids: Sequence[int], now: float, lease_extra_s: float, max_retries: int
    ) -> Leased:
        """Take the given tasks that are unfinished, due and not out of
        attempts, as far as their queues' limits allow (see admission).

        One transaction: the retry count goes up by one and the due date moves
        to now + the task's timeout + lease_extra_s, so it outlasts the
        web-hook call. A stale or duplicate id simply matches no row.
        """
        if not ids:
            return Leased([], [])
        params = {
            "ids": list(ids),
            "now": now,
            "fresh_due": now + FRESH_TASK_CLOCK_SKEW_S,
            "max_retries": max_retries,
            "lease_from": now + lease_extra_s,
        }
        if self.db.postgresql:  # one call of ntorque_acquire: one round trip
            async with self.db.driver() as conn:
                leased = await acquire_postgresql(conn, params)
        else:
            async with self.db.begin() as conn:
                leased = await acquire_sqlite(conn, params)
        return Leased(sorted(leased.tasks, key=lambda task: task.id), leased.waits)

    async def release(self, leased: Sequence[Task], now: float) -> list[Task]:
        """Hand back leases whose calls were never made (the node stopped in
        between): pending again, due now, the attempt not counted. Guarded by
        the attempt number, like settle; the tasks given back."""
        released: list[Task] = []
        async with self.db.begin() as conn:
            for task in leased:
                statement = (
                    tasks.update()
                    .where(held_by(task))
                    .values(
                        status=Status.PENDING.value,
                        retry_count=task.retry_count - 1,
                        due=now,
                        modified=now,
                    )
                    .returning(*tasks.c)
                )
                row = (await conn.execute(statement)).first()
                if row:
                    released.append(task_from_row(row))
        return released

    async def settle(
        self, task: Task, outcome: Outcome, status: Status, due: float, now: float
    ) -> Task | None:
        """Record the attempt; then set the result, guarded by the attempt number.

        Returns None when a newer attempt owns the task (this answer came too
        late); the attempt is recorded all the same. A callback it makes is
        left for the requeuer to notify.
        """
        return (await self.settle_many([Settlement(task, outcome, status, due)], now))[0][0]

    async def settle_many(
        self, batch: Sequence[Settlement], now: float
    ) -> tuple[list[Task | None], list[Task]]:
        """settle() for several attempts in one transaction, in order; and the
        callback tasks of those that ended, made in the same transaction.

        The usual batch (no callback to make) is one statement on PostgreSQL
        that commits by itself: one round trip."""
        if not any(makes_callback(item) for item in batch):
            async with self.db.driver() as conn:
                held = await settle_batch(conn, batch, now)
            return [settled(item, now) if item.task.id in held else None for item in batch], []
        async with self.db.begin() as conn:
            held = await settle_batch(conn, batch, now)
            results = [settled(item, now) if item.task.id in held else None for item in batch]
            calling = {task.id for task in results if task and task.finished and task.callback_url}
            if not calling:  # the usual batch: nothing more to do on the settle path
                return results, []
            ended = [task for task in results if task and task.id in calling]
            made = await callbacks.add(conn, ended, now, last_attempts(batch, calling))
        by_id = {task.id: task for task in made.ended}
        return [by_id.get(task.id, task) if task else None for task in results], made.callbacks

    async def soonest_due(self) -> float | None:
        """The earliest due date of an unfinished task (None: there is none):
        the first entry of the due index."""
        async with self.db.single() as conn:
            return await conn.scalar(SOONEST_DUE)  # type: ignore[no-any-return]

    async def due_ids(self, now: float, limit: int, max_retries: int) -> list[int]:
        """Unfinished tasks whose due date has passed, oldest first."""
        params = {"now": now, "limit": limit, "max_retries": max_retries}
        async with self.db.single() as conn:
            return list((await conn.execute(DUE_IDS, params)).scalars())

    async def upcoming(
        self, now: float, until: float, limit: int, max_retries: int
    ) -> list[tuple[int, float]]:
        """(id, due) of unfinished tasks falling due after now, up to until, soonest
        first: read from the due index, so tasks due later cost nothing."""
        params = {"now": now, "until": until, "limit": limit, "max_retries": max_retries}
        async with self.db.single() as conn:
            return [(row.id, row.due) for row in (await conn.execute(UPCOMING, params)).all()]

    async def expire(self, now: float, max_retries: int) -> tuple[list[Task], list[Task]]:
        """Fail tasks out of attempts whose last lease ran out unsettled
        (their consumer died during the final attempt); with their callbacks."""
        async with self.db.begin() as conn:
            rows = (await conn.execute(EXPIRE, {"now": now, "max_retries": max_retries})).all()
            expired = [task_from_row(row) for row in rows]
            made = await callbacks.add(conn, expired, now)
        return made.ended, made.callbacks

    async def cleanup(self, before: float, limit: int) -> int:
        """Delete up to `limit` finished tasks last changed before `before`."""
        chosen = (
            sa.select(tasks.c.id)
            .where(status_in(FINISHED), tasks.c.modified < before)
            .order_by(tasks.c.modified)
            .limit(limit)
        )
        async with self.db.begin() as conn:
            ids = list((await conn.execute(chosen)).scalars())
            if ids:
                await conn.execute(attempts.delete().where(attempts.c.task_id.in_(ids)))
                await conn.execute(tasks.delete().where(tasks.c.id.in_(ids)))
        return len(ids)

    async def run_now(self, task_id: int, now: float) -> Task | None:
        """A pending task (waiting for a retry or its time) is due now; None
        if it is not pending."""
        statement = (
            tasks.update()
            .where(tasks.c.id == task_id, tasks.c.status == Status.PENDING.value)
            .values(due=now, modified=now)
            .returning(*tasks.c)
        )
        return await self._changed(statement)

    async def _changed(self, statement: sa.Update) -> Task | None:
        async with self.db.begin() as conn:
            row = (await conn.execute(statement)).first()
        return task_from_row(row) if row else None


# The requeuer's statements, built once: an idle node runs them every few
# seconds, and building one (with its cache key) cost more than running it.
MAX_RETRIES = sa.bindparam("max_retries", type_=sa.Integer)
SOONEST_DUE = sa.select(sa.func.min(tasks.c.due)).where(status_in(UNFINISHED))
DUE_IDS = (
    sa.select(tasks.c.id)
    .where(
        status_in(UNFINISHED),
        tasks.c.due <= sa.bindparam("now", type_=sa.Float),
        within_allowance(MAX_RETRIES),
        ~in_limited_queue(),  # woken by their queues, as their limits allow
    )
    .order_by(tasks.c.due)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
UPCOMING = (
    sa.select(tasks.c.id, tasks.c.due)
    .where(
        status_in(UNFINISHED),
        tasks.c.due > sa.bindparam("now", type_=sa.Float),
        tasks.c.due <= sa.bindparam("until", type_=sa.Float),
        within_allowance(MAX_RETRIES),
    )
    .order_by(tasks.c.due)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
EXPIRE = (
    tasks.update()
    .where(
        status_in(UNFINISHED),
        tasks.c.due <= sa.bindparam("now", type_=sa.Float),
        ~within_allowance(MAX_RETRIES),
    )
    .values(
        status=Status.FAILED.value,
        modified=sa.bindparam("now", type_=sa.Float),
        last_error="no answer within the timeout on the final attempt",
    )
    .returning(*tasks.c)
)
