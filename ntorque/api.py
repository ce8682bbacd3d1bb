"""The JSON API: enqueue (POST /), task status, re-notify. Ends with `routes`.

Handlers receive their dependencies through `initialize`; every error is a
JSON body with a clear message, never a stack trace.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import tornado.web
from tornado.routing import URLSpec

from . import __version__, intake
from .auth import App, Authenticator
from .errors import PayloadTooLarge
from .handlers import BaseHandler, Guard
from .queue import Queue
from .targets import Targets
from .tasks import Task

log = logging.getLogger(__name__)

KEY_HEADERS = ("NTORQUE_API_KEY", "NTORQUE-API-KEY")


class ApiOptions:
    """What the handlers need to know of the settings."""

    def __init__(
        self,
        *,
        authenticate: bool,
        max_body_bytes: int,
        default_timeout_s: int,
        max_timeout_s: float,
        targets: Targets,
        guard: Guard | None = None,
    ) -> None:
        self.authenticate = authenticate
        self.max_body_bytes = max_body_bytes
        self.default_timeout_s = default_timeout_s
        self.max_timeout_s = max_timeout_s
        self.targets = targets
        self.guard = guard or Guard()


class JsonHandler(BaseHandler):
    queue: Queue
    authenticator: Authenticator
    api_options: ApiOptions
    app: App | None = None

    def initialize(self, queue: Queue, authenticator: Authenticator, options: ApiOptions) -> None:
        self.queue = queue
        self.authenticator = authenticator
        self.api_options = options
        self.guard = options.guard

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        self.enforce_https()

    async def authenticate(self) -> None:
        """Find the calling application; 401 without a valid, active key."""
        if not self.api_options.authenticate:
            return
        if wait := self.login_wait_s():
            error = f"too many failed authentications from this address: retry in {wait} s"
            self.send_json(429, {"status": 429, "error": error})
            raise tornado.web.Finish()
        key = next(
            (self.request.headers[h] for h in KEY_HEADERS if h in self.request.headers), None
        )
        self.app = await self.authenticator.app_for_key(key)
        if self.app is None:
            self.login_failed()
            raise tornado.web.HTTPError(401, "a valid NTORQUE_API_KEY header is required")

    async def owned_task(self, task_id: str) -> Task:
        """The task, if the caller may see it: others' tasks are 404, like missing ones."""
        task = await self.queue.get(int(task_id))
        if task is None or (self.app is not None and task.app_id != self.app.id):
            raise tornado.web.HTTPError(404, f"no task {task_id}")
        return task

    def send_json(self, status: int, data: dict[str, Any]) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))

    def write_error_message(self, status_code: int, message: str) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"status": status_code, "error": message}))


@tornado.web.stream_request_body
class RootHandler(JsonHandler):
    """GET / is a banner; POST /?url=... enqueues a task."""

    async def prepare(self) -> None:
        await super().prepare()
        self._chunks: list[bytes] = []
        self._size = 0
        if self.request.method != "POST" or self._finished:
            return
        await self.authenticate()
        declared = self.request.headers.get("Content-Length", "0")
        if declared.isdigit() and int(declared) > self.api_options.max_body_bytes:
            raise self._too_large()

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._size += len(chunk)
        if self._size > self.api_options.max_body_bytes:
            # A body without Content-Length: answer 413 here, since an
            # exception raised from data_received only drops the connection.
            self._chunks.clear()
            error = self._too_large()
            self.send_error(error.status, exc_info=(type(error), error, None))
            return
        self._chunks.append(chunk)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the body is larger than {self.api_options.max_body_bytes} bytes")

    def get(self) -> None:
        if "text/html" in self.request.headers.get("Accept", ""):  # a browser: the console
            self.redirect("/console")
            return
        self.send_json(200, {"message": "ntorque is installed and running", "version": __version__})

    async def post(self) -> None:
        if self._finished:  # the body was too large: answered already
            return
        query = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        app_id = self.app.id if self.app else None
        spec = intake.new_task(
            app_id=app_id,
            query=query,
            headers=self.request.headers,
            body=b"".join(self._chunks),
            default_timeout_s=self.api_options.default_timeout_s,
            max_timeout_s=self.api_options.max_timeout_s,
            policy=await self.api_options.targets.for_app(app_id),
        )
        task = await self.queue.enqueue(spec)
        self.set_header("Location", f"{self.request.protocol}://{self.request.host}/task/{task.id}")
        self.send_json(201, task.to_json())


class TaskHandler(JsonHandler):
    async def get(self, task_id: str) -> None:
        await self.authenticate()
        task = await self.owned_task(task_id)
        self.send_json(200, task.to_json())


class AttemptsHandler(JsonHandler):
    async def get(self, task_id: str) -> None:
        await self.authenticate()
        task = await self.owned_task(task_id)
        self.send_json(200, {"task_id": task.id, "attempts": await self.queue.attempts(task.id)})


class PushHandler(JsonHandler):
    async def post(self, task_id: str) -> None:
        await self.authenticate()
        task = await self.owned_task(task_id)
        await self.queue.notify(task)
        self.send_json(201, task.to_json())


class NotFoundHandler(JsonHandler):
    def prepare(self) -> None:  # type: ignore[override]
        raise tornado.web.HTTPError(404, "no such resource")


def routes(**dependencies: Any) -> list[URLSpec]:
    return [
        tornado.web.url(r"/", RootHandler, dependencies),
        tornado.web.url(r"/tasks?/(\d{1,18})", TaskHandler, dependencies),
        tornado.web.url(r"/tasks?/(\d{1,18})/push", PushHandler, dependencies),
        tornado.web.url(r"/tasks?/(\d{1,18})/attempts", AttemptsHandler, dependencies),
    ]
