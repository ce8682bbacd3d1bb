"""The schedules page's rows: a page of a namespace's schedules, each with its
rule in words, its next fire times and the outcomes of the last tasks it made.

A page is read at most once per REFRESH_S per (namespace, cursor) and shared
by every page and socket showing it, however many ask (see shared.py): two
statements, the schedules and one UNION ALL of their newest tasks. A pause
or resume on this node makes the namespace's next read fresh; other nodes'
changes and new ticks show at the next read. Nothing here writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..scheduler import Scheduler
from ..schedules import Schedule
from .shared import SharedReads

PAGE_SIZE = 50
NEXT_TICKS = 3  # fire times a row shows (of the JSON's five)
OUTCOMES = 5  # last tasks a row shows, newest first
# The fields of Schedule.to_json() a row shows; the task template's headers
# and body stay out (its url, method and queue say which task it makes).
ROW_FIELDS = ("id", "name", "cron", "description", "catch_up", "paused", "next_tick", "last_tick")

Row = dict[str, Any]
Shown = tuple[int, int | None]  # (namespace, the page's cursor: ids below it, None the newest)


class ScheduleBoard:
    def __init__(self, scheduler: Scheduler, clock: Callable[[], float] = time.time) -> None:
        self.scheduler = scheduler
        self._pages: SharedReads[Shown, dict[str, Any]] = SharedReads(self._read, clock)

    async def page(self, namespace: int, before: int | None = None) -> dict[str, Any]:
        """{"schedules": [rows, newest first], "older": the next page's cursor or None}."""
        return await self._pages.get((namespace, before))

    def stale(self, namespace: int) -> None:
        """A schedule of the namespace changed here: every page of it reads afresh."""
        self._pages.stale(lambda shown: shown[0] == namespace)

    async def _read(self, shown: Shown) -> dict[str, Any]:
        namespace, before = shown
        found = await self.scheduler.page(namespace, PAGE_SIZE + 1, before, last_tasks=OUTCOMES)
        listed, now = found[:PAGE_SIZE], self.scheduler.clock()
        older = listed[-1].id if len(found) > PAGE_SIZE else None
        return {"schedules": [row(schedule, now) for schedule in listed], "older": older}


def row(schedule: Schedule, now: float) -> Row:
    """A schedule's row: a projection of its one serialisation, to_json()."""
    data = schedule.to_json(now, detail=True)
    task = data["task"]
    return {name: data[name] for name in ROW_FIELDS} | {
        "next_ticks": data["next_ticks"][:NEXT_TICKS],
        "last_tasks": data["last_tasks"],
        "url": task["url"],
        "method": task["method"],
        "queue": task["queue"],
    }
