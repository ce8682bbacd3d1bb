"""Recurring schedules: their rows (settings, task template, next tick),
which of them are due, and the last tasks each made. The ticks' tasks are
written by ticks.py, in the transaction that moves a schedule on.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from ..errors import Conflict
from ..schedules import Rule, Schedule, Settings, Template
from ..tables import applications, schedules, tasks
from ..tasks import iso
from .base import Database

MAX_SCHEDULES = 10_000  # per application: schedules are settings, not data
LAST_TASKS = 10  # the tasks a schedule's detail lists


class ScheduleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, app_id: int, settings: Settings, template: Template, now: float
    ) -> Schedule | None:
        """Store a new schedule, its first tick the rule's first after now;
        None when the application has MAX_SCHEDULES already."""
        values = {
            **_settings_values(settings), "app_id": app_id, "template": template_record(template),
            "next_tick": settings.rule.after(now), "last_tick": None,
            "created": now, "modified": now,
        }  # fmt: skip
        async with self.db.begin() as conn:
            count = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(schedules)
                .where(schedules.c.app_id == app_id)
            )
            if (count or 0) >= MAX_SCHEDULES:
                return None
            with _unique_name(settings.name):
                row = (
                    await conn.execute(schedules.insert().values(values).returning(*schedules.c))
                ).one()
        return schedule_from_row(row)

    async def get(self, app_id: int, schedule_id: int, last_tasks: bool = False) -> Schedule | None:
        async with self.db.begin() as conn:
            row = (await conn.execute(_owned(app_id, schedule_id))).first()
            if row is None:
                return None
            made = await _last_tasks(conn, schedule_id) if last_tasks else []
        return schedule_from_row(row, made)

    async def page(
        self,
        app_id: int,
        limit: int,
        before_id: int | None = None,
        name: str | None = None,
        last_tasks: int = 0,
    ) -> list[Schedule]:
        """The application's schedules (the one of that name), newest first;
        with last_tasks, each with that many of the newest tasks it made (the
        console's page)."""
        statement = schedules.select().where(schedules.c.app_id == app_id)
        if name is not None:
            statement = statement.where(schedules.c.name == name)
        if before_id is not None:
            statement = statement.where(schedules.c.id < before_id)
        statement = statement.order_by(schedules.c.id.desc()).limit(limit)
        async with self.db.begin() as conn:
            rows = (await conn.execute(statement)).all()
            made = await _last_tasks_of(conn, [row.id for row in rows], last_tasks)
        return [schedule_from_row(row, made.get(row.id)) for row in rows]

    async def update(
        self,
        app_id: int,
        schedule_id: int,
        settings: Settings,
        template: Template,
        next_tick: float | None,
        now: float,
    ) -> Schedule | None:
        """Replace a schedule's settings, template and next tick."""
        values = {
            **_settings_values(settings), "template": template_record(template),
            "next_tick": next_tick, "modified": now,
        }  # fmt: skip
        with _unique_name(settings.name):
            return await self._change(app_id, schedule_id, values)

    async def set_paused(
        self, app_id: int, schedule_id: int, paused: bool, now: float
    ) -> Schedule | None:
        """Pause or resume; the next tick stays, so a resume makes the ticks
        missed meanwhile as the schedule's catch_up says."""
        return await self._change(app_id, schedule_id, {"paused": paused, "modified": now})

    async def _change(
        self, app_id: int, schedule_id: int, values: dict[str, Any]
    ) -> Schedule | None:
        statement = (
            schedules.update()
            .where(schedules.c.app_id == app_id, schedules.c.id == schedule_id)
            .values(values)
            .returning(*schedules.c)
        )
        async with self.db.begin() as conn:
            row = (await conn.execute(statement)).first()
        return schedule_from_row(row) if row is not None else None

    async def delete(self, app_id: int, schedule_id: int) -> bool:
        """Forget a schedule (the tasks it made stay); False when there is none."""
        statement = schedules.delete().where(
            schedules.c.app_id == app_id, schedules.c.id == schedule_id
        )
        async with self.db.begin() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def due(self, now: float, limit: int) -> list[Schedule]:
        """Active schedules whose next tick has come, soonest first (every
        application's: the ticker fires them all)."""
        async with self.db.single() as conn:
            rows = (await conn.execute(DUE, {"now": now, "limit": limit})).all()
        return [schedule_from_row(row) for row in rows]

    async def earliest(self) -> float | None:
        """The soonest next tick of an active schedule."""
        async with self.db.single() as conn:
            return await conn.scalar(EARLIEST)  # type: ignore[no-any-return]


@contextlib.contextmanager
def _unique_name(name: str | None) -> Iterator[None]:
    """A name another schedule of the application has is a Conflict."""
    try:
        yield
    except sa.exc.IntegrityError:
        raise Conflict(f"a schedule named {name!r} exists already") from None


def _active() -> sa.ColumnElement[bool]:
    """Not paused, with a tick to come, and its application (if any) active:
    a deactivated application's schedules make nothing until it is active
    again (then its catch_up says what)."""
    owner_active = sa.exists().where(applications.c.id == schedules.c.app_id, applications.c.active)
    return sa.and_(
        sa.not_(schedules.c.paused),
        schedules.c.next_tick.is_not(None),
        sa.or_(schedules.c.app_id == 0, owner_active),
    )


def _owned(app_id: int, schedule_id: int) -> sa.Select[Any]:
    return schedules.select().where(schedules.c.app_id == app_id, schedules.c.id == schedule_id)


LAST_TASK_COLUMNS = (
    tasks.c.id, tasks.c.status, tasks.c.schedule_tick, tasks.c.retry_count,
    tasks.c.last_status_code, tasks.c.created, tasks.c.modified,
)  # fmt: skip


def _newest(schedule_id: int, count: int) -> sa.Select[Any]:
    """A schedule's newest tasks: one range of the (schedule_id, schedule_tick) index."""
    return (
        sa.select(tasks.c.schedule_id, *LAST_TASK_COLUMNS)
        .where(tasks.c.schedule_id == schedule_id)
        .order_by(tasks.c.schedule_tick.desc())
        .limit(count)
    )


async def _last_tasks(conn: Any, schedule_id: int) -> list[dict[str, Any]]:
    """The newest tasks the schedule made, as its detail shows them."""
    return [_made(row) for row in (await conn.execute(_newest(schedule_id, LAST_TASKS))).all()]


async def _last_tasks_of(
    conn: Any, schedule_ids: list[int], count: int
) -> dict[int, list[dict[str, Any]]]:
    """The newest tasks of each schedule, in one statement: a UNION ALL of
    one bounded index range per schedule (a window over every task of the
    schedules would read all they ever made). For a page of schedules: SQLite
    takes at most 500 parts."""
    if not schedule_ids or count < 1:
        return {}
    ranges = [_newest(schedule_id, count).subquery().select() for schedule_id in schedule_ids]
    rows = (await conn.execute(sa.union_all(*ranges))).all()
    made: dict[int, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda row: (row.schedule_id, -row.schedule_tick)):
        made.setdefault(row.schedule_id, []).append(_made(row))
    return made


def _made(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "tick": iso(row.schedule_tick),
        "retry_count": row.retry_count,
        "last_status_code": row.last_status_code,
        "created": iso(row.created),
        "modified": iso(row.modified),
    }


def _settings_values(settings: Settings) -> dict[str, Any]:
    rule = settings.rule
    return {
        "name": settings.name, "cron": rule.cron, "timezone": rule.timezone,
        "every_s": rule.every_s, "anchor": rule.anchor, "catch_up": settings.catch_up,
        "paused": settings.paused,
    }  # fmt: skip


def template_record(template: Template) -> dict[str, Any]:
    """The template as its JSON column holds it (the body as base64)."""
    return {
        "url": template.url, "method": template.method, "timeout_s": template.timeout_s,
        "body": base64.b64encode(template.body).decode(), "content_type": template.content_type,
        "charset": template.charset, "headers": [list(pair) for pair in template.headers],
        "queue": template.queue, "retries": template.retries, "backoff": template.backoff,
        "callback_url": template.callback_url,
    }  # fmt: skip


def template_from_record(record: dict[str, Any]) -> Template:
    values = dict(record)
    values["body"] = base64.b64decode(values["body"])
    values["headers"] = tuple((str(name), str(value)) for name, value in values["headers"])
    return Template(**values)


def schedule_from_row(row: Any, last_tasks: list[dict[str, Any]] | None = None) -> Schedule:
    # SQLite's RETURNING hands a whole float back as an integer: every_s 2.0 came back 2.
    every_s = None if row.every_s is None else float(row.every_s)
    rule = Rule(cron=row.cron, timezone=row.timezone, every_s=every_s, anchor=float(row.anchor))
    return Schedule(
        id=row.id,
        app_id=row.app_id,
        settings=Settings(rule, row.name, row.catch_up, row.paused),
        template=template_from_record(row.template),
        next_tick=row.next_tick,
        last_tick=row.last_tick,
        created=row.created,
        modified=row.modified,
        last_tasks=last_tasks or [],
    )


# The ticker's statements, built once: every worker runs them every few seconds.
DUE = (
    schedules.select()
    .where(_active(), schedules.c.next_tick <= sa.bindparam("now", type_=sa.Float))
    .order_by(schedules.c.next_tick)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
EARLIEST = sa.select(sa.func.min(schedules.c.next_tick)).where(_active())
