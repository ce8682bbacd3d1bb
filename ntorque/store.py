"""All SQL. Every state transition of a task is one guarded statement here, so
the database settles races, never Python locks. Nothing above this module
writes SQL; nothing here knows about HTTP or channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
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
        return (await self.insert_many([spec], now))[0]

    async def insert_many(self, specs: Sequence[NewTask], now: float) -> list[Task]:
        """Store pending tasks in one statement and one commit, in order."""
        rows = [task_values(spec, now) for spec in specs]
        async with self._begin() as conn:
            ids = (await conn.execute(INSERT_TASKS, rows)).scalars().all()
        return [_new_task(spec, task_id, now) for spec, task_id in zip(specs, ids, strict=True)]

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
        params = {
            "ids": list(ids),
            "now": now,
            "fresh_due": now + FRESH_TASK_CLOCK_SKEW_S,
            "max_retries": max_retries,
            "lease_from": now + lease_extra_s,
        }
        async with self._begin() as conn:
            statement = ACQUIRE[conn.dialect.name == "postgresql"]
            rows = (await conn.execute(statement, params)).all()
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
        return (await self.settle_many([Settlement(task, outcome, status, due)], now))[0]

    async def settle_many(self, batch: Sequence[Settlement], now: float) -> list[Task | None]:
        """settle() for several attempts in one transaction, in order."""
        async with self._begin() as conn:
            if conn.dialect.name == "postgresql":
                held = await _settle_postgresql(conn, batch, now)
            else:
                held = await _settle_one_by_one(conn, batch, now)
        return [_settled(item, now) if item.task.id in held else None for item in batch]

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

    async def create_app(
        self, name: str, key_hash: str, now: float, signing_secret: str | None = None
    ) -> dict[str, Any]:
        values = {
            "name": name, "key_hash": key_hash, "active": True, "created": now,
            "signing_secret": signing_secret,
        }  # fmt: skip
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

    async def target_policy(self, app_id: int) -> dict[str, Any] | None:
        """The application's own target policy ({"allow": [...], "deny": [...]}), if any."""
        statement = sa.select(applications.c.target_policy).where(applications.c.id == app_id)
        async with self._begin() as conn:
            policy = (await conn.execute(statement)).scalar()
        return dict(policy) if isinstance(policy, dict) else None

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

    async def replace_key_hash(self, old: str, new: str) -> bool:
        """Re-hash one key (a legacy plain hash becomes the keyed one)."""
        statement = applications.update().where(applications.c.key_hash == old).values(key_hash=new)
        async with self._begin() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def app_signing_secrets(self, app_id: int, make: Callable[[], str]) -> tuple[str, ...]:
        """The application's signing secrets, current first; an application
        without one (made by hand) gets make()'s, once."""
        current, previous = applications.c.signing_secret, applications.c.previous_signing_secret
        chosen = sa.select(current, previous).where(applications.c.id == app_id)
        unsigned = applications.update().where(applications.c.id == app_id, current.is_(None))
        async with self._begin() as conn:
            row = (await conn.execute(chosen)).first()
            if row is not None and row[0] is None:
                await conn.execute(unsigned.values(signing_secret=make()))
                row = (await conn.execute(chosen)).first()
        return tuple(secret for secret in (row or ()) if secret)

    async def rotate_signing_secret(self, name: str, new: str) -> bool:
        """The current secret becomes the previous one (both sign until
        finish_rotation) and `new` the current one, in one statement."""
        rotated = {"previous_signing_secret": applications.c.signing_secret, "signing_secret": new}
        return await self.update_app(name, **rotated)

    async def finish_rotation(self, name: str) -> bool:
        """Only the current secret signs from now on."""
        return await self.update_app(name, previous_signing_secret=None)

    # -- console -------------------------------------------------------------
    # Read by the web console; each query is bounded (an index range, a LIMIT
    # or a capped count) so pages stay fast with millions of tasks.

    async def app_by_id(self, app_id: int) -> dict[str, Any] | None:
        statement = applications.select().where(applications.c.id == app_id)
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
        return dict(row._mapping) if row else None

    async def console_unfinished(self, app_id: int | None, now: float, cap: int) -> dict[str, Any]:
        """Pending and in-progress counts, how many are due, the oldest due date.
        Counts come from the small partial index of unfinished tasks and stop
        at `cap` (then "capped" is true and they are lower bounds)."""
        scope = _scope(app_id)
        unfinished = sa.select(tasks.c.status).where(_status_in(UNFINISHED), *scope).limit(cap + 1)
        due = sa.select(tasks.c.id).where(_status_in(UNFINISHED), tasks.c.due <= now, *scope)
        oldest = sa.select(sa.func.min(tasks.c.due)).where(_status_in(UNFINISHED), *scope)
        by_status = unfinished.subquery()
        counted = sa.select(by_status.c.status, sa.func.count()).group_by(by_status.c.status)
        async with self._begin() as conn:
            counts = {str(status): int(n) for status, n in (await conn.execute(counted)).all()}
            due_now = await conn.scalar(_count(due.limit(cap + 1)))
            oldest_due = await conn.scalar(oldest)
        total = sum(counts.values())
        return {
            "pending": counts.get(Status.PENDING.value, 0),
            "in_progress": counts.get(Status.IN_PROGRESS.value, 0),
            "due_now": min(int(due_now or 0), cap),
            "oldest_due": oldest_due if oldest_due is not None and oldest_due <= now else None,
            "capped": total > cap or int(due_now or 0) > cap,
        }

    async def console_finished(
        self, app_id: int | None, since: float, bucket_s: float
    ) -> list[tuple[int, str, int]]:
        """(bucket number, status, count) of tasks finished since `since`: a range
        of the partial index ix_tasks_modified_finished, one bucket_s apart."""
        bucket = sa.cast(sa.func.floor(tasks.c.modified / bucket_s), sa.Integer).label("bucket")
        statement = (
            sa.select(bucket, tasks.c.status, sa.func.count())
            .where(_status_in(FINISHED), tasks.c.modified >= since, *_scope(app_id))
            .group_by(bucket, tasks.c.status)
        )
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [(int(b), str(status), int(n)) for b, status, n in rows]

    async def console_tasks(self, query: ConsoleQuery) -> list[Task]:
        """A page of tasks, newest first, without bodies. A status filter or a
        url search only looks at ids in [before - span, before), so one page
        never scans more than `span` rows; an id search is one lookup."""
        columns = [column for column in tasks.c if column.name not in ("body", "headers")]
        statement = sa.select(*columns).where(*_scope(query.app_id))
        if query.task_id is not None:
            statement = statement.where(tasks.c.id == query.task_id)
        if query.before is not None:
            statement = statement.where(tasks.c.id < query.before)
        if query.status or query.search:
            floor = (query.before or 0) - query.span
            statement = statement.where(tasks.c.id >= floor)
        if query.status:
            statement = statement.where(tasks.c.status == query.status)
        if query.search:
            statement = statement.where(tasks.c.url.icontains(query.search, autoescape=True))
        statement = statement.order_by(tasks.c.id.desc()).limit(query.limit)
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [_task_without_body(row) for row in rows]

    async def console_id_range(self, app_id: int | None) -> tuple[int, int]:
        """The lowest and highest task id the scope sees (0, 0 when none)."""
        statement = sa.select(sa.func.min(tasks.c.id), sa.func.max(tasks.c.id)).where(
            *_scope(app_id)
        )
        async with self._begin() as conn:
            low, high = (await conn.execute(statement)).one()
        return int(low or 0), int(high or 0)

    async def retry_now(self, task_id: int, now: float, max_retry_count: int) -> Task | None:
        """A failed or pending task becomes pending and due now; its attempt
        count drops to at most max_retry_count, so it gets one more attempt at
        least and attempt numbers keep going up. None if it is neither."""
        statement = (
            tasks.update()
            .where(tasks.c.id == task_id, _status_in((Status.FAILED, Status.PENDING)))
            .values(
                status=Status.PENDING.value,
                due=now,
                modified=now,
                retry_count=sa.func.least(tasks.c.retry_count, max_retry_count)
                if self.engine.dialect.name == "postgresql"
                else sa.func.min(tasks.c.retry_count, max_retry_count),
            )
            .returning(*tasks.c)
        )
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
        return _task(row) if row else None

    async def cancel(self, task_id: int, now: float, reason: str) -> Task | None:
        """A pending task is failed for good with `reason`; None if not pending."""
        statement = (
            tasks.update()
            .where(tasks.c.id == task_id, tasks.c.status == Status.PENDING.value)
            .values(status=Status.FAILED.value, modified=now, last_error=reason)
            .returning(*tasks.c)
        )
        async with self._begin() as conn:
            row = (await conn.execute(statement)).first()
        return _task(row) if row else None


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
# more CPU than the round trip on the enqueue path. Several rows go in one
# multi-row INSERT whose ids come back in the rows' order.
INSERT_TASKS = tasks.insert().returning(tasks.c.id, sort_by_parameter_order=True)


