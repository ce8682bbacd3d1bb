"""All SQL, one module per concern: tasks (and their settling), applications
and shared secrets, the console's reads, leadership, the client's outbox, and
the engine with its migrations. Nothing outside this package writes SQL;
nothing inside it knows about HTTP or channels.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .apps import AppStore
from .base import Database
from .console import ConsoleQuery, ConsoleReads
from .leadership import Leadership
from .metrics import MetricsReads, QueueFigures
from .settle import Settlement
from .tasks import TaskStore

__all__ = [
    "AppStore", "ConsoleQuery", "ConsoleReads", "Leadership", "MetricsReads", "QueueFigures",
    "Settlement", "Store", "TaskStore",
]  # fmt: skip


class Store:
    """The store's parts over one engine; each user takes the part it needs."""

    def __init__(
        self,
        engine: AsyncEngine,
        default_timeout_s: int = 60,
        unavailable: Callable[[], None] = lambda: None,
    ) -> None:
        db = Database(engine, default_timeout_s, unavailable)
        self.engine = engine
        self._db = db
        self.tasks = TaskStore(db)
        self.queues = self.tasks.queues  # the same one: the acquire reads its rows
        self.schedules = self.tasks.schedules
        self.apps = AppStore(db)
        self.console = ConsoleReads(db)
        self.metrics = MetricsReads(db)

    async def ping(self) -> None:
        """One trivial statement (one round trip on PostgreSQL): the readiness
        check. Raises StorageUnavailable when the database does not answer."""
        async with self._db.single() as conn:
            await conn.execute(sa.text("SELECT 1"))
