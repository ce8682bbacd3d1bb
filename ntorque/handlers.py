"""What JSON and HTML handlers share: HTTPS and HSTS, failed-login limiting,
error answers (with Retry-After where it helps), quiet logging of expected
errors, and the request line every log shows (never a query value).
Subclasses say how an error is written (JSON or a page).
"""

from __future__ import annotations

import http.client
import logging
import re
from dataclasses import dataclass
from typing import Any

import tornado.web

from .errors import (
    Conflict,
    InvalidBatch,
    InvalidRequest,
    KeyReused,
    NtorqueError,
    StorageUnavailable,
)
from .ratelimit import FailureLimiter

log = logging.getLogger(__name__)
access_log = logging.getLogger("tornado.access")
app_log = logging.getLogger("tornado.application")

HSTS_VALUE = "max-age=31536000"
RETRY_AFTER_UNAVAILABLE_S = 5
# Our errors that are answers (4xx, 503), never crashes.
ANSWERED = (InvalidRequest, Conflict, KeyReused, StorageUnavailable)
# A query parameter's name shown in logs: the API's own names are short
# snake_case; anything else may be a value sent without a name.
LOGGED_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
HIDDEN = "***"


@dataclass(frozen=True)
class Guard:
    """The settings every handler obeys, API and console alike."""

    enable_hsts: bool = False
    protocol_header: str = ""  # set by a TLS proxy: "X-Forwarded-Proto", say
    limiter: FailureLimiter | None = None  # failed authentications, per client address


def served_over_https(request: tornado.httputil.HTTPServerRequest, protocol_header: str) -> bool:
    """https itself, or what a TLS proxy says in its header (hsts_protocol_header)."""
    protocol = str(request.protocol)
    if protocol_header:
        protocol = request.headers.get(protocol_header, protocol)
    return protocol.lower() == "https"


class BaseHandler(tornado.web.RequestHandler):
    guard: Guard = Guard()

    def enforce_https(self) -> None:
        """With HSTS on: over https, the HSTS header; over http, a GET moves
        to https (the handler is then finished) and anything else is a 400."""
        if not self.guard.enable_hsts:
            return
        if served_over_https(self.request, self.guard.protocol_header):
            self.set_header("Strict-Transport-Security", HSTS_VALUE)
        elif self.request.method in ("GET", "HEAD"):
            self.redirect(f"https://{self.request.host}{self.request.uri}", permanent=True)
        else:
            raise InvalidRequest("this server takes requests over https only")

    @property
    def secure(self) -> bool:
        return served_over_https(self.request, self.guard.protocol_header)

    def login_wait_s(self) -> int:
        """Seconds this address must wait after too many failed keys (0: none);
        sets Retry-After when it must."""
        limiter = self.guard.limiter
        wait = limiter.retry_after(self.request.remote_ip or "") if limiter else 0
        if wait:
            self.set_header("Retry-After", str(wait))
        return wait

    def login_failed(self) -> None:
        if self.guard.limiter:
            self.guard.limiter.failed(self.request.remote_ip or "")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, StorageUnavailable):
            self.set_header("Retry-After", str(RETRY_AFTER_UNAVAILABLE_S))
        self.write_error_message(
            status_code, error_message(status_code, error), error_fields(error)
        )

    def write_error_message(
        self, status_code: int, message: str, fields: dict[str, Any] | None = None
    ) -> None:
        """The error answer: its message, and where one input is at fault,
        which (JSON answers show "field", or "errors" for a batch)."""
        raise NotImplementedError

    def _handle_request_exception(self, error: BaseException) -> None:
        """Our own errors are answers (400, 413, 503 ...), not crashes."""
        if isinstance(error, ANSWERED):
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
        log_uncaught(self, typ, value, tb)


def log_uncaught(handler: tornado.web.RequestHandler, typ: Any, value: Any, tb: Any) -> None:
    """Log an unexpected error of any handler (websockets too) with its request
    line, never a query value; an HTTPError is an expected answer, not an event."""
    if not isinstance(value, tornado.web.HTTPError):
        line = request_line(handler.request)
        app_log.error("uncaught exception %s", line, exc_info=(typ, value, tb))


def request_line(request: tornado.httputil.HTTPServerRequest) -> str:
    """`METHOD path?name=***&... (address)`: a request as logs may show it.

    Query values are never shown (a task's url carries credentials and
    tokens, a key may be sent by mistake as `?key=`); nor are names that
    are not plain snake_case words.
    """
    shown = [_shown_parameter(part) for part in request.query.split("&") if part]
    query = "?" + "&".join(shown) if shown else ""
    return f"{request.method} {request.path}{query} ({request.remote_ip})"


def _shown_parameter(part: str) -> str:
    name, equals, _ = part.partition("=")
    return f"{name}={HIDDEN}" if equals and LOGGED_NAME.fullmatch(name) else HIDDEN


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access log's line for every answer (the application's `log_function`):
    tornado's levels (2xx/3xx info, 4xx warning, 5xx error), no query value."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    elapsed_ms = 1000.0 * handler.request.request_time()
    access_log.log(level, "%d %s %.2fms", status, request_line(handler.request), elapsed_ms)


def error_fields(error: BaseException | None) -> dict[str, Any]:
    """The input at fault, for a JSON error answer."""
    if isinstance(error, InvalidBatch):
        return {"errors": error.errors}
    field = getattr(error, "field", None)
    return {"field": field} if isinstance(error, NtorqueError) and field else {}


def error_message(status_code: int, error: BaseException | None) -> str:
    """The message of an error answer: ours, tornado's, or the status phrase."""
    if isinstance(error, NtorqueError):
        return error.message
    if isinstance(error, tornado.web.HTTPError) and error.log_message:
        return str(error.log_message % error.args if error.args else error.log_message)
    return http.client.responses.get(status_code, "error").lower()
