"""Pure data: task statuses, the validated new-task spec, a stored task and
its JSON, and the outcome of one web-hook call. No I/O here."""

from __future__ import annotations

import codecs
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidRequest


class Status(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


UNFINISHED = (Status.PENDING, Status.IN_PROGRESS)
FINISHED = (Status.COMPLETED, Status.FAILED)
METHODS = ("POST", "PUT", "PATCH", "DELETE")
DEFAULT_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_CHARSET = "utf-8"
MAX_URL_LENGTH = 2048
PASSTHROUGH_PREFIXES = ("ntorque-passthrough-", "ntorque_passthrough_")
# Headers a client may not set on the outgoing call: the transport owns them.
RESERVED_HEADERS = frozenset(
    {
        "host", "content-length", "content-type", "transfer-encoding", "connection",
        "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
        "ntorque-task-id", "ntorque-task-retry-count", "ntorque-task-retry-limit",
    }
)  # fmt: skip


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
            "charset": self.charset,
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


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def new_task(
    *,
    app_id: int | None,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    default_timeout_s: int,
    max_timeout_s: float,
) -> NewTask:
    """Validate an enqueue request; raise InvalidRequest saying what is wrong."""
    content_type, charset, explicit_charset = parse_content_type(headers.get("Content-Type", ""))
    if explicit_charset:
        _check_decodes(body, charset)
    return NewTask(
        app_id=app_id,
        url=check_url(query.get("url", "")),
        method=check_method(query.get("method", "POST")),
        timeout_s=check_timeout(query.get("timeout"), default_timeout_s, max_timeout_s),
        body=body,
        content_type=content_type,
        charset=charset,
        headers=passthrough_headers(headers),
    )


def check_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise InvalidRequest("url is required: POST /?url=<absolute http or https url>")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise InvalidRequest(f"url is not valid: {error}") from error
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("url must be an absolute http or https url")
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise InvalidRequest("url must not contain spaces or control characters")
    return url


def check_method(method: str) -> str:
    upper = method.strip().upper()
    if upper not in METHODS:
        raise InvalidRequest(f"method must be one of {', '.join(METHODS)}")
    return upper


def check_timeout(value: str | None, default_s: int, max_s: float) -> int:
    if value is None or value.strip() == "":
        return default_s
    try:
        timeout = int(value.strip())
    except ValueError:
        raise InvalidRequest("timeout must be a whole number of seconds") from None
    if not 1 <= timeout <= max_s:
        raise InvalidRequest(f"timeout must be between 1 and {max_s:g} seconds")
    return timeout


def parse_content_type(header: str) -> tuple[str, str, bool]:
    """(type, charset, whether the charset was given) of a Content-Type header."""
    kind, _, params = header.partition(";")
    charset = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"')
    kind = kind.strip().lower() or DEFAULT_CONTENT_TYPE
    if len(kind) > 255 or any(ord(char) < 33 for char in kind):
        raise InvalidRequest("Content-Type is not valid")
    if not charset:
        return kind, DEFAULT_CHARSET, False
    try:
        codecs.lookup(charset)
    except LookupError:
        raise InvalidRequest(f"unknown charset {charset[:40]!r}") from None
    return kind, charset, True


def _check_decodes(body: bytes, charset: str) -> None:
    try:
        body.decode(charset)
    except (UnicodeDecodeError, LookupError):
        raise InvalidRequest(f"the body is not valid {charset[:40]}") from None


def passthrough_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The NTORQUE-PASSTHROUGH-* headers, without their prefix."""
    kept = []
    for name, value in headers.items():
        lower = name.lower()
        prefix = next((p for p in PASSTHROUGH_PREFIXES if lower.startswith(p)), None)
        if prefix is None:
            continue
        bare = name[len(prefix) :]
        if not bare or bare.lower() in RESERVED_HEADERS:
            raise InvalidRequest(f"pass-through header {bare or name!r} is not allowed")
        if any(char in value for char in "\r\n\0"):
            raise InvalidRequest(f"pass-through header {bare!r} has a control character")
        kept.append((bare, value))
    return tuple(kept)
