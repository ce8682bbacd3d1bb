"""Validating an enqueue request (query, headers, body) into a NewTask, or
InvalidRequest saying what is wrong. Pure: the target policy is given.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from . import schedule
from .errors import InvalidRequest
from .queues import QUEUE_NAME, QUEUE_NAME_RULE
from .targets import Policy
from .tasks import BACKOFFS, DEFAULT_QUEUE, NewTask

METHODS = ("POST", "PUT", "PATCH", "DELETE")
DEFAULT_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_CHARSET = "utf-8"  # of a textual body that declares none, when it is valid UTF-8
NO_CHARSET = ""  # stored when none is known (the task's JSON shows null)
# Types whose bodies are text: they get a charset even when none is declared.
TEXTUAL_TYPES = frozenset(
    {"application/json", "application/x-www-form-urlencoded", "application/xml"}
)
TEXTUAL_SUFFIXES = ("+json", "+xml")
MAX_HEADERS = 50  # pass-through headers per task
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 8192
MAX_CHARSET_NAME = 40
MAX_IDEMPOTENCY_KEY = 255
PRINTABLE = re.compile(r"^[\x20-\x7e]+$")
# RFC 9110 token: what a header name may be made of.
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Control characters other than HTAB: refused in header values.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
HYPHEN_PREFIX = "ntorque-passthrough-"
UNDERSCORE_PREFIX = "ntorque_passthrough_"
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
class Limits:
    """The server's bounds on what a task may ask for."""

    max_retries: int = 36
    max_schedule_ahead_s: float = 30 * 86400.0


def new_task(
    *,
    app_id: int | None,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    max_timeout_s: float,
    policy: Policy,
    limits: Limits = Limits(),
    now: float | None = None,
) -> NewTask:
    """Validate an enqueue request; raise InvalidRequest saying what is wrong.

    A url the target policy refuses on sight is refused here (400); host
    names are only checked against it at call time, once resolved. now:
    the time delay= counts from (the wall clock when not given).
    """
    with blame("url"):
        url = policy.check_url(query.get("url", ""))
    with blame("content_type"):
        content_type, declared = parse_content_type(headers.get("Content-Type", ""))
        charset = body_charset(content_type, declared, body)
    with blame("headers"):
        passed = passthrough_headers(headers)
    callback = query.get("callback")
    return NewTask(
        app_id=app_id,
        url=url,
        method=check_method(query.get("method", "POST")),
        timeout_s=check_timeout(query.get("timeout"), max_timeout_s),
        body=body,
        content_type=content_type,
        charset=charset,
        headers=passed,
        due=schedule.due(query.get("delay"), query.get("eta"), limits.max_schedule_ahead_s, now),
        retries=check_retries(query.get("retries"), limits.max_retries),
        backoff=check_backoff(query.get("backoff")),
        callback_url=None if callback is None else check_callback(callback, policy),
        queue=check_queue_name(query.get("queue")),
    )


@contextlib.contextmanager
def blame(field: str) -> Iterator[None]:
    """Name the input at fault in an InvalidRequest that does not yet."""
    try:
        yield
    except InvalidRequest as error:
        error.field = error.field or field
        raise


def check_retries(value: str | int | None, max_retries: int) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        retries = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest("retries must be a whole number", field="retries") from None
    if not 1 <= retries <= max_retries:
        raise InvalidRequest(f"retries must be between 1 and {max_retries}", field="retries")
    return retries


