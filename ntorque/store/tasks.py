"""Tasks: insert, read, and every state transition as one guarded statement,
so the database settles races, never Python locks. Only `queue` calls the
writers (an import-linter contract says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from ..tables import attempts, tasks
from ..tasks import FINISHED, UNFINISHED, NewTask, Outcome, Status, Task
from .base import Database, status_in, task_from_row
from .settle import Settlement, held_by, settle_batch, settled

# A fresh task (never attempted) may be acquired this much before its due
# date, so a consumer whose clock runs a little behind the enqueuing node's
# does not drop its notification. Leases and retries (retry_count >= 1) get
# no such slack: their due dates hold exactly.
FRESH_TASK_CLOCK_SKEW_S = 1.0


class TaskStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, spec: NewTask, now: float) -> Task:
        """Store a pending task, due now; committed when this returns."""
        return (await self.insert_many([spec], now))[0]

    async def insert_many(self, specs: Sequence[NewTask], now: float) -> list[Task]:
        """Store pending tasks in one statement and one commit, in order."""
        rows = [task_values(spec, now) for spec in specs]
        async with self.db.begin() as conn:
            ids = (await conn.execute(INSERT_TASKS, rows)).scalars().all()
        return [new_task(spec, task_id, now) for spec, task_id in zip(specs, ids, strict=True)]

    async def get(self, task_id: int) -> Task | None:
        async with self.db.begin() as conn:
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
        """Take the given tasks that are unfinished, due and not out of attempts.

        One statement: the retry count goes up by one and the due date moves to
        now + the task's timeout + lease_extra_s, so it outlasts the web-hook
        call. A stale or duplicate id simply matches no row.
        """
        if not ids:
            return []
        params = {
            "ids": list(ids),
            "now": now,
            "fresh_due": now + FRESH_TASK_CLOCK_SKEW_S,
            "max_retries": max_retries,
            "lease_from": now + lease_extra_s,
        }
        async with self.db.begin() as conn:
            rows = (await conn.execute(ACQUIRE[self.db.postgresql], params)).all()
        return sorted((task_from_row(row) for row in rows), key=lambda task: task.id)

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
        late); the attempt is recorded all the same.
        """
        return (await self.settle_many([Settlement(task, outcome, status, due)], now))[0]

    async def settle_many(self, batch: Sequence[Settlement], now: float) -> list[Task | None]:
        """settle() for several attempts in one transaction, in order."""
        async with self.db.begin() as conn:
            held = await settle_batch(conn, batch, now)
        return [settled(item, now) if item.task.id in held else None for item in batch]

    async def due_ids(self, now: float, limit: int, max_retries: int) -> list[int]:
        """Unfinished tasks whose due date has passed, oldest first."""
        statement = (
            sa.select(tasks.c.id)
            .where(status_in(UNFINISHED), tasks.c.due <= now, tasks.c.retry_count < max_retries)
            .order_by(tasks.c.due)
            .limit(limit)
        )
        async with self.db.begin() as conn:
            return list((await conn.execute(statement)).scalars())

    async def expire(self, now: float, max_retries: int) -> list[Task]:
        """Fail tasks out of attempts whose last lease ran out unsettled
        (their consumer died during the final attempt)."""
        statement = (
            tasks.update()
            .where(status_in(UNFINISHED), tasks.c.due <= now, tasks.c.retry_count >= max_retries)
            .values(
                status=Status.FAILED.value,
                modified=now,
                last_error="no answer within the timeout on the final attempt",
            )
            .returning(*tasks.c)
        )
        async with self.db.begin() as conn:
            return [task_from_row(row) for row in (await conn.execute(statement)).all()]

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

    async def retry_now(self, task_id: int, now: float, max_retry_count: int) -> Task | None:
        """A failed or pending task becomes pending and due now; its attempt
        count drops to at most max_retry_count, so it gets one more attempt at
        least and attempt numbers keep going up. None if it is neither."""
        least = sa.func.least if self.db.postgresql else sa.func.min
        statement = (
            tasks.update()
            .where(tasks.c.id == task_id, status_in((Status.FAILED, Status.PENDING)))
            .values(
                status=Status.PENDING.value,
                due=now,
                modified=now,
                retry_count=least(tasks.c.retry_count, max_retry_count),
            )
            .returning(*tasks.c)
        )
        return await self._changed(statement)

    async def cancel(self, task_id: int, now: float, reason: str) -> Task | None:
        """A pending task is failed for good with `reason`; None if not pending."""
        statement = (
            tasks.update()
            .where(tasks.c.id == task_id, tasks.c.status == Status.PENDING.value)
            .values(status=Status.FAILED.value, modified=now, last_error=reason)
            .returning(*tasks.c)
        )
        return await self._changed(statement)

    async def _changed(self, statement: sa.Update) -> Task | None:
        async with self.db.begin() as conn:
            row = (await conn.execute(statement)).first()
        return task_from_row(row) if row else None


def task_values(spec: NewTask, now: float) -> dict[str, Any]:
    """The row of a new pending task, due now."""
    return {
        "app_id": spec.app_id,
        "url": spec.url,
        "method": spec.method,
        "timeout_s": spec.timeout_s,
        "body": spec.body,
        "content_type": spec.content_type,
        "charset": spec.charset,
        "headers": [list(pair) for pair in spec.headers],
        "status": Status.PENDING.value,
        "retry_count": 0,
        "due": now,
        "created": now,
        "modified": now,
    }


# Built once, executed with parameters: building `.values(...)` per call costs
# more CPU than the round trip on the enqueue path. Several rows go in one
# multi-row INSERT whose ids come back in the rows' order.
INSERT_TASKS = tasks.insert().returning(tasks.c.id, sort_by_parameter_order=True)


def new_task(spec: NewTask, task_id: int, now: float) -> Task:
    """The stored task an insert of spec made."""
    return Task(
        id=task_id, app_id=spec.app_id, url=spec.url, method=spec.method,
        timeout_s=spec.timeout_s, body=spec.body, content_type=spec.content_type,
        charset=spec.charset, headers=spec.headers, status=Status.PENDING, retry_count=0,
        due=now, created=now, modified=now, last_status_code=None, last_error=None,
    )  # fmt: skip


def _acquire(postgresql: bool) -> sa.Update:
    """The guarded lease, built once per dialect (see TaskStore.acquire). On
    PostgreSQL the ids are one array parameter, so the statement text stays
    the same whatever the batch size; SQLite expands them into IN (...)."""
    if postgresql:
        wanted = tasks.c.id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.BigInteger)))
    else:
        wanted = tasks.c.id.in_(sa.bindparam("ids", expanding=True))
    return (
        tasks.update()
        .where(
            wanted,
            status_in(UNFINISHED),
            sa.or_(
                tasks.c.due <= sa.bindparam("now"),
                sa.and_(tasks.c.retry_count == 0, tasks.c.due <= sa.bindparam("fresh_due")),
            ),
            tasks.c.retry_count < sa.bindparam("max_retries"),
        )
        .values(
            status=Status.IN_PROGRESS.value,
            retry_count=tasks.c.retry_count + 1,
            due=sa.bindparam("lease_from", type_=sa.Float) + tasks.c.timeout_s,
            modified=sa.bindparam("now"),
        )
        .returning(*tasks.c)
    )


ACQUIRE = {False: _acquire(postgresql=False), True: _acquire(postgresql=True)}
