"""Idempotent enqueue: an Idempotency-Key names one task per application for
a while. The keys' primary key settles concurrent repeats, across processes:
of racing inserts, one commits; the others roll back and find its task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import KeyReused
from ..tables import idempotency_keys as keys
from ..tables import tasks
from ..tasks import Keyed, NewTask, Task
from .base import Database, task_from_row
from .rows import insert_tasks

RACES = 3  # a batch whose keys another request took meanwhile is tried again


class _Raced(Exception):
    """Another transaction inserted one of the keys first."""


class Idempotency:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(
        self,
        specs: Sequence[NewTask],
        keyed: Sequence[Keyed | None],
        scope: int,
        expires: float,
        now: float,
    ) -> list[tuple[Task, bool]]:
        """Store the tasks, all or nothing, in order: (task, replayed). A spec
        whose key names a task already answers that task and stores nothing;
        a key that names a task made from another request raises KeyReused."""
        for _ in range(RACES - 1):
            try:
                return await self._insert_once(specs, keyed, scope, expires, now)
            except _Raced:
                continue
        return await self._insert_once(specs, keyed, scope, expires, now)

    async def _insert_once(
        self,
        specs: Sequence[NewTask],
        keyed: Sequence[Keyed | None],
        scope: int,
        expires: float,
        now: float,
    ) -> list[tuple[Task, bool]]:
        names = [each.key for each in keyed if each is not None]
        async with self.db.begin() as conn:
            known = await _known(conn, scope, names, now)
            results: list[tuple[Task, bool] | None] = [None] * len(specs)
            for index, each in enumerate(keyed):
                if each is not None and each.key in known:
                    fingerprint, task = known[each.key]
                    if fingerprint != each.fingerprint:
                        raise KeyReused(index)
                    results[index] = (task, True)
            fresh = [index for index, result in enumerate(results) if result is None]
            fresh_specs = [specs[index] for index in fresh]
            inserted = await insert_tasks(conn, fresh_specs, now, self.db.default_timeout_s)
            made: list[dict[str, Any]] = []
            for index, task in zip(fresh, inserted, strict=True):
                results[index] = (task, False)
                each = keyed[index]
                if each is not None:
                    made.append(
                        {"app_id": scope, "key": each.key, "task_id": task.id,
                         "fingerprint": each.fingerprint, "expires": expires}
                    )  # fmt: skip
            if made and len(await self._claim(conn, made)) < len(made):
                raise _Raced()
        return [result for result in results if result is not None]

    async def _claim(self, conn: AsyncConnection, made: list[dict[str, Any]]) -> list[str]:
        """Insert the keys, skipping (not failing on) any another transaction
        holds: it waits for that one to end, then finds the key taken."""
        dialect = postgresql if self.db.postgresql else sqlite
        statement = dialect.insert(keys).values(made).on_conflict_do_nothing().returning(keys.c.key)
        return list((await conn.execute(statement)).scalars())

    async def forget_expired(self, now: float) -> int:
        """Delete the keys whose window has passed."""
        async with self.db.begin() as conn:
            result = await conn.execute(keys.delete().where(keys.c.expires < now))
        return int(result.rowcount or 0)


async def _known(
    conn: AsyncConnection, scope: int, names: list[str], now: float
) -> dict[str, tuple[str, Task]]:
    """The live keys among names: key -> (fingerprint, its task). Expired keys,
    and keys whose task was cleaned up, are deleted: free again."""
    if not names:
        return {}
    mine = sa.and_(keys.c.app_id == scope, keys.c.key.in_(names))
    rows = (await conn.execute(sa.select(keys).where(mine))).all()
    live = {row.key: row for row in rows if row.expires >= now}
    found = {}
    if live:
        statement = tasks.select().where(tasks.c.id.in_([row.task_id for row in live.values()]))
        found = {row.id: task_from_row(row) for row in (await conn.execute(statement)).all()}
    known = {
        key: (row.fingerprint, found[row.task_id])
        for key, row in live.items()
        if row.task_id in found
    }
    stale = [row.key for row in rows if row.key not in known]
    if stale:
        await conn.execute(keys.delete().where(keys.c.app_id == scope, keys.c.key.in_(stale)))
    return known
