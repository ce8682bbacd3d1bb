"""Named queues: their settings, their live figures, and which of their
tasks may start now (what a wake-up notifies). The limits themselves are
enforced by the acquire (see admission).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..queues import RECENT_S, Figures, NamedQueue, QueueSettings
from ..tables import queues, tasks
from ..tasks import DEFAULT_QUEUE, FINISHED, UNFINISHED, Status
from .admission import NO_LIMIT, concurrency_room, limited_queue, of_queue, tokens_now
from .base import Database, status_in, within_allowance

MAX_QUEUES = 1000  # listed at once: queues are settings, not data


class Ready(NamedTuple):
    """What a wake-up may notify: ids, the (due, id) of the last, and whether
    the queue has no limit (then the next batch may follow at once)."""

    ids: list[int]
    last: tuple[float, int] | None
    unlimited: bool


class QueueStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, app_id: int, name: str, now: float) -> NamedQueue | None:
        """The queue, if it is configured, has tasks, or is the default queue."""
        found = await self.page(app_id, now, names=[name])
        return found[0] if found else None

    async def page(
        self, app_id: int, now: float, names: list[str] | None = None
    ) -> list[NamedQueue]:
        """The application's queues by name: configured ones, those with
        unfinished or recently finished tasks, and the default queue."""
        async with self.db.begin() as conn:
            rows = await _settings_rows(conn, app_id, names)
            live = await _live_figures(conn, app_id, now, names)
            recent = await _recent_figures(conn, app_id, now, names)
        known = set(rows) | set(live) | set(recent)
        if names is None or DEFAULT_QUEUE in names:
            known.add(DEFAULT_QUEUE)
        return [
            _named(app_id, name, rows.get(name), live.get(name, {}), recent.get(name, {}))
            for name in sorted(known)[:MAX_QUEUES]
        ]

    async def put(self, app_id: int, name: str, settings: QueueSettings, now: float) -> None:
        """Store the queue's settings (made if need be). A new or changed
        rate limit starts with a full bucket."""
        values = _settings_values(settings)
        dialect = postgresql if self.db.postgresql else sqlite
        statement = dialect.insert(queues).values(
            app_id=app_id, name=name, created=now, modified=now,
            tokens=float(settings.burst or 0), tokens_at=now, **values,
        )  # fmt: skip
        refill = sa.case(
            (
                statement.excluded.rate_per_s.is_distinct_from(queues.c.rate_per_s),
                statement.excluded.tokens,
            ),
            else_=queues.c.tokens,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[queues.c.app_id, queues.c.name],
            set_={**values, "modified": now, "tokens": refill},
        )
        async with self.db.begin() as conn:
            await conn.execute(statement)

    async def set_paused(self, app_id: int, name: str, paused: bool, now: float) -> None:
        """Pause or resume, keeping every other setting (the queue is made
        if it had no row)."""
        dialect = postgresql if self.db.postgresql else sqlite
        statement = (
            dialect.insert(queues)
            .values(app_id=app_id, name=name, paused=paused, created=now, modified=now)
            .on_conflict_do_update(
                index_elements=[queues.c.app_id, queues.c.name],
                set_={"paused": paused, "modified": now},
            )
        )
        async with self.db.begin() as conn:
            await conn.execute(statement)

    async def delete(self, app_id: int, name: str) -> bool | None:
        """Forget an empty queue's row: True; False when unfinished tasks
        name it; None when it has no row."""
        busy = (
            sa.select(tasks.c.id)
            .where(of_queue(app_id, name), status_in(UNFINISHED))
            .limit(1)
            .exists()
        )
        mine = sa.and_(queues.c.app_id == app_id, queues.c.name == name)
        async with self.db.begin() as conn:
            deleted = await conn.execute(queues.delete().where(mine, ~busy))
            if deleted.rowcount:
                return True
            row = (await conn.execute(sa.select(queues.c.name).where(mine))).first()
        return None if row is None else False

    async def ready(
        self,
        app_id: int,
        name: str,
        now: float,
        max_retries: int,
        at_most: int,
        after: tuple[float, int] | None = None,
    ) -> Ready:
        """The queue's due tasks that its limits would let start now, oldest
        first (after `after`, a (due, id) of the last batch): what a wake-up
        notifies; the acquire still decides. A rate-limited queue always gets
        one: its bucket may be a hair short of a token when the timer fires."""
        async with self.db.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(queues).where(queues.c.app_id == app_id, queues.c.name == name)
                )
            ).first()
            room = await _room(conn, row, now) if row is not None else NO_LIMIT
            if room <= 0:
                return Ready([], None, unlimited=False)
            statement = (
                sa.select(tasks.c.id, tasks.c.due)
                .where(
                    of_queue(app_id, name),
                    status_in(UNFINISHED),
                    tasks.c.due <= now,
                    within_allowance(max_retries),
                    *_after(after),
                )
                .order_by(tasks.c.due, tasks.c.id)
                .limit(min(room, at_most))
            )
            rows = (await conn.execute(statement)).all()
        last = (rows[-1].due, rows[-1].id) if rows else None
        return Ready([row.id for row in rows], last, unlimited=room >= NO_LIMIT)

    async def limited_with_due(self, now: float) -> list[tuple[int, str]]:
        """Running limited queues with due tasks: the requeuer wakes them
        (after a crash, their leases run out with no settle to wake them)."""
        async with self.db.single() as conn:
            rows = (await conn.execute(LIMITED_WITH_DUE, {"now": now})).all()
        return [(row.app_id, row.name) for row in rows]


# Built once: the requeuer runs it every few seconds.
LIMITED_WITH_DUE = sa.select(queues.c.app_id, queues.c.name).where(
    limited_queue(),
    ~queues.c.paused,
    sa.select(tasks.c.id)
    .where(
        of_queue(queues.c.app_id, queues.c.name),
        status_in(UNFINISHED),
        tasks.c.due <= sa.bindparam("now", type_=sa.Float),
    )
    .exists(),
)


async def _room(conn: AsyncConnection, row: sa.Row[Any], now: float) -> int:
    if row.paused:
        return 0
    room = await concurrency_room(conn, row, now)
    if row.rate_per_s is not None and room > 0:
        room = min(room, max(1, math.floor(tokens_now(row, now))))
    return room


def _after(last: tuple[float, int] | None) -> list[sa.ColumnElement[bool]]:
    if last is None:
        return []
    due, task_id = last
    return [sa.or_(tasks.c.due > due, sa.and_(tasks.c.due == due, tasks.c.id > task_id))]


def _scope(app_id: int) -> sa.ColumnElement[bool]:
    return tasks.c.app_id.is_(None) if app_id == 0 else tasks.c.app_id == app_id


def _named_in(names: list[str] | None) -> list[sa.ColumnElement[bool]]:
    return [] if names is None else [tasks.c.queue.in_(names)]


async def _settings_rows(
    conn: AsyncConnection, app_id: int, names: list[str] | None
) -> dict[str, sa.Row[Any]]:
    statement = sa.select(queues).where(queues.c.app_id == app_id)
    if names is not None:
        statement = statement.where(queues.c.name.in_(names))
    return {row.name: row for row in (await conn.execute(statement)).all()}


async def _live_figures(
    conn: AsyncConnection, app_id: int, now: float, names: list[str] | None
) -> dict[str, dict[str, Any]]:
    pending = tasks.c.status == Status.PENDING.value
    leased = tasks.c.status == Status.IN_PROGRESS.value
    due = tasks.c.due <= now
    statement = (
        sa.select(
            tasks.c.queue,
            sa.func.count().filter(pending).label("pending"),
            sa.func.count().filter(due).label("due_now"),
            sa.func.count().filter(leased, ~due).label("in_flight"),
            sa.func.min(tasks.c.due).filter(due).label("oldest_due"),
        )
        .where(_scope(app_id), status_in(UNFINISHED), *_named_in(names))
        .group_by(tasks.c.queue)
    )
    rows = (await conn.execute(statement)).all()
    return {row.queue: dict(row._mapping) for row in rows}


async def _recent_figures(
    conn: AsyncConnection, app_id: int, now: float, names: list[str] | None
) -> dict[str, dict[str, int]]:
    statement = (
        sa.select(tasks.c.queue, tasks.c.status, sa.func.count().label("tasks"))
        .where(
            status_in(FINISHED),
            tasks.c.modified >= now - RECENT_S,
            _scope(app_id),
            *_named_in(names),
        )
        .group_by(tasks.c.queue, tasks.c.status)
    )
    figures: dict[str, dict[str, int]] = {}
    for row in (await conn.execute(statement)).all():
        figures.setdefault(row.queue, {})[row.status] = int(row.tasks)
    return figures


def _settings_values(settings: QueueSettings) -> dict[str, Any]:
    return {
        "max_concurrency": settings.max_concurrency,
        "rate_per_s": settings.rate_per_s,
        "burst": settings.burst,
        "paused": settings.paused,
        "retries": settings.retries,
        "backoff": settings.backoff,
        "timeout_s": settings.timeout_s,
    }


def _settings_of(row: sa.Row[Any]) -> QueueSettings:
    return QueueSettings(
        max_concurrency=row.max_concurrency,
        rate_per_s=row.rate_per_s,
        burst=row.burst,
        paused=bool(row.paused),
        retries=row.retries,
        backoff=row.backoff,
        timeout_s=row.timeout_s,
    )


def _named(
    app_id: int,
    name: str,
    row: sa.Row[Any] | None,
    live: dict[str, Any],
    recent: dict[str, int],
) -> NamedQueue:
    settings = QueueSettings() if row is None else _settings_of(row)
    figures = Figures(
        pending=int(live.get("pending", 0)),
        due_now=int(live.get("due_now", 0)),
        in_flight=int(live.get("in_flight", 0)),
        completed_recently=recent.get(Status.COMPLETED.value, 0),
        failed_recently=recent.get(Status.FAILED.value, 0),
        oldest_due=live.get("oldest_due"),
    )
    return NamedQueue(
        app_id=app_id, name=name, settings=settings, figures=figures,
        configured=row is not None,
        created=None if row is None else row.created,
        modified=None if row is None else row.modified,
    )  # fmt: skip
