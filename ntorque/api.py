"""The JSON API: enqueue (POST /), task status, re-notify. Ends with `routes`.

Handlers receive their dependencies through `initialize`; every error is a
JSON body with a clear message, never a stack trace.
"""

from __future__ import annotations

import http.client
import json
import logging
from typing import Any

import tornado.web
from tornado.routing import URLSpec

from . import __version__, tasks
from .auth import App, Authenticator
from .errors import InvalidRequest, NtorqueError, PayloadTooLarge, StorageUnavailable
from .queue import Queue
from .ratelimit import FailureLimiter
from .targets import Targets
from .tasks import Task
from .transport import apply_hsts

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
        enable_hsts: bool = False,
        hsts_protocol_header: str = "",
        targets: Targets | None = None,
        limiter: FailureLimiter | None = None,
    ) -> None:
        self.authenticate = authenticate
        self.max_body_bytes = max_body_bytes
        self.default_timeout_s = default_timeout_s
        self.max_timeout_s = max_timeout_s
        self.enable_hsts = enable_hsts
        self.hsts_protocol_header = hsts_protocol_header
        self.targets = targets
        self.limiter = limiter


class JsonHandler(tornado.web.RequestHandler):
    queue: Queue
    authenticator: Authenticator
    api_options: ApiOptions
    app: App | None = None

    def initialize(self, queue: Queue, authenticator: Authenticator, options: ApiOptions) -> None:
        self.queue = queue
        self.authenticator = authenticator
        self.api_options = options

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        if self.api_options.enable_hsts:
            apply_hsts(self, self.api_options.hsts_protocol_header)

    async def authenticate(self) -> None:
        """Find the calling application; 401 without a valid, active key."""
        if not self.api_options.authenticate:
            return
        limiter, address = self.api_options.limiter, self.request.remote_ip or ""
        if limiter and (wait := limiter.retry_after(address)):
            self.set_header("Retry-After", str(wait))
            error = f"too many failed authentications from this address: retry in {wait} s"
            self.send_json(429, {"status": 429, "error": error})
            raise tornado.web.Finish()
        key = next(
            (self.request.headers[h] for h in KEY_HEADERS if h in self.request.headers), None
        )
        self.app = await self.authenticator.app_for_key(key)
        if self.app is None:
            if limiter:
                limiter.failed(address)
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

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, StorageUnavailable):
            self.set_header("Retry-After", "5")
        message = error_message(status_code, error)
        self.finish(json.dumps({"status": status_code, "error": message}))

    def _handle_request_exception(self, error: BaseException) -> None:
        if isinstance(error, (InvalidRequest, StorageUnavailable)):
            self.send_error(error.status, exc_info=(type(error), error, error.__traceback__))
            if isinstance(error, StorageUnavailable):
                log.warning(
                    "%s %s answered 503: %s",
                    self.request.method,
                    self.request.path,
                    error.__cause__,
                )
            return
        super()._handle_request_exception(error)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        quiet_log_exception(self, typ, value, tb)


def quiet_log_exception(handler: tornado.web.RequestHandler, typ: Any, value: Any, tb: Any) -> None:
    """Log unexpected errors; an HTTPError is an expected answer, not an event."""
    if not isinstance(value, tornado.web.HTTPError):
        tornado.web.RequestHandler.log_exception(handler, typ, value, tb)


def error_message(status_code: int, error: BaseException | None) -> str:
    """The message of an error answer: ours, tornado's, or the status phrase."""
    if isinstance(error, NtorqueError):
        return error.message
    if isinstance(error, tornado.web.HTTPError) and error.log_message:
        return str(error.log_message % error.args if error.args else error.log_message)
    return http.client.responses.get(status_code, "error").lower()


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
        targets = self.api_options.targets
        spec = tasks.new_task(
            app_id=app_id,
            query=query,
            headers=self.request.headers,
            body=b"".join(self._chunks),
            default_timeout_s=self.api_options.default_timeout_s,
            max_timeout_s=self.api_options.max_timeout_s,
            policy=await targets.for_app(app_id) if targets else None,
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
