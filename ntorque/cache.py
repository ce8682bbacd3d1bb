"""A small time-limited cache for lookups on the hot path (keys, policies,
signing secrets), with one load in flight per key.

Without the single flight, every request arriving while an entry is being
(re)loaded would query the database too: under load, all ~100 calls in
flight at once, each time an entry expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class TtlCache(Generic[Key, Value]):
    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[Key, tuple[float, Value]] = {}
        self._loading: dict[Key, asyncio.Future[Value]] = {}

    async def get(self, key: Key, load: Callable[[], Awaitable[Value]]) -> Value:
        """The cached value, or load()'s, shared with whoever asks meanwhile."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self.clock():
            return entry[1]
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key, load))
            loading.add_done_callback(_retrieve)  # a failure nobody awaits is no warning
            self._loading[key] = loading
        return await asyncio.shield(loading)

    async def _load(self, key: Key, load: Callable[[], Awaitable[Value]]) -> Value:
        try:
            value = await load()
        finally:
            del self._loading[key]
        if self.ttl_s > 0:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (self.clock() + self.ttl_s, value)
        return value

    def forget(self, key: Key) -> None:
        self._entries.pop(key, None)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
