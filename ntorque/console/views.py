"""What a console page shows, read for its render and read again by its socket
as of the socket's subscription: the dashboard's page of tasks, one task and
its attempts. Only tasks the viewer may see, like the pages.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tornado.web

from ..events import Summary, summary
from ..queue import Queue
from ..queues import QUEUE_NAME
from ..store.console import ConsoleQuery, ConsoleReads
from ..tasks import Status, Task, TaskFilter
from .viewer import Viewer

PAGE_SIZE = 50
SEARCH_SPAN = 100_000  # a filter or url search looks at this many ids per page
MAX_SEARCH = 200
MAX_ID_DIGITS = 18
# What a task page shows besides a live row: its policy and its callbacks
# (callback_task_id appears when the task ends).
TASK_PAGE_FIELDS = ("retries", "backoff", "callback_url", "callback_task_id", "callback_of")


class Dashboard(NamedTuple):
    """What the dashboard shows: the store's query, and whether its url search
    is "starts with" (`match=prefix`) rather than "contains"."""

    query: ConsoleQuery
    prefix: bool = False

    def selection(self) -> TaskFilter | None:
        """The view's filter exactly as a bulk action selects (every page of
        it, not only the one shown); None when the view is not filtered, or
        filtered in a way a TaskFilter cannot say (a "contains" search, an id)."""
        query = self.query
        if query.task_id is not None or (query.search and not self.prefix):
            return None
        if not query.filtered:
            return None
        status = Status(query.status) if query.status else None
        return TaskFilter(
            app_id=query.app_id,
            status=status,
            url_prefix=query.search or None,
            queue=query.queue or None,
        )


class Listing(NamedTuple):
    query: ConsoleQuery  # with its `before` fixed, as the page shows it
    tasks: list[Task]
    older: int | None  # the next page's cursor


def dashboard_query(request: tornado.web.RequestHandler, viewer: Viewer) -> Dashboard:
    """The dashboard's ?status= &queue= &q= &match= &before= (a bad status or
    queue name is a 400)."""

    def arg(name: str) -> str:
        return request.get_query_argument(name, "") or ""

    status = arg("status")
    if status and status not in {s.value for s in Status}:
        raise tornado.web.HTTPError(400, f"unknown status {status[:20]!r}")
    queue = arg("queue")
    if queue and not QUEUE_NAME.fullmatch(queue):
        raise tornado.web.HTTPError(400, f"no queue can be named {queue[:70]!r}")
    search = arg("q").strip()[:MAX_SEARCH]
    task_id = number(search)
    query = ConsoleQuery(
        app_id=viewer.scope,
        status=status,
        search="" if task_id is not None else search,
        task_id=task_id,
        before=number(arg("before")),
        span=SEARCH_SPAN,
        limit=PAGE_SIZE,
        queue=queue,
    )
    return Dashboard(query, prefix=arg("match") == "prefix" and bool(query.search))


def number(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= MAX_ID_DIGITS else None


async def listing(reads: ConsoleReads, queue: Queue, shown: Dashboard) -> Listing:
    """A page of the dashboard. A url prefix is the queue's listing (the
    selection a bulk action walks, served by an index); otherwise a filter's
    first page looks below the newest id, SEARCH_SPAN ids at a time."""
    query = shown.query
    if shown.prefix:
        selection = shown.selection()
        assert selection is not None
        found = await queue.listing(selection, query.limit, query.before)
        older = found[-1].id if len(found) == query.limit else None
        return Listing(query, found, older)
    low, high = await reads.id_range(query.app_id)
    if query.filtered and query.before is None:
        query = query._replace(before=high + 1)
    found = await reads.tasks(query)
    return Listing(query, found, _older(query, found, low))


def _older(query: ConsoleQuery, found: list[Task], low: int) -> int | None:
    """The cursor of the next page, or None at the oldest task."""
    if query.task_id is not None:
        return None
    if len(found) == query.limit:
        return found[-1].id
    if query.filtered and query.before is not None:
        floor = query.before - query.span
        return floor if floor > low else None
    return None


def schedules_before(request: tornado.web.RequestHandler) -> int | None:
    """The schedules page's ?before= cursor (its page's ids are below it)."""
    return number(request.get_query_argument("before", "") or "")


async def visible_task(queue: Queue, viewer: Viewer, task_id: int) -> Task | None:
    """The task if the viewer may see it; None for a missing one and anyone else's."""
    task = await queue.get(task_id)
    return task if task is not None and viewer.may_see(task) else None


async def task_view(queue: Queue, task: Task) -> dict[str, Any]:
    """A task page's live state: the task's row and every attempt (a handful:
    the retry limit, plus one per "Retry now")."""
    data = task.to_json()
    row: Summary = summary(task) | {name: data[name] for name in TASK_PAGE_FIELDS}
    return {"type": "task", "task": row, "attempts": await queue.attempts(task.id)}
