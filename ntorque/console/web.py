"""What every console page shares: its dependencies, who is looking, the
security headers, cookies and XSRF, and rendering with Jinja2.

Handlers never write SQL: they read through Store's console section and
change tasks only through the Queue.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jinja2
import markupsafe
import tornado.web

from ..api import error_message, quiet_log_exception
from ..auth import Authenticator
from ..errors import InvalidRequest, StorageUnavailable
from ..queue import Queue
from ..ratelimit import FailureLimiter
from ..store import Store
from ..tasks import Task
from ..transport import apply_hsts, served_over_https
from .live import Hub
from .stats import Stats

log = logging.getLogger(__name__)

COOKIE = "ntorque_console"
COOKIE_DAYS = 1
# No inline script or style anywhere: every script and sheet is a static file.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Console:
    """The console's dependencies, given to every handler."""

    queue: Queue
    store: Store
    authenticator: Authenticator
    stats: Stats
    hub: Hub
    templates: jinja2.Environment
    static_url: Callable[[str], str]
    authenticate: bool
    cookie_secret: str
    protocol_header: str = ""
    enable_hsts: bool = False
    limiter: FailureLimiter | None = None  # failed logins, per client address


@dataclass(frozen=True)
class Viewer:
    """Who is looking: an application (its own tasks), or one that sees all."""

    name: str
    app_id: int | None
    sees_all: bool

    @property
    def scope(self) -> int | None:
        """The app id whose tasks are shown; None for every application's."""
        return None if self.sees_all else self.app_id

    def may_see(self, task: Task) -> bool:
        return self.sees_all or task.app_id == self.app_id


def key_tag(secret: str, key_hash: str) -> str:
    """Ties a login to the key it was made with: a new key logs every session out."""
    return hmac.new(secret.encode(), key_hash.encode(), hashlib.sha256).hexdigest()[:32]


async def viewer_for(handler: tornado.web.RequestHandler, console: Console) -> Viewer | None:
    """The logged-in viewer from the signed cookie; everyone when auth is off."""
    if not console.authenticate:
        return Viewer("everyone", None, True)
    value = tornado.web.decode_signed_value(
        console.cookie_secret, COOKIE, handler.get_cookie(COOKIE), max_age_days=COOKIE_DAYS
    )
    app_id, _, tag = (value or b"").decode("ascii", "replace").partition(":")
    if not app_id.isdigit():
        return None
    row = await console.store.app_by_id(int(app_id))
    if row is None or not row["active"]:
        return None
    if not hmac.compare_digest(tag, key_tag(console.cookie_secret, row["key_hash"])):
        return None
    return Viewer(row["name"], row["id"], bool(row["admin"]))


class ConsoleHandler(tornado.web.RequestHandler):
    console: Console
    viewer: Viewer | None = None
    login_required = True

    def initialize(self, console: Console) -> None:
        self.console = console

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        """Every console cookie (login, XSRF): HttpOnly, SameSite, Secure over https."""
        kwargs.setdefault("httponly", True)
        kwargs.setdefault("samesite", "Strict")
        if served_over_https(self.request, self.console.protocol_header):
            kwargs.setdefault("secure", True)
        super().set_cookie(name, value, *args, **kwargs)

    async def prepare(self) -> None:
        if self.console.enable_hsts:
            apply_hsts(self, self.console.protocol_header)
            if self._finished:  # redirected to https
                return
        if self.request.method == "POST":
            self.check_xsrf_cookie()
        self.viewer = await viewer_for(self, self.console)
        if self.viewer is None and self.login_required:
            if self.request.method == "GET":
                self.redirect("/console/login")
            else:
                raise tornado.web.HTTPError(403, "log in first")

    def page(self, template: str, **values: Any) -> None:
        self.finish(
            self.console.templates.get_template(template).render(
                static=self.console.static_url,
                xsrf=markupsafe.Markup(self.xsrf_form_html()),
                viewer=self.viewer,
                authenticate=self.console.authenticate,
                **values,
            )
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, StorageUnavailable):
            self.set_header("Retry-After", "5")
        self.page("error.html", status=status_code, message=error_message(status_code, error))

    def _handle_request_exception(self, error: BaseException) -> None:
        if isinstance(error, (InvalidRequest, StorageUnavailable)):
            self.send_error(error.status, exc_info=(type(error), error, error.__traceback__))
            return
        super()._handle_request_exception(error)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        quiet_log_exception(self, typ, value, tb)
