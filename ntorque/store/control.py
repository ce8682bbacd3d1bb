"""Cancel and retry, of one task or of many in bounded batches: each a
guarded statement, so a task that changed state meanwhile is simply not
matched. A cancelled task's callback is made in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from ..tables import tasks
from ..tasks import RETRIABLE, UNFINISHED, Status, Task
from . import callbacks
from .base import Database, status_in, task_from_row


class Control:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def cancel(self, ids: Sequence[int], now: float) -> tuple[list[Task], list[Task]]:
        """Pending or in-progress tasks among ids become cancelled for good (a
        call in flight still finishes and is recorded); the cancelled tasks,
        and the callbacks made for them."""
        statement = (
            tasks.update()
            .where(tasks.c.id.in_(ids), status_in(UNFINISHED))
            .values(status=Status.CANCELLED.value, modified=now)
            .returning(*tasks.c)
        )
        async with self.db.begin() as conn:
            cancelled = [task_from_row(row) for row in (await conn.execute(statement)).all()]
            made = await callbacks.add(conn, cancelled, now)
        return made.ended, made.callbacks

    async def retry(self, ids: Sequence[int], now: float) -> list[Task]:
        """Failed or cancelled tasks among ids are pending and due now, with a
        fresh allowance of attempts; their history stays and attempt numbers
        go on. A callback will be made again when they end again."""
        statement = (
            tasks.update()
            .where(tasks.c.id.in_(ids), status_in(RETRIABLE))
            .values(
                status=Status.PENDING.value,
                due=now,
                modified=now,
                attempts_before=tasks.c.retry_count,
                callback_task_id=sa.null(),
            )
            .returning(*tasks.c)
        )
        async with self.db.begin() as conn:
            return [task_from_row(row) for row in (await conn.execute(statement)).all()]
