"""What every JSON API handler shares: the settings it needs, who is
calling, the caller's tasks, JSON in and out.

Handlers receive their dependencies through `initialize`; every error is a
JSON body with a clear message, never a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import tornado.web

from .. import intake, jsonbody
from ..auth import App, Authenticator
from ..errors import PayloadTooLarge
from ..handlers import BaseHandler, Guard
from ..metrics import Scrape
from ..queue import Queue
from ..targets import Policy, Targets
from ..tasks import NewTask, Task

log = logging.getLogger(__name__)

KEY_HEADERS = ("NTORQUE_API_KEY", "NTORQUE-API-KEY")
SMALL_BODY_BYTES = 64 * 1024  # a JSON request that is not a task or a batch of them


class ApiOptions:
    """What the handlers need to know of the settings."""

    def __init__(
        self,
        *,
        authenticate: bool,
        max_body_bytes: int,
        max_timeout_s: float,
        targets: Targets,
        max_retries: int = 36,
        max_schedule_ahead_s: float = 30 * 86400.0,
        guard: Guard | None = None,
        scrape: Scrape | None = None,
        metrics_token: str = "",
    ) -> None:
        self.authenticate = authenticate
        self.scrape = scrape  # GET /metrics; None: not served
        self.metrics_token = metrics_token
        self.max_body_bytes = max_body_bytes
        self.max_timeout_s = max_timeout_s
        self.limits = intake.Limits(max_retries, max_schedule_ahead_s)
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

    @property
    def scope(self) -> int | None:
        """Whose tasks a listing sees: the caller's; an admin's or an
        unauthenticated server's, everyone's (None)."""
        return None if self.app is None or self.app.admin else self.app.id

    @property
    def app_id(self) -> int | None:
        return self.app.id if self.app else None

    def raw_query(self) -> dict[str, str]:
        """The query's values as sent (the last of each name): tornado's
        get_query_argument turns control characters into spaces and strips
        them, so a filter like url_prefix=%00 came out blank, and a blank
        filter selects everything: a bulk cancel of every task."""
        return {
            name: self.decode_argument(values[-1], name=name)
            for name, values in self.request.query_arguments.items()
        }

    async def policy(self) -> Policy:
        """Where the caller's hooks may go."""
        return await self.api_options.targets.for_app(self.app_id)

    def read_task(
        self, policy: Policy, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> NewTask:
        """A single enqueue's validation (the seed's query, headers and body)."""
        options = self.api_options
        return intake.new_task(
            app_id=self.app_id,
            query=query,
            headers=headers,
            body=body,
            max_timeout_s=options.max_timeout_s,
            policy=policy,
            limits=options.limits,
            now=self.queue.clock(),  # the clock due dates are compared with
        )

    def send_json(self, status: int, data: dict[str, Any]) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))

    def write_error_message(
        self, status_code: int, message: str, fields: dict[str, Any] | None = None
    ) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"status": status_code, "error": message, **(fields or {})}))


class NotFoundHandler(JsonHandler):
    def prepare(self) -> None:  # type: ignore[override]
        raise tornado.web.HTTPError(404, "no such resource")


@tornado.web.stream_request_body
class BodyHandler(JsonHandler):
    """A handler whose request body is read as it streams in, up to
    body_limit() bytes: a larger one is a 413 before it is all read."""

    def body_limit(self) -> int:
        return SMALL_BODY_BYTES

    async def prepare(self) -> None:
        await super().prepare()
        self._chunks: list[bytes] = []
        self._size = 0
        if self.request.method not in ("POST", "PUT", "PATCH") or self._finished:
            return
        await self.authenticate()
        declared = self.request.headers.get("Content-Length", "0")
        if declared.isdigit() and int(declared) > self.body_limit():
            raise self._too_large()

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._size += len(chunk)
        if self._size > self.body_limit():
            # A body without Content-Length: answer 413 here, since an
            # exception raised from data_received only drops the connection.
            self._chunks.clear()
            error = self._too_large()
            self.send_error(error.status, exc_info=(type(error), error, None))
            return
        self._chunks.append(chunk)

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)

    def json_body(self) -> Any:
        """The request's JSON (null when there is no body); 400 when it does not parse."""
        return jsonbody.loads(self.body or b"null")

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the body is larger than {self.body_limit()} bytes")
