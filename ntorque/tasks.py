"""Pure data: task statuses, the validated new-task spec, a stored task and
its JSON, and the outcome of one web-hook call. No I/O, no validation here
(`intake` validates requests)."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit


class Status(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


UNFINISHED = (Status.PENDING, Status.IN_PROGRESS)
FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
RETRIABLE = (Status.FAILED, Status.CANCELLED)  # what POST /tasks/<id>/retry runs again
BACKOFFS = ("linear", "exponential")
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class NewTask:
    """A task as the client asked for it, already validated."""

    app_id: int | None
    url: str
    method: str
    timeout_s: int | None  # None: its queue's default, else the server's
    body: bytes
    content_type: str
    charset: str
    headers: tuple[tuple[str, str], ...]
    due: float | None = None  # when to call it first; None: now
    queue: str = DEFAULT_QUEUE
    retries: int | None = None  # its own attempt allowance; None: its queue's, else the server's
    backoff: str | None = None  # linear or exponential; None: its queue's, else the server's
    callback_url: str | None = None  # told when the task ends
    callback_of: int | None = None  # on a callback task: the task it reports on
    schedule_id: int | None = None  # made by a tick of this schedule
    schedule_tick: float | None = None  # at this tick's time


@dataclass(frozen=True)
class Task:
    """A stored task. Times are UTC seconds since the epoch."""

    id: int
    app_id: int | None
    url: str
    method: str
    timeout_s: int
    body: bytes
    content_type: str
    charset: str
    headers: tuple[tuple[str, str], ...]
    status: Status
    retry_count: int
    due: float
    created: float
    modified: float
    last_status_code: int | None
    last_error: str | None
    retries: int | None = None
    backoff: str | None = None
    attempts_before: int = 0  # attempts made before its last manual retry
    callback_url: str | None = None
    callback_task_id: int | None = None
    callback_of: int | None = None
    queue: str = DEFAULT_QUEUE
    schedule_id: int | None = None
    schedule_tick: float | None = None
    body_size: int | None = None  # a listed task's, whose body is not read
    # Leased under its queue's limits: when it settles, its queue has room
    # again and the tasks waiting for it are woken (not stored).
    limited: bool = False
    # Stored into a paused queue: its resume notifies it, not its enqueue.
    held: bool = False

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def attempt_limit(self, max_retries: int) -> int:
        """The attempts it may make in all: its own retries (else the server's
        max_retries), counted from its last manual retry."""
        allowed = max_retries if self.retries is None else self.retries
        return self.attempts_before + allowed

    def to_json(self) -> dict[str, Any]:
        """The one serialisation of a task (API, console and events)."""
        return {
            "id": self.id,
            "queue": self.queue,
            "url": self.url,
            "method": self.method,
            "status": str(self.status),
            "retry_count": self.retry_count,
            "timeout": self.timeout_s,
            "due": None if self.finished else iso(self.due),
            "created": iso(self.created),
            "modified": iso(self.modified),
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "content_type": self.content_type,
            "charset": self.charset or None,  # stored "": no charset is known
            "headers": dict(self.headers),
            "body_size": len(self.body) if self.body_size is None else self.body_size,
            "retries": self.retries,
            "backoff": self.backoff,
            "callback_url": self.callback_url,
            "callback_task_id": self.callback_task_id,
            "callback_of": self.callback_of,
            "schedule_id": self.schedule_id,
            "schedule_tick": None if self.schedule_tick is None else iso(self.schedule_tick),
        }


class Keyed(NamedTuple):
    """An enqueue's Idempotency-Key and the fingerprint of what it asked for:
    a repeat must ask the same."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks a listing or a bulk action selects. Times are epoch seconds."""

    app_id: int | None  # None: every application's (an admin's listing)
    status: Status | None = None
    url_prefix: str | None = None
    created_after: float | None = None  # created at or after
    created_before: float | None = None  # created before
    queue: str | None = None
    schedule_id: int | None = None  # made by this schedule's ticks


class Verdict(enum.StrEnum):
    COMPLETED = "completed"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """What one call of a web hook came to."""

    verdict: Verdict
    started: float
    duration_s: float
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None  # the wait the hook asked for (Retry-After)


def attempt_json(attempt: Mapping[str, Any]) -> dict[str, Any]:
    """One attempt (a row of the attempts table) as the API shows it."""
    return {
        "number": attempt["number"],
        "started": iso(attempt["started"]),
        "duration_s": round(attempt["duration_s"], 6),
        "status_code": attempt["status_code"],
        "error": attempt["error"],
        "retry_after_s": attempt["retry_after_s"],
    }


def callback_spec(task: Task, last_attempt: Mapping[str, Any] | None) -> NewTask:
    """The callback of an ended task: a POST of its JSON and its last attempt
    to its callback url, for the same application; no callback of its own."""
    assert task.callback_url is not None
    report = {"task": task.to_json(), "attempts": last_attempt and attempt_json(last_attempt)}
    return NewTask(
        app_id=task.app_id,
        url=task.callback_url,
        method="POST",
        timeout_s=task.timeout_s,
        body=json.dumps(report).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=(),
        queue=task.queue,  # what pauses or limits a task's queue holds its callback too
        callback_of=task.id,
    )


def loggable_url(url: str) -> str:
    """The url for a log line: no user:password, no query string (tokens)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
