"""Pure data: task statuses, the validated new-task spec, a stored task and
its JSON, and the outcome of one web-hook call. No I/O, no validation here
(`intake` validates requests)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class Status(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


UNFINISHED = (Status.PENDING, Status.IN_PROGRESS)
FINISHED = (Status.COMPLETED, Status.FAILED)


@dataclass(frozen=True)
class NewTask:
    """A task as the client asked for it, already validated."""

    app_id: int | None
    url: str
    method: str
    timeout_s: int
    body: bytes
    content_type: str
    charset: str
    headers: tuple[tuple[str, str], ...]


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

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_json(self) -> dict[str, Any]:
        """The one serialisation of a task (API, console and events)."""
        return {
            "id": self.id,
            "url": self.url,
            "method": self.method,
            "status": str(self.status),
            "retry_count": self.retry_count,
            "timeout": self.timeout_s,
            "due": iso(self.due),
            "created": iso(self.created),
            "modified": iso(self.modified),
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "content_type": self.content_type,
            "charset": self.charset or None,  # stored "": no charset is known
            "headers": dict(self.headers),
            "body_size": len(self.body),
        }


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


def loggable_url(url: str) -> str:
    """The url for a log line: no user:password, no query string (tokens)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
