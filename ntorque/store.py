"""All SQL. Every state transition of a task is one guarded statement here, so
the database settles races, never Python locks. Nothing above this module
writes SQL; nothing here knows about HTTP or channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import tables
from .errors import StorageUnavailable
from .tables import applications, attempts, server_secrets, tasks
from .tasks import FINISHED, UNFINISHED, NewTask, Outcome, Status, Task

log = logging.getLogger(__name__)

# A fresh task (never attempted) may be acquired this much before its due
# date, so a consumer whose clock runs a little behind the enqueuing node's
# does not drop its notification. Leases and retries (retry_count >= 1) get
# no such slack: their due dates hold exactly.
FRESH_TASK_CLOCK_SKEW_S = 1.0

_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, OSError, asyncio.TimeoutError)


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; an unreachable database becomes StorageUnavailable."""
        try:
            async with self.engine.begin() as conn:
                yield conn
        except _UNAVAILABLE as error:
            raise StorageUnavailable() from error
        except sa.exc.DBAPIError as error:
            if error.connection_invalidated or _is_disk_error(error):
                raise StorageUnavailable() from error
            raise

    # -- tasks ---------------------------------------------------------------

    async def insert(self, spec: NewTask, now: float) -> Task:
        """Store a pending task, due now; committed when this returns."""
        async with self._begin() as conn:
            row = (await conn.execute(INSERT_TASK, task_values(spec, now))).one()
        return _task(row)

    async def get(self, task_id: int) -> Task | None:
        async with self._begin() as conn:
            row = (await conn.execute(tasks.select().where(tasks.c.id == task_id))).first()
        return _task(row) if row else None

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
        statement = (
            tasks.update()
            .where(
                tasks.c.id.in_(list(ids)),
                _status_in(UNFINISHED),
                sa.or_(
                    tasks.c.due <= now,
                    sa.and_(tasks.c.retry_count == 0, tasks.c.due <= now + FRESH_TASK_CLOCK_SKEW_S),
                ),
                tasks.c.retry_count < max_retries,
            )
            .values(
                status=Status.IN_PROGRESS.value,
                retry_count=tasks.c.retry_count + 1,
                due=sa.literal(now) + tasks.c.timeout_s + lease_extra_s,
                modified=now,
            )
            .returning(*tasks.c)
        )
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return sorted((_task(row) for row in rows), key=lambda task: task.id)

    async def release(self, leased: Sequence[Task], now: float) -> list[Task]:
        """Hand back leases whose calls were never made (the node stopped in
        between): pending again, due now, the attempt not counted. Guarded by
        the attempt number, like settle; the tasks given back."""
        released: list[Task] = []
        async with self._begin() as conn:
            for task in leased:
                statement = (
                    tasks.update()
                    .where(_held_by(task))
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
                    released.append(_task(row))
        return released

    async def settle(
        self, task: Task, outcome: Outcome, status: Status, due: float, now: float
    ) -> Task | None:
        """Record the attempt; then set the result, guarded by the attempt number.

        Returns None when a newer attempt owns the task (this answer came too
        late); the attempt is recorded all the same.
        """
        attempt = {
            "task_id": task.id,
            "number": task.retry_count,
            "started": outcome.started,
            "duration_s": outcome.duration_s,
            "status_code": outcome.status_code,
            "error": outcome.error,
        }
        statement = (
            tasks.update()
            .where(_held_by(task))
            .values(
                status=status.value,
                due=due,
                modified=now,
                last_status_code=outcome.status_code,
                last_error=outcome.error,
            )
            .returning(*tasks.c)
        )
        async with self._begin() as conn:
            await conn.execute(attempts.insert().values(attempt))
            row = (await conn.execute(statement)).first()
        return _task(row) if row else None

    async def due_ids(self, now: float, limit: int, max_retries: int) -> list[int]:
        """Unfinished tasks whose due date has passed, oldest first."""
        statement = (
            sa.select(tasks.c.id)
            .where(
                _status_in(UNFINISHED),
                tasks.c.due <= now,
                tasks.c.retry_count < max_retries,
            )
            .order_by(tasks.c.due)
            .limit(limit)
        )
        async with self._begin() as conn:
            return list((await conn.execute(statement)).scalars())

    async def expire(self, now: float, max_retries: int) -> list[Task]:
        """Fail tasks out of attempts whose last lease ran out unsettled
        (their consumer died during the final attempt)."""
        statement = (
            tasks.update()
            .where(
                _status_in(UNFINISHED),
                tasks.c.due <= now,
                tasks.c.retry_count >= max_retries,
            )
            .values(
                status=Status.FAILED.value,
                modified=now,
                last_error="no answer within the timeout on the final attempt",
            )
            .returning(*tasks.c)
        )
        async with self._begin() as conn:
            return [_task(row) for row in (await conn.execute(statement)).all()]

    async def cleanup(self, before: float, limit: int) -> int:
        """Delete up to `limit` finished tasks last changed before `before`."""
        chosen = (
            sa.select(tasks.c.id)
            .where(_status_in(FINISHED), tasks.c.modified < before)
            .order_by(tasks.c.modified)
            .limit(limit)
        )
        async with self._begin() as conn:
            ids = list((await conn.execute(chosen)).scalars())
            if ids:
                await conn.execute(attempts.delete().where(attempts.c.task_id.in_(ids)))
                await conn.execute(tasks.delete().where(tasks.c.id.in_(ids)))
        return len(ids)

    async def attempts(self, task_id: int) -> list[dict[str, Any]]:
        statement = (
            attempts.select().where(attempts.c.task_id == task_id).order_by(attempts.c.number)
        )
        async with self._begin() as conn:
            return [dict(row._mapping) for row in (await conn.execute(statement)).all()]

    # -- applications --------------------------------------------------------

    async def create_app(self, name: str, key_hash: str, now: float) -> dict[str, Any]:
        values = {"name": name, "key_hash": key_hash, "active": True, "created": now}
        async with self._begin() as conn:
            row = (
                await conn.execute(applications.insert().values(values).returning(*applications.c))
            ).one()
        return dict(row._mapping)

    async def app_by_key_hash(self, key_hash: str) -> dict[str, Any] | None:
        statement = applications.select().where(applications.c.key_hash == key_hash)
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
        return dict(row._mapping) if row else None

    async def app_by_name(self, name: str) -> dict[str, Any] | None:
        statement = applications.select().where(applications.c.name == name)
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
        return dict(row._mapping) if row else None

    async def list_apps(self) -> list[dict[str, Any]]:
        statement = applications.select().order_by(applications.c.id)
        async with self._begin() as conn:
            return [dict(row._mapping) for row in (await conn.execute(statement)).all()]

    async def update_app(self, name: str, **values: Any) -> bool:
        statement = applications.update().where(applications.c.name == name).values(**values)
        async with self._begin() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def server_secret(self, name: str, make: Callable[[], str], now: float) -> str:
        """The shared secret called name; the first node to ask stores make()'s."""
        chosen = sa.select(server_secrets.c.value).where(server_secrets.c.name == name)
        async with self._begin() as conn:
            value = (await conn.execute(chosen)).scalar_one_or_none()
        if value is not None:
            return str(value)
        try:
            async with self._begin() as conn:
                row = {"name": name, "value": make(), "created": now}
                await conn.execute(server_secrets.insert().values(row))
        except sa.exc.IntegrityError:  # another node stored one first: use theirs
            pass
        async with self._begin() as conn:
            return str((await conn.execute(chosen)).scalar_one())

    async def count_apps(self) -> int:
        statement = sa.select(sa.func.count()).select_from(applications)
        async with self._begin() as conn:
            return int((await conn.execute(statement)).scalar_one())


class Leadership:
    """Which node runs the requeuer and cleanup: the one holding a PostgreSQL
    session advisory lock. The lock lives and dies with its connection, so
    when the leader dies another node takes over at its next round. SQLite
    serves one node, which always leads."""

    LOCK_KEY = 0x6E746F71  # "ntoq"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._conn: AsyncConnection | None = None

    async def lead(self) -> bool:
        """True while this node holds the lock (taking it when it is free)."""
        if self.engine.dialect.name != "postgresql":
            return True
        try:
            if self._conn is None:
                return await self._try_take()
            await self._conn.execute(sa.text("SELECT 1"))  # the lock's connection still lives
            await self._conn.commit()
            return True
        except (*_UNAVAILABLE, sa.exc.DBAPIError) as error:
            log.warning("leadership not held: %s", error)
            await self.release()
            return False

    async def _try_take(self) -> bool:
        conn = await self.engine.connect()
        statement = sa.select(sa.func.pg_try_advisory_lock(self.LOCK_KEY))
        taken = bool((await conn.execute(statement)).scalar())
        await conn.commit()
        if taken:
            self._conn = conn
            log.info("this node now runs requeue and cleanup")
        else:
            await conn.close()
        return taken

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                await conn.invalidate()
                await conn.close()


def task_values(spec: NewTask, now: float) -> dict[str, Any]:
    """The row of a new pending task, due now (also used by ntorque.client's
    outbox, inside the caller's own transaction)."""
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
# more CPU than the round trip on the enqueue path.
INSERT_TASK = tasks.insert().returning(*tasks.c)


def _held_by(task: Task) -> sa.ColumnElement[bool]:
    """The attempt guard: the task is still in progress under this very attempt."""
    return sa.and_(
        tasks.c.id == task.id,
        tasks.c.retry_count == task.retry_count,
        tasks.c.status == Status.IN_PROGRESS.value,
    )


def _status_in(statuses: Sequence[Status]) -> sa.ColumnElement[bool]:
    """status IN ('a', 'b') with the values inline, not bound: SQLite uses a
    partial index only when the query repeats the index's condition with the
    same constants (bound, its due and cleanup queries scanned the table)."""
    return tasks.c.status.in_([sa.literal(s.value, literal_execute=True) for s in statuses])


def _task(row: sa.Row[Any]) -> Task:
    values = dict(row._mapping)
    values["status"] = Status(values["status"])
    values["headers"] = tuple((str(name), str(value)) for name, value in values["headers"])
    values["body"] = bytes(values["body"])
    return Task(**values)


def _is_disk_error(error: sa.exc.DBAPIError) -> bool:
    """SQLite's full disk or read-only file: the database cannot take writes."""
    text = str(error.orig).lower()
    return any(word in text for word in ("disk", "readonly", "read-only", "locked"))


__all__ = ["Store", "tables"]
