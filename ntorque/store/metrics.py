"""The one read behind /metrics' gauges: unfinished tasks by queue and
status, how many are due, and the oldest due date. One statement over the
partial index of unfinished tasks; finished tasks are never counted (there
may be millions until cleanup: their flow is what the counters show).
"""

from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa

from ..tables import tasks
from ..tasks import UNFINISHED, Status
from .base import Database, status_in


class QueueFigures(NamedTuple):
    """One (queue, status) group of unfinished tasks."""

    queue: str
    status: Status
    tasks: int
    due: int  # of them, due now (or, in progress, past their lease)
    oldest_due: float | None  # the earliest due date among those due


class MetricsReads:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def unfinished(self, now: float) -> list[QueueFigures]:
        """Every application's queues of one name together: queue names, not
        applications, are the metrics' labels."""
        is_due = tasks.c.due <= now
        statement = (
            sa.select(
                tasks.c.queue,
                tasks.c.status,
                sa.func.count(),
                sa.func.sum(sa.case((is_due, 1), else_=0)),
                sa.func.min(sa.case((is_due, tasks.c.due), else_=None)),
            )
            .where(status_in(UNFINISHED))
            .group_by(tasks.c.queue, tasks.c.status)
        )
        async with self.db.begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [
            QueueFigures(str(queue), Status(status), int(n), int(due or 0), oldest)
            for queue, status, n, due, oldest in rows
        ]
