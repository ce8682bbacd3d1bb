"""What every console page shares: who is looking, the security headers,
cookies and XSRF, and rendering with Jinja2 (errors too).

Handlers never write SQL: they read through the store's console reads and
change tasks only through the Queue.
"""

from __future__ import annotations

import logging
from typing import Any

import markupsafe
import tornado.web

from ..handlers import BaseHandler
from .context import Console
from .viewer import Viewer

log = logging.getLogger(__name__)

# No inline script or style anywhere: every script and sheet is a static file.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class ConsoleHandler(BaseHandler):
    console: Console
    viewer: Viewer | None = None
    login_required = True

    def initialize(self, console: Console) -> None:
        self.console = console
        self.guard = console.guard

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
        if self.secure:
            kwargs.setdefault("secure", True)
        super().set_cookie(name, value, *args, **kwargs)

    async def prepare(self) -> None:
        self.enforce_https()
        if self._finished:  # redirected to https
            return
        if self.request.method == "POST":
            self.check_xsrf_cookie()
        self.viewer = await self.console.viewer(self)
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

    def write_error_message(
        self, status_code: int, message: str, fields: dict[str, Any] | None = None
    ) -> None:
        self.page("error.html", status=status_code, message=message)
