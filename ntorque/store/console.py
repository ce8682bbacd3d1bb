"""The console's read models: counts, throughput, pages of tasks.

Each query is bounded (an index range, a LIMIT or a capped count) so pages
stay fast with millions of tasks. Nothing here writes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa

from ..tables import tasks
from ..tasks import FINISHED, UNFINISHED, Status, Task
from .base import Database, listed_task, status_in


class ConsoleQuery(NamedTuple):
    """What a console page lists: a scope (None = every application), filters, a cursor."""

    app_id: int | None
    status: str = ""
    search: str = ""
    task_id: int | None = None
    before: int | None = None
    span: int = 100_000
    limit: int = 50
    queue: str = ""  # a named queue of the scope's applications

    @property
    def filtered(self) -> bool:
        """A filter that may match few of the ids: looked for `span` ids at a time."""
        return bool(self.status or self.search or self.queue)


class ConsoleReads:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def unfinished(self, app_id: int | None, now: float, cap: int) -> dict[str, Any]:
        """Pending and in-progress counts, how many are due, the oldest due date.
        Counts come from the small partial index of unfinished tasks and stop
        at `cap` (then "capped" is true and they are lower bounds)."""
        scope = _scope(app_id)
        unfinished = sa.select(tasks.c.status).where(status_in(UNFINISHED), *scope).limit(cap + 1)
        due = sa.select(tasks.c.id).where(status_in(UNFINISHED), tasks.c.due <= now, *scope)
        oldest = sa.select(sa.func.min(tasks.c.due)).where(status_in(UNFINISHED), *scope)
        by_status = unfinished.subquery()
        counted = sa.select(by_status.c.status, sa.func.count()).group_by(by_status.c.status)
        async with self.db.begin() as conn:
            counts = {str(status): int(n) for status, n in (await conn.execute(counted)).all()}
            due_now = int(await conn.scalar(_count(due.limit(cap + 1))) or 0)
            oldest_due = await conn.scalar(oldest)
        return {
            "pending": counts.get(Status.PENDING.value, 0),
            "in_progress": counts.get(Status.IN_PROGRESS.value, 0),
            "due_now": min(due_now, cap),
            "oldest_due": oldest_due if oldest_due is not None and oldest_due <= now else None,
            "capped": sum(counts.values()) > cap or due_now > cap,
        }

    async def finished(
        self, app_id: int | None, since: float, bucket_s: float
    ) -> list[tuple[int, str, int]]:
        """(bucket number, status, count) of tasks finished since `since`: a range
        of the partial index ix_tasks_modified_finished, one bucket_s apart."""
        bucket = sa.cast(sa.func.floor(tasks.c.modified / bucket_s), sa.Integer).label("bucket")
        statement = (
            sa.select(bucket, tasks.c.status, sa.func.count())
            .where(status_in(FINISHED), tasks.c.modified >= since, *_scope(app_id))
            .group_by(bucket, tasks.c.status)
        )
        async with self.db.begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [(int(b), str(status), int(n)) for b, status, n in rows]

    async def tasks(self, query: ConsoleQuery) -> list[Task]:
        """A page of tasks, newest first, without bodies. A status or queue
        filter or a url search only looks at ids in [before - span, before), so one page
        never scans more than `span` rows; an id search is one lookup."""
        columns = [column for column in tasks.c if column.name not in ("body", "headers")]
        statement = sa.select(*columns).where(*_scope(query.app_id))
        if query.task_id is not None:
            statement = statement.where(tasks.c.id == query.task_id)
        if query.before is not None:
            statement = statement.where(tasks.c.id < query.before)
        if query.filtered:
            statement = statement.where(tasks.c.id >= (query.before or 0) - query.span)
        if query.status:
            statement = statement.where(tasks.c.status == query.status)
        if query.queue:
            statement = statement.where(tasks.c.queue == query.queue)
        if query.search:
            statement = statement.where(tasks.c.url.icontains(query.search, autoescape=True))
        statement = statement.order_by(tasks.c.id.desc()).limit(query.limit)
        async with self.db.begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [listed_task(row) for row in rows]

    async def id_range(self, app_id: int | None) -> tuple[int, int]:
        """The lowest and highest task id the scope sees (0, 0 when none)."""
        statement = sa.select(sa.func.min(tasks.c.id), sa.func.max(tasks.c.id))
        async with self.db.begin() as conn:
            low, high = (await conn.execute(statement.where(*_scope(app_id)))).one()
        return int(low or 0), int(high or 0)


def _scope(app_id: int | None) -> list[sa.ColumnElement[bool]]:
    return [] if app_id is None else [tasks.c.app_id == app_id]


def _count(statement: sa.Select[Any]) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(statement.subquery())
