"""The API's requests as data, and their answers read: what the sync and the
async client share, so that each of them only moves bytes. Pure: no I/O.

A `Request` carries how its answer is read, so a client method is one line:
build the request, send it, hand the answer to `result()`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Required, TypedDict, TypeVar
from urllib.parse import quote, urlencode

from .client_errors import ClientError as ClientError  # re-exported: imports people have
from .client_errors import client_error

T = TypeVar("T")
KEY_HEADER = "NTORQUE-API-KEY"
PASSTHROUGH_PREFIX = "NTORQUE-PASSTHROUGH-"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"  # the server's type for a body sent without one
FILTERS = ("status", "queue", "url_prefix", "created_after", "created_before", "schedule_id")
FINISHED = ("completed", "failed", "cancelled")
ENQUEUE_QUERY = ("method", "timeout", "delay", "eta", "retries", "backoff", "callback", "queue")

Time = datetime | float  # a datetime with its offset, or epoch seconds


class Enqueue(TypedDict, total=False):
    """What enqueue() takes besides the url and body (None: the server's default)."""

    json: Any  # instead of a body: sent as JSON, content_type application/json
    method: str
    timeout: int
    content_type: str
    charset: str  # the body's, sent in its Content-Type (a text body is encoded in it)
    headers: Mapping[str, str]  # passed through to the hook
    delay: float  # seconds from now
    eta: Time
    retries: int
    backoff: Literal["linear", "exponential"]
    callback: str  # the url told when the task ends
    idempotency_key: str
    queue: str  # its named queue (left out: "default")


class BatchItem(TypedDict, total=False):
    """One task of enqueue_batch(): a single enqueue's fields, the body as text
    or bytes (sent as body_base64)."""

    url: Required[str]
    body: str | bytes
    body_base64: str
    charset: str
    method: str
    timeout: int
    content_type: str
    headers: Mapping[str, str]
    delay: float
    eta: Time
    retries: int
    backoff: Literal["linear", "exponential"]
    callback: str
    idempotency_key: str
    queue: str


class Filters(TypedDict, total=False):
    """What selects tasks in a listing and in bulk cancel and retry."""

    status: str
    queue: str
    url_prefix: str
    created_after: Time
    created_before: Time
    schedule_id: int  # the tasks this schedule's ticks made


class QueueSettings(TypedDict, total=False):
    """A named queue's settings as set_queue() and update_queue() send them.
    None is sent as JSON null: no limit, or the server's default."""

    max_concurrency: int | None  # calls in flight at once, across every node
    rate_per_s: float | None  # calls started per second, across every node
    burst: int | None  # with rate_per_s; left out: one second's worth
    paused: bool
    retries: int | None  # defaults for tasks that leave them out
    backoff: Literal["linear", "exponential"] | None
    timeout: int | None


class EnqueuedTask(dict[str, Any]):
    """A task's JSON as the server answered it; `replayed` is True when an
    idempotency key matched an earlier enqueue (and nothing was created)."""

    replayed: bool = False


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class Request(Generic[T]):
    method: str
    path: str  # with its query string
    read: Callable[[Answer], T]
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def with_key(self, api_key: str | None) -> dict[str, str]:
        """The headers to send, the API key among them."""
        return {**self.headers, **({KEY_HEADER: api_key} if api_key else {})}


def result(request: Request[T], answer: Answer) -> T:
    """What the answer means for this request; ClientError for an error answer."""
    if answer.status >= 400:
        raise client_error(answer.status, answer.headers, answer.body)
    return request.read(answer)


# -- reading answers --------------------------------------------------------------


def finished(task: Mapping[str, Any]) -> bool:
    """Whether the task has ended: what wait() polls for."""
    return task["status"] in FINISHED


@dataclass
class Deadline:
    """wait()'s pacing, the same for both clients: how long to sleep before
    polling the task again, or TimeoutError once timeout_s has passed."""

    task_id: int
    timeout_s: float
    poll_s: float
    start: float = field(default_factory=time.monotonic)

    def pause(self, task: Mapping[str, Any]) -> float:
        left = self.start + self.timeout_s - time.monotonic()
        if left <= 0:
            status = task["status"]
            raise TimeoutError(f"task {self.task_id} still {status} after {self.timeout_s} s")
        return min(self.poll_s, left)


def json_object(answer: Answer) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(answer.body)
    return data


def enqueued(answer: Answer) -> EnqueuedTask:
    task = EnqueuedTask(json_object(answer))
    task.replayed = answer.headers.get("idempotent-replayed", "").lower() == "true"
    return task


def counts(answer: Answer) -> dict[str, int]:
    data = json_object(answer)
    return {"matched": int(data["matched"]), "changed": int(data["changed"])}


def nothing(answer: Answer) -> None:
    """A 204: the answer is the status."""


def member(name: str) -> Callable[[Answer], list[dict[str, Any]]]:
    def read(answer: Answer) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json_object(answer)[name]
        return found

    return read


# -- building requests ------------------------------------------------------------


def enqueue(url: str, body: bytes | str, options: Enqueue) -> Request[EnqueuedTask]:
    """POST /?url=...: the seed's enqueue, options in the query and headers."""
    query = {"url": url, **_query(options, ENQUEUE_QUERY)}
    headers = passthrough(options.get("headers"))
    data, content_type = _body(body, options)
    if content_type:
        headers["Content-Type"] = content_type
    if options.get("idempotency_key"):
        headers["Idempotency-Key"] = options["idempotency_key"]
    return Request("POST", "/?" + urlencode(query), enqueued, data, headers)


def _body(body: bytes | str, options: Enqueue) -> tuple[bytes, str]:
    """The bytes to send and their Content-Type ("": the server's default):
    `json` is dumped as UTF-8 JSON; text is encoded in `charset`, or UTF-8."""
    content_type, charset = options.get("content_type") or "", options.get("charset")
    if options.get("json") is not None:
        if body:
            raise ValueError("give a body or json, not both")
        body, content_type = json.dumps(options["json"]), content_type or JSON
    if charset:
        content_type = f"{content_type or FORM}; charset={charset}"
    if isinstance(body, str):
        return body.encode(charset or "utf-8"), content_type
    return body, content_type


def task(task_id: int) -> Request[dict[str, Any]]:
    return Request("GET", f"/tasks/{int(task_id)}", json_object)


def action(task_id: int, verb: str) -> Request[dict[str, Any]]:
    """POST /tasks/<id>/<verb>: push, cancel or retry; the task's JSON."""
    return Request("POST", f"/tasks/{int(task_id)}/{verb}", json_object, b"")


def attempts(task_id: int) -> Request[list[dict[str, Any]]]:
    return Request("GET", f"/tasks/{int(task_id)}/attempts", member("attempts"))


def tasks(filters: Filters, limit: int | None, cursor: str | None) -> Request[dict[str, Any]]:
    """GET /tasks: one page, {"tasks": [...], "next_cursor": str | None}."""
    query = _query({**filters, "limit": limit, "cursor": cursor}, (*FILTERS, "limit", "cursor"))
    return Request("GET", "/tasks" + ("?" + urlencode(query) if query else ""), json_object)


def bulk(verb: str, filters: Filters) -> Request[dict[str, int]]:
    """POST /tasks/cancel or /tasks/retry: {"matched": n, "changed": m}."""
    body = {name: _json_time(value) for name, value in filters.items() if value is not None}
    return Request("POST", f"/tasks/{verb}", counts, _json(body), {"Content-Type": JSON})


def enqueue_batch(items: Sequence[BatchItem]) -> Request[list[dict[str, Any]]]:
    """POST /tasks with a JSON array: all the tasks, or none (400 naming each bad item)."""
    body = _json([batch_item(item) for item in items])
    return Request("POST", "/tasks", member("tasks"), body, {"Content-Type": JSON})


def batch_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item (or a schedule's task) as JSON: bytes bodies as body_base64,
    times as text."""
    sent: dict[str, Any] = {name: value for name, value in item.items() if value is not None}
    if isinstance(sent.get("body"), bytes):
        sent["body_base64"] = base64.b64encode(sent.pop("body")).decode("ascii")
    if "eta" in sent:
        sent["eta"] = _json_time(sent["eta"])
    if "headers" in sent:
        sent["headers"] = dict(sent["headers"])
    return sent


def queues() -> Request[list[dict[str, Any]]]:
    """GET /queues: every queue of the caller, by name."""
    return Request("GET", "/queues", member("queues"))


def queue(name: str) -> Request[dict[str, Any]]:
    return Request("GET", _queue_path(name), json_object)


def configure_queue(name: str, method: str, settings: QueueSettings) -> Request[dict[str, Any]]:
    """PUT (replace every setting; those left out are reset) or PATCH (change
    those given); the queue's JSON. None is sent: it clears a limit."""
    body = _json(dict(settings))
    return Request(method, _queue_path(name), json_object, body, {"Content-Type": JSON})


def queue_action(name: str, verb: str) -> Request[dict[str, Any]]:
    """POST /queues/<name>/pause or /resume: the queue's JSON."""
    return Request("POST", f"{_queue_path(name)}/{verb}", json_object, b"")


def delete_queue(name: str) -> Request[None]:
    """DELETE /queues/<name>: 204, or 409 while unfinished tasks name it."""
    return Request("DELETE", _queue_path(name), nothing)


def _queue_path(name: str) -> str:
    # Valid names need no quoting; an invalid one must still reach the
    # server whole, to be refused with its reason (not split at a "/").
    return "/queues/" + quote(name, safe="")


# -- values -----------------------------------------------------------------------


def time_text(value: Time) -> str:
    """A time as the API takes it: ISO 8601 with its offset, or epoch seconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value} has no time zone: give a datetime with tzinfo")
        return value.isoformat()
    return _number(value)


def _query(values: Mapping[str, object], names: Sequence[str]) -> dict[str, str]:
    """The given names' values as text, leaving out those that are None."""
    return {name: _text(values[name]) for name in names if values.get(name) is not None}


def _text(value: object) -> str:
    if isinstance(value, datetime | float | int) and not isinstance(value, bool):
        return time_text(value)
    return str(value)


def _json_time(value: object) -> object:
    """A value for a JSON body: a datetime as ISO 8601 text, anything else as it is."""
    return time_text(value) if isinstance(value, datetime) else value


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def passthrough(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Headers for the hook, named as ntorque expects them on enqueue."""
    return {PASSTHROUGH_PREFIX + name: value for name, value in (headers or {}).items()}


def _json(data: object) -> bytes:
    return json.dumps(data).encode("utf-8")
