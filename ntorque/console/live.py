"""The console's websocket: one per open page, fed by the Hub.

The socket needs the login cookie (checked like a page's) and the page's own
origin (tornado's check), or it answers 403. It leaves the hub on close and
on a failed write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import tornado.web
import tornado.websocket

from .context import Console
from .viewer import Viewer

log = logging.getLogger(__name__)

PING_S = 10.0  # find vanished peers (a dropped network) within about this


class ConsoleSocket(tornado.websocket.WebSocketHandler):
    """GET /console/socket: the login cookie and the page's own origin, or 403."""

    console: Console
    viewer: Viewer | None = None
    scope: int | None = None

    def initialize(self, console: Console) -> None:
        self.console = console

    @property
    def ping_interval(self) -> float:
        return PING_S

    async def get(self, *args: Any, **kwargs: Any) -> None:
        self.viewer = await self.console.viewer(self)
        if self.viewer is None:
            self.set_status(403)
            self.finish("log in first")
            return
        self.scope = self.viewer.scope
        await super().get(*args, **kwargs)

    async def open(self, *args: str, **kwargs: str) -> None:
        self.console.hub.join(self)
        self.send({"type": "stats", "stats": await self.console.stats.get(self.scope)})

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.write_message(json.dumps(message)).add_done_callback(self._written)
        except tornado.websocket.WebSocketClosedError:
            self.console.hub.leave(self)

    def _written(self, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is not None:  # the peer went away
            self.console.hub.leave(self)

    def on_message(self, message: str | bytes) -> None:
        pass  # the page only listens

    def on_close(self) -> None:
        self.console.hub.leave(self)
