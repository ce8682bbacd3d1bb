"""The live web console: HTML pages and a websocket, in the API's process.

`make_console` builds its parts; `routes` ends the package like api.routes.
Templates and static files live at the top of the repository and ship inside
the package as ntorque.templates and ntorque.static (see setup.py).
"""

from __future__ import annotations

import importlib.resources
import time
from pathlib import Path
from typing import Any

import jinja2
import tornado.web
from tornado.routing import URLSpec

from ..auth import Authenticator
from ..events import Events
from ..handlers import Guard
from ..queue import Queue
from ..store.apps import AppStore
from ..store.console import ConsoleReads
from .board import QueueBoard
from .calls import CallRate
from .context import Console
from .hub import Hub
from .live import ConsoleSocket
from .pages import (
    BulkActionHandler,
    DashboardHandler,
    LoginHandler,
    LogoutHandler,
    QueueActionHandler,
    StaticHandler,
    TaskActionHandler,
    TaskPageHandler,
)
from .schedule_board import ScheduleBoard
from .schedule_pages import ScheduleActionHandler, SchedulesPageHandler
from .stats import Stats

__all__ = ["Console", "Hub", "make_console", "routes"]

STATIC_PREFIX = "/console/static/"


def asset_dir(package: str) -> Path:
    return Path(str(importlib.resources.files(package)))


def duration(seconds: float) -> str:
    """A wait as a person reads it (console.js's age() says the same)."""
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600):,} h"


def make_console(
    *,
    queue: Queue,
    reads: ConsoleReads,
    apps: AppStore,
    events: Events,
    authenticator: Authenticator,
    authenticate: bool,
    cookie_secret: str,
    guard: Guard | None = None,
) -> Console:
    stats = Stats(reads)
    queues = QueueBoard(queue.flow, CallRate())
    static = str(asset_dir("ntorque.static"))
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(asset_dir("ntorque.templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    templates.filters["number"] = lambda n: f"{n:,}" if isinstance(n, int) else "-"
    templates.filters["when"] = lambda iso: (iso or "")[:19].replace("T", " ")
    templates.filters["clock"] = lambda epoch: time.strftime("%H:%M:%S", time.gmtime(epoch))
    templates.filters["duration"] = duration
    # A finished task is due no more: its due date is its last lease, shown as "-".
    templates.tests["unfinished"] = lambda status: status in ("pending", "in_progress")
    settings = {"static_path": static, "static_url_prefix": STATIC_PREFIX}
    return Console(
        queue=queue,
        reads=reads,
        apps=apps,
        authenticator=authenticator,
        stats=stats,
        hub=Hub(events, stats, queues, ScheduleBoard(queue.scheduler)),
        templates=templates,
        static_url=lambda path: StaticHandler.make_static_url(settings, path),
        authenticate=authenticate,
        cookie_secret=cookie_secret,
        guard=guard or Guard(),
    )


def routes(console: Console) -> list[URLSpec]:
    deps: dict[str, Any] = {"console": console}
    return [
        tornado.web.url(r"/console/?", DashboardHandler, deps),
        tornado.web.url(r"/console/task/(\d{1,18})", TaskPageHandler, deps),
        tornado.web.url(r"/console/task/(\d{1,18})/(retry|cancel)", TaskActionHandler, deps),
        tornado.web.url(r"/console/tasks/(cancel|retry)", BulkActionHandler, deps),
        tornado.web.url(
            r"/console/queues/([A-Za-z0-9_.-]{1,64})/(pause|resume)", QueueActionHandler, deps
        ),
        tornado.web.url(r"/console/schedules", SchedulesPageHandler, deps),
        tornado.web.url(
            r"/console/schedules/(\d{1,18})/(pause|resume)", ScheduleActionHandler, deps
        ),
        tornado.web.url(r"/console/login", LoginHandler, deps),
        tornado.web.url(r"/console/logout", LogoutHandler, deps),
        tornado.web.url(r"/console/socket", ConsoleSocket, deps),
        tornado.web.url(
            STATIC_PREFIX + r"(.*)", StaticHandler, {"path": str(asset_dir("ntorque.static"))}
        ),
    ]
