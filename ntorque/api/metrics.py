"""GET /metrics: the node's figures in the Prometheus text format.

With metrics_token set, only `Authorization: Bearer <token>` reads them.
Without it, they are as open as the API: anyone's when the server does not
authenticate, else an admin application's key's (the figures span every
application's queues).
"""

from __future__ import annotations

import hmac

import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST

from .base import JsonHandler

BEARER = "Bearer "


class MetricsHandler(JsonHandler):
    async def get(self) -> None:
        await self.allowed()
        scrape = self.api_options.scrape
        if scrape is None:
            raise tornado.web.HTTPError(404, "no such resource")
        text = await scrape.text()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(text)

    async def allowed(self) -> None:
        """The token when one is set; else what the API asks (an admin's key)."""
        token = self.api_options.metrics_token
        if not token:
            await self.authenticate()
            if self.app is not None and not self.app.admin:
                raise tornado.web.HTTPError(403, "the metrics need an admin application's key")
            return
        if wait := self.login_wait_s():  # with its Retry-After
            error = f"too many failed authentications from this address: retry in {wait} s"
            self.refuse(429, error)
        sent = self.request.headers.get("Authorization", "")
        given = sent.removeprefix(BEARER).encode() if sent.startswith(BEARER) else b""
        if not hmac.compare_digest(given, token.encode()):
            self.login_failed()
            self.set_header("WWW-Authenticate", 'Bearer realm="ntorque metrics"')
            self.refuse(401, "the metrics need Authorization: Bearer <metrics_token>")

    def refuse(self, status: int, error: str) -> None:
        """Answer now, keeping the headers set (an HTTPError's answer clears them)."""
        self.send_json(status, {"status": status, "error": error})
        raise tornado.web.Finish()
