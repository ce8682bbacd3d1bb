"""Health probes for load balancers and orchestrators: /healthz (this
process and its loop answer) and /readyz (its database and Redis answer).

No key, no failed-login count, no HTTPS redirect: a probe carries nothing
secret, and answers nothing secret (which parts are up, not why not).
"""

from __future__ import annotations

import json
from typing import Any

from ..handlers import RETRY_AFTER_UNAVAILABLE_S, BaseHandler
from ..health import OK, Readiness


class ProbeHandler(BaseHandler):
    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def send_json(self, status: int, data: dict[str, Any]) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))  # on HEAD tornado sends the headers alone

    def write_error_message(
        self, status_code: int, message: str, fields: dict[str, Any] | None = None
    ) -> None:
        self.finish(json.dumps({"status": status_code, "error": message, **(fields or {})}))


class HealthHandler(ProbeHandler):
    """The process is alive: touches neither the database nor Redis."""

    def get(self) -> None:
        self.send_json(200, {"status": "ok"})

    head = get


class ReadyHandler(ProbeHandler):
    """200 when every part answers; 503 naming those that do not."""

    def initialize(self, readiness: Readiness) -> None:
        self.readiness = readiness

    async def get(self) -> None:
        checks = await self.readiness.check()
        failing = [name for name, state in checks.items() if state != OK]
        if not failing:
            self.send_json(200, {"status": "ready", "checks": checks})
            return
        self.set_header("Retry-After", str(RETRY_AFTER_UNAVAILABLE_S))
        error = f"not ready: {', '.join(failing)} unavailable"
        self.send_json(503, {"status": 503, "error": error, "checks": checks})

    head = get
