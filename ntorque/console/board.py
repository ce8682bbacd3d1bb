"""The dashboard's queue rows: each named queue of a namespace with its live
figures (read through the Flow, like GET /queues) and its calls per second.

The figures are read at most once per REFRESH_S per namespace and shared by
every page and socket of it, however many ask at once; a pause or resume on
this node makes the next read fresh. Nothing here writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..flow import Flow
from ..queues import NamedQueue
from .calls import CallRate
from .stats import FORGET_S, REFRESH_S

Row = dict[str, Any]


@dataclass
class Read:
    at: float
    queues: list[NamedQueue]


class QueueBoard:
    def __init__(self, flow: Flow, calls: CallRate, clock: Callable[[], float] = time.time):
        self.flow = flow
        self.calls = calls
        self.clock = clock
        self._read: dict[int, Read] = {}
        self._asked: dict[int, float] = {}
        self._reading: dict[int, asyncio.Future[list[NamedQueue]]] = {}

    async def rows(self, namespace: int) -> list[Row]:
        """Every queue of the namespace as the dashboard shows it: its JSON
        (as GET /queues answers) and "calls_per_s" (None until counted)."""
        queues = await self._queues(namespace)
        now = self.flow.clock()
        return [
            named.to_json(now) | {"calls_per_s": self.calls.per_s((namespace, named.name))}
            for named in queues
        ]

    def stale(self, namespace: int) -> None:
        """The namespace's queues changed here: the next read is a fresh one
        (a read under way may predate the change)."""
        self._read.pop(namespace, None)
        self._reading.pop(namespace, None)

    async def _queues(self, namespace: int) -> list[NamedQueue]:
        now = self.clock()
        self._forget(now)
        self._asked[namespace] = now
        read = self._read.get(namespace)
        if read is not None and now - read.at < REFRESH_S:
            return read.queues
        reading = self._reading.get(namespace)
        if reading is None:  # one read per namespace, however many ask
            reading = asyncio.ensure_future(self.flow.queues(namespace))
            self._reading[namespace] = reading
            reading.add_done_callback(lambda done: self._done(namespace, now, done))
        return await asyncio.shield(reading)

    def _done(self, namespace: int, at: float, done: asyncio.Future[list[NamedQueue]]) -> None:
        failed = done.cancelled() or done.exception() is not None  # (its callers saw it)
        if self._reading.get(namespace) is not done:
            return  # made stale meanwhile: its callers have it, nobody else
        del self._reading[namespace]
        if not failed:
            self._read[namespace] = Read(at, done.result())

    def _forget(self, now: float) -> None:
        for namespace in [n for n, asked in self._asked.items() if now - asked > FORGET_S]:
            del self._asked[namespace]
            self._read.pop(namespace, None)
