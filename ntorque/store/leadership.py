"""Which node runs the requeuer and cleanup: the one holding a PostgreSQL
session advisory lock. The lock lives and dies with its connection, so when
the leader dies another node takes over at its next round. SQLite serves one
node, which always leads.
"""

from __future__ import annotations

import contextlib
import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .base import UNAVAILABLE

log = logging.getLogger(__name__)


class Leadership:
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
            return True
        except (*UNAVAILABLE, sa.exc.DBAPIError) as error:
            log.warning("leadership not held: %s", error)
            await self.release()
            return False

    async def _try_take(self) -> bool:
        conn = await self.engine.connect()
        # Autocommit: the lock is the session's, so no transaction is needed,
        # and each round's check is one round trip (no BEGIN, no COMMIT).
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        statement = sa.select(sa.func.pg_try_advisory_lock(self.LOCK_KEY))
        taken = bool((await conn.execute(statement)).scalar())
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
