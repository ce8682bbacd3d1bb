"""What the console's boards share: a value per key (a namespace's queue
rows, a page of its schedules) read at most once per REFRESH_S however many
pages and sockets ask, one read at a time per key.

A change made on this node makes its keys stale: the next ask reads afresh,
and a read under way (which may predate the change) is not kept. Keys nobody
asked about for FORGET_S are dropped. Nothing here writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .stats import FORGET_S, REFRESH_S

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


@dataclass
class Read(Generic[Value]):
    at: float
    value: Value


class SharedReads(Generic[Key, Value]):
    def __init__(
        self, read: Callable[[Key], Awaitable[Value]], clock: Callable[[], float] = time.time
    ) -> None:
        self.read = read
        self.clock = clock
        self._read: dict[Key, Read[Value]] = {}
        self._asked: dict[Key, float] = {}
        self._reading: dict[Key, asyncio.Future[Value]] = {}

    async def get(self, key: Key) -> Value:
        """The key's value, at most REFRESH_S old."""
        now = self.clock()
        self._forget(now)
        self._asked[key] = now
        read = self._read.get(key)
        if read is not None and now - read.at < REFRESH_S:
            return read.value
        reading = self._reading.get(key)
        if reading is None:  # one read per key, however many ask
            reading = asyncio.ensure_future(self.read(key))
            self._reading[key] = reading
            reading.add_done_callback(lambda done: self._done(key, now, done))
        return await asyncio.shield(reading)

    def stale(self, which: Callable[[Key], bool]) -> None:
        """The keys `which` picks changed here: their next ask reads afresh."""
        for key in [key for key in {*self._read, *self._reading} if which(key)]:
            self._read.pop(key, None)
            self._reading.pop(key, None)

    def _done(self, key: Key, at: float, done: asyncio.Future[Value]) -> None:
        failed = done.cancelled() or done.exception() is not None  # (its callers saw it)
        if self._reading.get(key) is not done:
            return  # made stale meanwhile: its callers have it, nobody else
        del self._reading[key]
        if not failed:
            self._read[key] = Read(at, done.result())

    def _forget(self, now: float) -> None:
        for key in [key for key, asked in self._asked.items() if now - asked > FORGET_S]:
            del self._asked[key]
            self._read.pop(key, None)
