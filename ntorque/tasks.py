"""Pure data: task statuses, the validated new-task spec, a stored task and
its JSON, and the outcome of one web-hook call. No I/O here."""

from __future__ import annotations

import codecs
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import InvalidRequest
from .targets import Policy


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
MAX_HEADERS = 50  # pass-through headers per task
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 8192
MAX_CHARSET_NAME = 40
# A host as curl and the target policy must read it alike: ASCII letters,
# digits, dots, hyphens (and underscores), or a bracketed IPv6 address.
# Percent-encoded or non-ASCII hosts are refused (give IDN names in punycode).
HOST_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
IPV6_LITERAL = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
# RFC 9110 token: what a header name may be made of.
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Backslashes too: browsers read them as "/", curl does not (a host confusion).
URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")
# Control characters other than HTAB: refused in header values.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
PASSTHROUGH_PREFIXES = ("ntorque-passthrough-", "ntorque_passthrough_")
# Headers a client may not set on the outgoing call: the transport owns them.
RESERVED_HEADERS = frozenset(
    {
        "host", "content-length", "content-type", "transfer-encoding", "connection",
        "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
        "proxy-authenticate", "proxy-authorization", "expect",
        "ntorque-task-id", "ntorque-task-retry-count", "ntorque-task-retry-limit",
        "webhook-id", "webhook-timestamp", "webhook-signature",  # ntorque signs calls
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


def loggable_url(url: str) -> str:
    """The url for a log line: no user:password, no query string (tokens)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


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
    policy: Policy | None = None,
) -> NewTask:
    """Validate an enqueue request; raise InvalidRequest saying what is wrong.

    With a target policy, a url it refuses on sight is refused here (400);
    host names are only checked against it at call time, once resolved.
    """
    content_type, charset, explicit_charset = parse_content_type(headers.get("Content-Type", ""))
    if explicit_charset:
        _check_decodes(body, charset)
    return NewTask(
        app_id=app_id,
        url=check_url(query.get("url", ""), policy),
        method=check_method(query.get("method", "POST")),
        timeout_s=check_timeout(query.get("timeout"), default_timeout_s, max_timeout_s),
        body=body,
        content_type=content_type,
        charset=charset,
        headers=passthrough_headers(headers),
    )


def check_url(url: str, policy: Policy | None = None) -> str:
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
    if URL_FORBIDDEN.search(url):
        raise InvalidRequest("url must not contain spaces, backslashes or control characters")
    if not _plain_host(parts.netloc):
        raise InvalidRequest("url host must be a plain name (ASCII, punycode) or an IP address")
    if policy is not None:
        policy.check_url(url)
    return url


def _plain_host(netloc: str) -> bool:
    """Whether the host, as written, is one curl and the target policy read alike."""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        address, _, rest = host.partition("]")
        return bool(IPV6_LITERAL.match(address + "]")) and rest[:1] in ("", ":")
    return bool(HOST_NAME.match(host.partition(":")[0]))


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
    if len(kind) > 255 or any(not 33 <= ord(char) <= 126 for char in kind):
        raise InvalidRequest("Content-Type is not valid")
    if not charset:
        return kind, DEFAULT_CHARSET, False
    if len(charset) > MAX_CHARSET_NAME or not TOKEN.match(charset):
        raise InvalidRequest(f"unknown charset {charset[:MAX_CHARSET_NAME]!r}")
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
    """The NTORQUE-PASSTHROUGH-* headers, without their prefix, each checked."""
    kept = []
    for name, value in headers.items():
        lower = name.lower()
        prefix = next((p for p in PASSTHROUGH_PREFIXES if lower.startswith(p)), None)
        if prefix is not None:
            kept.append(_passthrough(name[len(prefix) :], name, value))
    if len(kept) > MAX_HEADERS:
        raise InvalidRequest(f"at most {MAX_HEADERS} pass-through headers are allowed")
    return tuple(kept)


def _passthrough(bare: str, name: str, value: str) -> tuple[str, str]:
    shown = repr((bare or name)[:60])
    if not bare or bare.lower() in RESERVED_HEADERS:
        raise InvalidRequest(f"pass-through header {shown} is not allowed")
    if len(bare) > MAX_HEADER_NAME or not TOKEN.match(bare):
        raise InvalidRequest(f"pass-through header name {shown} is not valid")
    if CONTROL.search(value):
        raise InvalidRequest(f"pass-through header {shown} has a control character")
    if len(value) > MAX_HEADER_VALUE:
        raise InvalidRequest(f"pass-through header {shown} is longer than {MAX_HEADER_VALUE}")
    return bare, value
