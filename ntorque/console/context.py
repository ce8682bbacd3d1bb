"""The console's dependencies, built once by make_console and given to every
page, action and socket handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import jinja2
import tornado.web

from ..auth import Authenticator
from ..handlers import Guard
from ..queue import Queue
from ..store.apps import AppStore
from ..store.console import ConsoleReads
from .hub import Hub
from .stats import Stats
from .viewer import COOKIE, EVERYONE, Viewer, viewer_of


@dataclass(frozen=True)
class Console:
    queue: Queue  # the only way the console changes a task
    reads: ConsoleReads
    apps: AppStore
    authenticator: Authenticator
    stats: Stats
    hub: Hub
    templates: jinja2.Environment
    static_url: Callable[[str], str]
    authenticate: bool
    cookie_secret: str
    guard: Guard = field(default_factory=Guard)

    async def viewer(self, handler: tornado.web.RequestHandler) -> Viewer | None:
        """Who the request's login cookie says is looking; everyone when auth is off."""
        if not self.authenticate:
            return EVERYONE
        return await viewer_of(handler.get_cookie(COOKIE), self.cookie_secret, self.apps)
