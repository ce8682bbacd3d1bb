"""The JSON API: enqueue (one task, or a batch), read, list, cancel, retry
and re-notify tasks; named queues and their limits; recurring schedules;
the health probes; the OpenAPI document. `routes` lists them; ../../README.md shows each with curl.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from tornado.routing import URLSpec

from ..health import Readiness
from .base import ApiOptions, JsonHandler, NotFoundHandler
from .enqueue import RootHandler
from .health import HealthHandler, ReadyHandler
from .listing import BulkHandler, TasksHandler
from .metrics import MetricsHandler
from .openapi import OpenApiHandler
from .queues import QueueActionHandler, QueueHandler, QueuesHandler
from .schedules import ScheduleActionHandler, ScheduleHandler, SchedulesHandler
from .task import ActionHandler, AttemptsHandler, PushHandler, TaskHandler

__all__ = ["ApiOptions", "JsonHandler", "NotFoundHandler", "routes"]

TASK = r"/tasks?/(\d{1,18})"  # the seed's singular /task/<id> stays as an alias
QUEUE = r"/queues/([^/]+)"  # a bad name is a 400 that says why, not a 404
SCHEDULE = r"/schedules/(\d{1,18})"


def routes(readiness: Readiness | None = None, **dependencies: Any) -> list[URLSpec]:
    probes = {"readiness": readiness or Readiness({})}
    return [
        tornado.web.url(r"/healthz", HealthHandler),
        tornado.web.url(r"/readyz", ReadyHandler, probes),
        tornado.web.url(r"/", RootHandler, dependencies),
        tornado.web.url(r"/tasks", TasksHandler, dependencies),
        tornado.web.url(r"/tasks/(cancel|retry)", BulkHandler, dependencies),
        tornado.web.url(TASK, TaskHandler, dependencies),
        tornado.web.url(TASK + "/push", PushHandler, dependencies),
        tornado.web.url(TASK + "/attempts", AttemptsHandler, dependencies),
        tornado.web.url(TASK + r"/(cancel|retry)", ActionHandler, dependencies),
        tornado.web.url(r"/queues", QueuesHandler, dependencies),
        tornado.web.url(QUEUE, QueueHandler, dependencies),
        tornado.web.url(QUEUE + r"/(pause|resume)", QueueActionHandler, dependencies),
        tornado.web.url(r"/schedules", SchedulesHandler, dependencies),
        tornado.web.url(SCHEDULE, ScheduleHandler, dependencies),
        tornado.web.url(SCHEDULE + r"/(pause|resume)", ScheduleActionHandler, dependencies),
        tornado.web.url(r"/metrics", MetricsHandler, dependencies),
        tornado.web.url(r"/openapi\.json", OpenApiHandler, dependencies),
    ]
