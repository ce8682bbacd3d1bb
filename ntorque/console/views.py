"""What a console page shows, read for its render and read again by its socket
as of the socket's subscription: the dashboard's page of tasks, one task and
its attempts. Only tasks the viewer may see, like the pages.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tornado.web

from ..events import Summary, summary
from ..queue import Queue
from ..store.console import ConsoleQuery, ConsoleReads
from ..tasks import Status, Task
from .viewer import Viewer

PAGE_SIZE = 50
SEARCH_SPAN = 100_000  # a filter or url search looks at this many ids per page
MAX_SEARCH = 200
MAX_ID_DIGITS = 18


class Listing(NamedTuple):
    query: ConsoleQuery  # with its `before` fixed, as the page shows it
    tasks: list[Task]
    older: int | None  # the next page's cursor


def dashboard_query(request: tornado.web.RequestHandler, viewer: Viewer) -> ConsoleQuery:
    """The dashboard's ?status= &q= &before= (a bad status is a 400)."""

    def arg(name: str) -> str:
        return request.get_query_argument(name, "") or ""

    status = arg("status")
    if status and status not in {s.value for s in Status}:
        raise tornado.web.HTTPError(400, f"unknown status {status[:20]!r}")
    search = arg("q").strip()[:MAX_SEARCH]
    task_id = number(search)
    return ConsoleQuery(
        app_id=viewer.scope,
        status=status,
        search="" if task_id is not None else search,
        task_id=task_id,
        before=number(arg("before")),
        span=SEARCH_SPAN,
        limit=PAGE_SIZE,
    )


def number(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= MAX_ID_DIGITS else None


async def listing(reads: ConsoleReads, query: ConsoleQuery) -> Listing:
    """A page of the dashboard: a filter's first page looks below the newest id."""
    low, high = await reads.id_range(query.app_id)
    if (query.status or query.search) and query.before is None:
        query = query._replace(before=high + 1)
    found = await reads.tasks(query)
    return Listing(query, found, _older(query, found, low))


def _older(query: ConsoleQuery, found: list[Task], low: int) -> int | None:
    """The cursor of the next page, or None at the oldest task."""
    if query.task_id is not None:
        return None
    if len(found) == query.limit:
        return found[-1].id
    if (query.status or query.search) and query.before is not None:
        floor = query.before - query.span
        return floor if floor > low else None
    return None


async def visible_task(queue: Queue, viewer: Viewer, task_id: int) -> Task | None:
    """The task if the viewer may see it; None for a missing one and anyone else's."""
    task = await queue.get(task_id)
    return task if task is not None and viewer.may_see(task) else None


async def task_view(queue: Queue, task: Task) -> dict[str, Any]:
    """A task page's live state: the task's row and every attempt (a handful:
    the retry limit, plus one per "Retry now")."""
    row: Summary = summary(task)
    return {"type": "task", "task": row, "attempts": await queue.attempts(task.id)}
