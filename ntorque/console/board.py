"""The dashboard's queue rows: each named queue of a namespace with its live
figures (read through the Flow, like GET /queues) and its calls per second.

The figures are read at most once per REFRESH_S per namespace and shared by
every page and socket of it, however many ask at once (see shared.py); a
pause or resume on this node makes the next read fresh. Nothing here writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..flow import Flow
from ..queues import NamedQueue
from .calls import CallRate
from .shared import SharedReads

Row = dict[str, Any]


class QueueBoard:
    def __init__(self, flow: Flow, calls: CallRate, clock: Callable[[], float] = time.time):
        self.flow = flow
        self.calls = calls
        self._queues: SharedReads[int, list[NamedQueue]] = SharedReads(self._read, clock)

    async def rows(self, namespace: int) -> list[Row]:
        """Every queue of the namespace as the dashboard shows it: its JSON
        (as GET /queues answers) and "calls_per_s" (None until counted)."""
        queues = await self._queues.get(namespace)
        now = self.flow.clock()
        return [
            named.to_json(now) | {"calls_per_s": self.calls.per_s((namespace, named.name))}
            for named in queues
        ]

    def stale(self, namespace: int) -> None:
        """The namespace's queues changed here: the next read is a fresh one
        (a read under way may predate the change)."""
        self._queues.stale(lambda shown: shown == namespace)

    async def _read(self, namespace: int) -> list[NamedQueue]:
        return await self.flow.queues(namespace)