def check_backoff(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if value.strip().lower() not in BACKOFFS:
        raise InvalidRequest(f"backoff must be one of {', '.join(BACKOFFS)}", field="backoff")
    return value.strip().lower()


def check_callback(url: str, policy: Policy) -> str:
    """A callback url is checked like a hook's."""
    try:
        return policy.check_url(url)
    except InvalidRequest as error:
        raise InvalidRequest(f"callback: {error.message}", field="callback") from None


def idempotency_key(value: str | None) -> str | None:
    """An Idempotency-Key: 1 to 255 printable ASCII characters."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY or not PRINTABLE.match(value):
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            field="idempotency_key",
        )
    return value


def fingerprint(spec: NewTask) -> str:
    """What a repeat of an idempotent request must ask for again: url,
    method and body."""
    digest = hashlib.sha256()
    for part in (spec.method.encode(), spec.url.encode(), spec.body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def check_queue_name(value: str | None) -> str:
    """A queue's name as a client gives it: the default queue when left out."""
    if value is None:
        return DEFAULT_QUEUE
    if not QUEUE_NAME.fullmatch(value):
        raise InvalidRequest(QUEUE_NAME_RULE, field="queue")
    return value


def check_method(method: str) -> str:
    upper = method.strip().upper()
    if upper not in METHODS:
        raise InvalidRequest(f"method must be one of {', '.join(METHODS)}", field="method")
    return upper


def check_timeout(value: str | None, max_s: float) -> int | None:
    """Whole seconds; None when not given (the queue's, else the server's)."""
    if value is None or value.strip() == "":
        return None
    try:
        timeout = int(value.strip())
    except ValueError:
        raise InvalidRequest("timeout must be a whole number of seconds", field="timeout") from None
    if not 1 <= timeout <= max_s:
        raise InvalidRequest(f"timeout must be between 1 and {max_s:g} seconds", field="timeout")
    return timeout


def parse_content_type(header: str) -> tuple[str, str]:
    """(type, charset given or "") of a Content-Type header; the type in
    lower case, up to `;` (application/x-www-form-urlencoded when none)."""
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
        return kind, NO_CHARSET
    return kind, check_charset(charset)


def check_charset(charset: str) -> str:
    """A charset name Python knows, of at most MAX_CHARSET_NAME token characters."""
    if len(charset) > MAX_CHARSET_NAME or not TOKEN.match(charset):
        raise InvalidRequest(f"unknown charset {charset[:MAX_CHARSET_NAME]!r}")
    try:
        codecs.lookup(charset)
    except LookupError:
        raise InvalidRequest(f"unknown charset {charset[:40]!r}") from None
    return charset


def body_charset(content_type: str, declared: str, body: bytes) -> str:
    """The charset the hook will be told: the declared one (the body must
    decode in it); else UTF-8 for a textual type whose body is valid UTF-8;
    else none, rather than a false one."""
    if declared:
        if not _decodes(body, declared):
            raise InvalidRequest(f"the body is not valid {declared[:MAX_CHARSET_NAME]}")
        return declared
    if is_textual(content_type) and _decodes(body, DEFAULT_CHARSET):
        return DEFAULT_CHARSET
    return NO_CHARSET


def is_textual(content_type: str) -> bool:
    """text/*, JSON, form and XML types (with their +json and +xml kin)."""
    return (
        content_type.startswith("text/")
        or content_type in TEXTUAL_TYPES
        or content_type.endswith(TEXTUAL_SUFFIXES)
    )


def _decodes(body: bytes, charset: str) -> bool:
    try:
        body.decode(charset)
    except (UnicodeError, LookupError):  # UnicodeError: "undefined" raises the parent
        return False
    return True


def passthrough_headers(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The NTORQUE-PASSTHROUGH-* headers, without their prefix, each checked.

    Names given as NTORQUE_PASSTHROUGH_X_Trace go out as X-Trace (as in the
    original, where WSGI folded them so); the hyphen form keeps names as given.
    """
    kept = []
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(HYPHEN_PREFIX):
            kept.append(_passthrough(name[len(HYPHEN_PREFIX) :], name, value))
        elif lower.startswith(UNDERSCORE_PREFIX):
            kept.append(_passthrough(hyphenated(name[len(UNDERSCORE_PREFIX) :]), name, value))
    if len(kept) > MAX_HEADERS:
        raise InvalidRequest(f"at most {MAX_HEADERS} pass-through headers are allowed")
    return tuple(kept)


def hyphenated(name: str) -> str:
    """x_request_id -> X-Request-Id: underscores to hyphens, words capitalised
    (an ASCII name only: anything else stays as it is, to be refused)."""
    if not name.isascii():
        return name
    return "-".join(word.capitalize() for word in re.split(r"[_-]", name))


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
