"""Listing tasks by the API's filters, newest first, by keyset (never
OFFSET). Every filter has an index of its own, scoped to an application and
not (see tables.py); bulk actions walk the same selection in batches.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..tables import tasks
from ..tasks import Task, TaskFilter
from .base import Database, task_from_values

# Everything but the body, which may be large: its size instead.
LISTED = [column for column in tasks.c if column.name != "body"]
BODY_SIZE = sa.func.length(tasks.c.body).label("body_size")


class Listing:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def page(self, selection: TaskFilter, limit: int, before_id: int | None) -> list[Task]:
        """Up to limit tasks, newest first, with ids below before_id."""
        statement = (
            sa.select(*LISTED, BODY_SIZE)
            .where(*self.conditions(selection, before_id))
            .order_by(tasks.c.id.desc())
            .limit(limit)
        )
        async with self.db.begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [_listed(row) for row in rows]

    async def ids(self, selection: TaskFilter, limit: int, before_id: int | None) -> list[int]:
        """The ids of page(), for a bulk action's next batch."""
        statement = (
            sa.select(tasks.c.id)
            .where(*self.conditions(selection, before_id))
            .order_by(tasks.c.id.desc())
            .limit(limit)
        )
        async with self.db.begin() as conn:
            return list((await conn.execute(statement)).scalars())

    def conditions(
        self, selection: TaskFilter, before_id: int | None
    ) -> list[sa.ColumnElement[bool]]:
        where: list[sa.ColumnElement[bool]] = []
        if selection.app_id is not None:
            where.append(tasks.c.app_id == selection.app_id)
        if before_id is not None:
            where.append(tasks.c.id < before_id)
        if selection.status is not None:
            where.append(tasks.c.status == selection.status.value)
        if selection.queue is not None:
            where.append(tasks.c.queue == selection.queue)
        if selection.schedule_id is not None:
            where.append(tasks.c.schedule_id == selection.schedule_id)
        if selection.url_prefix:
            where.extend(self._prefixed(selection.url_prefix))
        if selection.created_after is not None:
            where.append(tasks.c.created >= selection.created_after)
        if selection.created_before is not None:
            where.append(tasks.c.created < selection.created_before)
        return where

    def _prefixed(self, prefix: str) -> list[sa.ColumnElement[bool]]:
        """url starts with prefix, as a range an index serves: [prefix,
        after_prefix(prefix)). PostgreSQL's pattern operators compare code
        points whatever the collation, as the text_pattern_ops index orders
        them; SQLite compares bytes of UTF-8, which is the same order."""
        upper = after_prefix(prefix)
        url = tasks.c.url
        postgresql = self.db.postgresql
        where: list[sa.ColumnElement[bool]] = [
            url.op("~>=~")(prefix) if postgresql else url >= prefix
        ]
        if upper is not None:  # None: every url from the prefix on
            where.append(url.op("~<~")(upper) if postgresql else url < upper)
        return where


def after_prefix(prefix: str) -> str | None:
    """The least text after every text that starts with prefix: its last
    character that is not the last code point, plus one (over the
    surrogates, which no text holds: a bound holding one failed to encode),
    the rest dropped; None when every character is U+10FFFF."""
    for end in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[end]) + 1
        if code <= LAST_CODE_POINT:
            if SURROGATES[0] <= code <= SURROGATES[1]:
                code = SURROGATES[1] + 1
            return prefix[:end] + chr(code)
    return None


LAST_CODE_POINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)


def _listed(row: Any) -> Task:
    return task_from_values({**row._mapping, "body": b""})
