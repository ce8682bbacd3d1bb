"""The console's websocket: one per open page, fed by the Hub.

The page names what it shows in the socket's query: `?task=<id>` on a task
page, `?page=schedules&before=<id>` on the schedules page, the dashboard's own
query (`?status= &queue= &q= &match= &before=`) otherwise. The
socket answers what that page would: 403 without the login cookie or from
another origin (tornado's check), 404 for a task the viewer may not see, 400
for a query the dashboard refuses.

Once subscribed it sends the counts and the state as of its subscription (the
dashboard's queue rows and page of tasks, or the task and its attempts; the
schedules page, its rows alone); changes that come
meanwhile wait until that state is sent, so nothing older follows it. Task
events carry no attempts: a task page's socket re-reads its task and attempts
at each change of its task, one read at a time (changes during a read make
one more). It leaves the hub on close and on a failed write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import tornado.web
import tornado.websocket

from ..events import Summary, summary
from ..handlers import log_uncaught
from .context import Console
from .hub import DASHBOARD, SCHEDULES, TASK
from .viewer import Viewer
from .views import (
    Dashboard,
    dashboard_query,
    listing,
    number,
    schedules_before,
    task_view,
    visible_task,
)

log = logging.getLogger(__name__)

PING_S = 10.0  # find vanished peers (a dropped network) within about this

Message = dict[str, Any]


class ConsoleSocket(tornado.websocket.WebSocketHandler):
    """GET /console/socket?task=<id>, ?page=schedules&before=<id>, or ?status=
    &queue= &q= &match= &before= ."""

    console: Console
    viewer: Viewer | None = None
    page: str = DASHBOARD
    scope: int | None = None
    task_id: int | None = None
    namespace: int = 0
    schedules_before: int | None = None

    def initialize(self, console: Console) -> None:
        self.console = console
        self.listing_query: Dashboard | None = None
        self._held: list[Message] | None = None  # while the first state is read
        self._stale = False
        self._reading: asyncio.Future[None] | None = None

    @property
    def ping_interval(self) -> float:
        return PING_S

    async def get(self, *args: Any, **kwargs: Any) -> None:
        self.viewer = await self.console.viewer(self)
        if self.viewer is None:
            self.refuse(403, "log in first")
            return
        self.scope = self.viewer.scope
        self.namespace = self.viewer.namespace
        try:
            await self._watch(self.viewer)
        except tornado.web.HTTPError as error:
            self.refuse(error.status_code, error.log_message or "")
            return
        await super().get(*args, **kwargs)

    def refuse(self, status: int, reason: str) -> None:
        self.set_status(status)
        self.finish(reason)

    async def _watch(self, viewer: Viewer) -> None:
        """What the page shows: its task (the viewer's to see), its page of
        schedules, or its query."""
        if self.get_query_argument("page", None) == SCHEDULES:
            self.page, self.schedules_before = SCHEDULES, schedules_before(self)
            return
        asked = self.get_query_argument("task", None)
        if asked is None:
            self.listing_query = dashboard_query(self, viewer)
            return
        task_id = number(asked)
        if task_id is None:
            raise tornado.web.HTTPError(400, "task must be a task id")
        if await visible_task(self.console.queue, viewer, task_id) is None:
            raise tornado.web.HTTPError(404, f"no task {task_id}")
        self.page, self.task_id = TASK, task_id

    async def open(self, *args: str, **kwargs: str) -> None:
        self._held = []  # changes from now on wait until the state below is sent
        self.console.hub.join(self)
        try:
            first = await self._counts() + await self._state()
        except Exception:
            log.exception("console socket could not read its state task=%s", self.task_id)
            self._held = None
            self.close(1011, "try again")
            return
        held, self._held = self._held, None
        for message in first + held:
            self.send(message)

    async def _counts(self) -> list[Message]:
        if self.page == SCHEDULES:
            return []  # the schedules page shows none
        return [{"type": "stats", "stats": await self.console.stats.get(self.scope)}]

    async def _state(self) -> list[Message]:
        if self.page == SCHEDULES:
            shows = await self.console.hub.schedules.page(self.namespace, self.schedules_before)
            return [{"type": "schedules", **shows}]
        if self.task_id is not None:
            return [view] if (view := await self._task_view()) else []
        assert self.listing_query is not None
        rows = await self.console.hub.board.rows(self.namespace)
        shown = await listing(self.console.reads, self.console.queue, self.listing_query)
        return [
            {"type": "queues", "queues": rows},
            {"type": "page", "tasks": [summary(task) for task in shown.tasks]},
        ]

    async def _task_view(self) -> Message | None:
        assert self.task_id is not None
        task = await self.console.queue.get(self.task_id)  # its application never changes
        return await task_view(self.console.queue, task) if task is not None else None

    def show(self, changes: list[Summary]) -> None:
        """The hub's changes this page may see: a dashboard's as they are, a task
        page's as its task and attempts read again."""
        if self.task_id is None:
            self.send({"type": "tasks", "tasks": changes})
            return
        self._stale = True
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._reread())

    async def _reread(self) -> None:
        try:
            while self._stale:
                self._stale = False
                if view := await self._task_view():
                    self.send(view)
        except Exception:
            log.exception("console socket could not read task %s", self.task_id)
        finally:
            self._reading = None

    def send(self, message: Message) -> None:
        if self._held is not None:
            self._held.append(message)
            return
        try:
            self.write_message(json.dumps(message)).add_done_callback(self._written)
        except tornado.websocket.WebSocketClosedError:
            self.console.hub.leave(self)

    def _written(self, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is not None:  # the peer went away
            self.console.hub.leave(self)

    def on_message(self, message: str | bytes) -> None:
        pass  # the page only listens

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        log_uncaught(self, typ, value, tb)  # the page's query (a url search) stays out

    def on_close(self) -> None:
        self.console.hub.leave(self)
        if self._reading is not None:
            self._reading.cancel()
