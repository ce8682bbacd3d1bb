"""PostgreSQL's hot statements through asyncpg itself.

Enqueue, acquire and settle run a few times per task. Through SQLAlchemy's
asyncio layer a one-statement call cost about 170 us of CPU; on the pooled
connection's own asyncpg connection about 100 us (measured: 5,000 calls of
one prepared statement on a loopback PostgreSQL, CPU of the caller). So those
statements are written for the driver ($1, $2 ...) and sent on it; SQLAlchemy
still lends the connection (its pool, its invalidation of a broken one).

Outside a transaction asyncpg's statement commits by itself: one round trip.
Inside one of SQLAlchemy's transactions the same text goes through
SQLAlchemy (`fetch` below), so it joins that transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import StorageUnavailable

# The connection is gone, the server is going away, or the connection is unusable.
CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash, cannot connect now
    asyncpg.exceptions.InternalClientError,  # the connection is in a state it should not be
    OSError,
    asyncio.TimeoutError,
)
# The server answers but takes no writes.
NO_WRITES = (
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.InsufficientResourcesError,  # disk full, out of memory, too many connections
)

# SQLAlchemy's (in a transaction) or a lent asyncpg connection.
Connection: TypeAlias = AsyncConnection | asyncpg.Connection


@contextlib.asynccontextmanager
async def lent(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection's asyncpg connection, outside any transaction; a
    database that cannot be reached or take writes becomes StorageUnavailable.

    After any error the connection is dropped, not handed back: asyncpg may
    still be reading the failed statement's last messages, and the next
    statement on it would fail with "another operation is in progress" (seen
    when a database turned read-only: a settle failed that way and was lost
    for its lease). Errors are rare on this path; a new connection is cheap.
    """
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        try:
            yield raw.driver_connection
        except BaseException as error:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                await conn.invalidate()
            if isinstance(error, (*CONNECTION_LOST, *NO_WRITES)):
                raise StorageUnavailable() from error
            raise


async def fetch(conn: Connection, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
    """The rows of one driver-level statement, on a lent connection or in a
    SQLAlchemy transaction; read by position."""
    if isinstance(conn, AsyncConnection):
        return list((await conn.exec_driver_sql(sql, tuple(args))).all())
    return list(await conn.fetch(sql, *args))
