"""Readiness: whether the database and, where configured, Redis answer.

Cheap to poll every second from many probes: a result is kept for CACHE_S,
and probes that arrive while a check runs wait for that one check. Bounded:
a part that does not answer within TIMEOUT_S is unavailable, so a hung
database makes a quick 503, never a hung probe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0
CACHE_S = 0.5
OK = "ok"
UNAVAILABLE = "unavailable"

Check = Callable[[], Awaitable[object]]  # raises, or answers False, when the part is away


class Readiness:
    """The checks of one node's parts, each named: {"database": "ok", ...}."""

    def __init__(
        self,
        checks: dict[str, Check],
        *,
        timeout_s: float = TIMEOUT_S,
        cache_s: float = CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = checks
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self.clock = clock
        self._last: dict[str, str] = {}
        self._checked_at = -float("inf")
        self._running: asyncio.Future[dict[str, str]] | None = None
        self.rounds = 0  # checks actually run (tests count them)

    async def check(self) -> dict[str, str]:
        """Each part's state: the last result if fresh, else one round shared by all callers."""
        if self.clock() - self._checked_at < self.cache_s:
            return self._last
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._round())
        return await asyncio.shield(self._running)

    async def _round(self) -> dict[str, str]:
        self.rounds += 1
        names = list(self.checks)
        states = await asyncio.gather(*(self._one(name) for name in names))
        result = dict(zip(names, states, strict=True))
        self._changed(result)
        self._last, self._checked_at = result, self.clock()
        return result

    async def _one(self, name: str) -> str:
        try:
            answered = await asyncio.wait_for(self.checks[name](), self.timeout_s)
        except Exception as error:  # any failure of a part is "not ready", never a 500
            log.debug("readiness: %s did not answer: %r", name, error)
            return UNAVAILABLE
        return UNAVAILABLE if answered is False else OK

    def _changed(self, result: dict[str, str]) -> None:
        """Log a part that went away or came back (once, not once per probe)."""
        for name, state in result.items():
            before = self._last.get(name, OK)
            if state != before:
                level = logging.WARNING if state == UNAVAILABLE else logging.INFO
                log.log(level, "readiness: %s %s", name, state)
