"""The statements `python -m bench listing` EXPLAINs: the ones ntorque's store
really sends, caught on their way to PostgreSQL.

For one set of filters the bench calls the store's listing (`page`, what
GET /tasks runs with limit + 1, and `ids`, a batch of a bulk cancel or
retry) on an engine of its own, and keeps the SQL and parameters
SQLAlchemy hands to asyncpg. Nothing is written out by hand: when the store
changes its statement, the bench EXPLAINs the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from ntorque.queue import BULK_BATCH
from ntorque.store.base import Database
from ntorque.store.engine import async_url
from ntorque.store.listing import Listing as StoreListing
from ntorque.tasks import Status, TaskFilter

FILTERS = ("status", "url_prefix", "created_after", "created_before")
KINDS = ("page", "ids")  # GET /tasks; a batch of POST /tasks/cancel or /tasks/retry


@dataclass(frozen=True)
class Listing:
    """One page of GET /tasks: a scope (None = an admin: every application), filters, a cursor."""

    app_id: int | None
    status: str | None = None
    url_prefix: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    cursor: int | None = None  # the last id of the previous page
    limit: int = 100

    def task_filter(self) -> TaskFilter:
        status = Status(self.status) if self.status is not None else None
        return TaskFilter(self.app_id, status, self.url_prefix, self.created_after,
                          self.created_before)  # fmt: skip


class Statements:
    """The store's listing on an engine of its own, its SQL caught as it is sent."""

    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(async_url(url), poolclass=sa.pool.NullPool)
        self.store = StoreListing(Database(self.engine))
        self.caught: list[tuple[str, list[Any]]] = []
        sa.event.listen(self.engine.sync_engine, "before_cursor_execute", self._catch)

    def _catch(self, _conn: Any, _cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
        self.caught.append((sql, list(parameters or ())))

    async def statement(self, kind: str, listing: Listing) -> tuple[str, list[Any]]:
        """The SQL (asyncpg's $n placeholders) and parameters the store sends."""
        self.caught.clear()
        if kind == "page":
            await self.store.page(listing.task_filter(), listing.limit + 1, listing.cursor)
        else:
            await self.store.ids(listing.task_filter(), BULK_BATCH, listing.cursor)
        selects = [caught for caught in self.caught if "FROM tasks" in caught[0]]
        if len(selects) != 1:
            raise RuntimeError(f"the store's {kind}() sent {len(selects)} statements on tasks")
        return selects[0]

    async def close(self) -> None:
        await self.engine.dispose()