def _new_task(spec: NewTask, task_id: int, now: float) -> Task:
    return Task(
        id=task_id, app_id=spec.app_id, url=spec.url, method=spec.method,
        timeout_s=spec.timeout_s, body=spec.body, content_type=spec.content_type,
        charset=spec.charset, headers=spec.headers, status=Status.PENDING, retry_count=0,
        due=now, created=now, modified=now, last_status_code=None, last_error=None,
    )  # fmt: skip


def _status_in(statuses: Sequence[Status]) -> sa.ColumnElement[bool]:
    """status IN ('a', 'b') with the values inline, not bound: SQLite uses a
    partial index only when the query repeats the index's condition with the
    same constants (bound, its due and cleanup queries scanned the table)."""
    return tasks.c.status.in_([sa.literal(s.value, literal_execute=True) for s in statuses])


def _acquire(postgresql: bool) -> sa.Update:
    """The guarded lease, built once per dialect (see Store.acquire). On
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
            _status_in(UNFINISHED),
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


class Settlement(NamedTuple):
    """One attempt's result and the state it leaves its task in."""

    task: Task
    outcome: Outcome
    status: Status
    due: float


def _settled(item: Settlement, now: float) -> Task:
    return dataclasses.replace(
        item.task,
        status=item.status,
        due=item.due,
        modified=now,
        last_status_code=item.outcome.status_code,
        last_error=item.outcome.error,
    )


