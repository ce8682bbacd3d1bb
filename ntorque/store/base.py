"""What every part of the store shares: transactions that turn an unreachable
database into StorageUnavailable, and the row and filter helpers of tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import StorageUnavailable
from ..tables import tasks
from ..tasks import Status, Task
from .driver import Connection, lent

UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, OSError, asyncio.TimeoutError)


class Database:
    """One engine, and transactions on it."""

    def __init__(
        self,
        engine: AsyncEngine,
        default_timeout_s: int = 60,
        unavailable: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.unavailable = unavailable  # told of each StorageUnavailable raised (metrics)
        # The same pool, its connections in autocommit while lent out (see single).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # A new task's timeout when neither it nor its queue gives one.
        self.default_timeout_s = default_timeout_s

    @property
    def postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; an unreachable database becomes StorageUnavailable."""
        with unavailable_as_error(self.unavailable):
            async with self.engine.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def single(self) -> AsyncIterator[AsyncConnection]:
        """A connection for ONE statement that commits by itself (a read that
        runs often: the requeuer's, the ticker's, a task's): on PostgreSQL it
        runs in autocommit, so it costs one round trip instead of three (no
        BEGIN, no COMMIT). SQLite has no round trips to save: there it is a
        transaction like begin()'s. Two statements on it would be two
        transactions: use begin() for those."""
        if not self.postgresql:
            async with self.begin() as conn:
                yield conn
            return
        with unavailable_as_error(self.unavailable):
            async with self._autocommit.connect() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def driver(self) -> AsyncIterator[Connection]:
        """For one hot statement written for the driver (see driver.py): on
        PostgreSQL the pooled connection's asyncpg connection, where the
        statement commits by itself (one round trip, no SQLAlchemy layer); on
        SQLite a transaction like begin()'s."""
        if not self.postgresql:
            async with self.begin() as conn:
                yield conn
            return
        with unavailable_as_error(self.unavailable):
            async with lent(self.engine) as conn:
                yield conn


@contextlib.contextmanager
def unavailable_as_error(seen: Callable[[], None]) -> Iterator[None]:
    """An unreachable database (or SQLite's full disk) becomes
    StorageUnavailable; `seen` is told of each (the driver's included)."""
    try:
        yield
    except StorageUnavailable:  # the driver's (see driver.lent)
        seen()
        raise
    except UNAVAILABLE as error:
        seen()
        raise StorageUnavailable() from error
    except sa.exc.DBAPIError as error:
        if error.connection_invalidated or _is_disk_error(error):
            seen()
            raise StorageUnavailable() from error
        raise


def _is_disk_error(error: sa.exc.DBAPIError) -> bool:
    """SQLite's full disk or read-only file: the database cannot take writes."""
    text = str(error.orig).lower()
    return any(word in text for word in ("disk", "readonly", "read-only", "locked"))


def status_in(statuses: Sequence[Status]) -> sa.ColumnElement[bool]:
    """status IN ('a', 'b') with the values inline, not bound: SQLite uses a
    partial index only when the query repeats the index's condition with the
    same constants (bound, its due and cleanup queries scanned the table)."""
    return tasks.c.status.in_([sa.literal(s.value, literal_execute=True) for s in statuses])


def within_allowance(max_retries: int | sa.BindParameter[Any]) -> sa.ColumnElement[bool]:
    """The task has attempts left: its own retries (or the server's
    max_retries), counted from its last manual retry."""
    allowed = sa.func.coalesce(tasks.c.retries, max_retries)
    return tasks.c.retry_count < tasks.c.attempts_before + allowed


def task_from_row(row: sa.Row[Any]) -> Task:
    return task_from_values(dict(row._mapping))


def task_from_values(values: dict[str, Any]) -> Task:
    """A task from its column values (a listed task: body_size too, body empty)."""
    values["status"] = Status(values["status"])
    values["headers"] = tuple((str(name), str(value)) for name, value in values["headers"])
    values["body"] = bytes(values["body"])
    return Task(**values)


def listed_task(row: sa.Row[Any]) -> Task:
    """A listed task: body and headers are not read (they may be large)."""
    values = dict(row._mapping)
    values["status"] = Status(values["status"])
    return Task(body=b"", headers=(), **values)


def row_dict(row: sa.Row[Any] | None) -> dict[str, Any] | None:
    return dict(row._mapping) if row is not None else None