# PostgreSQL settles a whole batch in one statement and one round trip: the
# attempts go in and the guarded updates happen together, from arrays, so the
# statement text (and its prepared plan) is the same whatever the batch size.
SETTLE_POSTGRESQL = sa.text("""
WITH batch AS (
    SELECT * FROM unnest(
        CAST(:ids AS BIGINT[]), CAST(:numbers AS INTEGER[]), CAST(:statuses AS TEXT[]),
        CAST(:dues AS DOUBLE PRECISION[]), CAST(:codes AS INTEGER[]), CAST(:errors AS TEXT[]),
        CAST(:started AS DOUBLE PRECISION[]), CAST(:durations AS DOUBLE PRECISION[])
    ) AS b(id, number, status, due, code, error, started, duration_s)
), recorded AS (
    INSERT INTO attempts (task_id, number, started, duration_s, status_code, error)
    SELECT id, number, started, duration_s, code, error FROM batch
    WHERE EXISTS (SELECT 1 FROM tasks WHERE tasks.id = batch.id)
)
UPDATE tasks SET status = batch.status, due = batch.due, modified = :now,
    last_status_code = batch.code, last_error = batch.error
FROM batch
WHERE tasks.id = batch.id AND tasks.retry_count = batch.number
    AND tasks.status = 'in_progress'
RETURNING tasks.id
""")


async def _settle_postgresql(
    conn: AsyncConnection, batch: Sequence[Settlement], now: float
) -> set[int]:
    columns = {
        "ids": [item.task.id for item in batch],
        "numbers": [item.task.retry_count for item in batch],
        "statuses": [item.status.value for item in batch],
        "dues": [item.due for item in batch],
        "codes": [item.outcome.status_code for item in batch],
        "errors": [item.outcome.error for item in batch],
        "started": [item.outcome.started for item in batch],
        "durations": [item.outcome.duration_s for item in batch],
    }
    result = await conn.execute(SETTLE_POSTGRESQL, {**columns, "now": now})
    return set(result.scalars())


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
    """SQLite: no round trips to save, only the commit, which is shared."""
    held: set[int] = set()
    for item in batch:
        task, outcome = item.task, item.outcome
        attempt = {
            "task_id": task.id, "number": task.retry_count, "started": outcome.started,
            "duration_s": outcome.duration_s, "status_code": outcome.status_code,
            "error": outcome.error,
        }  # fmt: skip
        await conn.execute(RECORD_ATTEMPT, attempt)
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


def _held_by(task: Task) -> sa.ColumnElement[bool]:
    """The attempt guard: the task is still in progress under this very attempt."""
    return sa.and_(
        tasks.c.id == task.id,
        tasks.c.retry_count == task.retry_count,
        tasks.c.status == Status.IN_PROGRESS.value,
    )


def _task(row: sa.Row[Any]) -> Task:
    values = dict(row._mapping)
    values["status"] = Status(values["status"])
    values["headers"] = tuple((str(name), str(value)) for name, value in values["headers"])
    values["body"] = bytes(values["body"])
    return Task(**values)


class ConsoleQuery(NamedTuple):
    """What a console page lists: a scope (None = every application), filters, a cursor."""

    app_id: int | None
    status: str = ""
    search: str = ""
    task_id: int | None = None
    before: int | None = None
    span: int = 100_000
    limit: int = 50


def _scope(app_id: int | None) -> list[sa.ColumnElement[bool]]:
    return [] if app_id is None else [tasks.c.app_id == app_id]


def _count(statement: sa.Select[Any]) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(statement.subquery())


def _task_without_body(row: sa.Row[Any]) -> Task:
    """A listed task: body and headers are not read (they may be large)."""
    values = dict(row._mapping)
    values["status"] = Status(values["status"])
    return Task(body=b"", headers=(), **values)


def _is_disk_error(error: sa.exc.DBAPIError) -> bool:
    """SQLite's full disk or read-only file: the database cannot take writes."""
    text = str(error.orig).lower()
    return any(word in text for word in ("disk", "readonly", "read-only", "locked"))


__all__ = ["Store", "tables"]
