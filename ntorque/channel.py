"""The notification channel: carries task ids, never tasks.

A lost notification costs only latency (the requeuer re-sends due ids), so
`push` never raises. With Redis down, notifications fall back to this
process's own in-memory channel and its consumers go on working.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger(__name__)

# How long a blocking pop waits before it asks again: an idle consumer wakes
# once per this. Not a latency (an id wakes it at once) nor a delay in
# stopping (a stop cuts the pop short); it is how long the in-memory
# fallback waits before it looks whether a Redis that was down is back.
BLOCKING_POP_S = 5.0
# Not a task id (ids start at 1): "a schedule changed". Whichever worker pops
# it has its ticker look again at once (see Scheduler); the acquire drops it.
SCHEDULES_CHANGED = 0


class Channel(Protocol):
    async def push(self, ids: Sequence[int]) -> None: ...

    async def pop(self, limit: int, timeout_s: float = BLOCKING_POP_S) -> list[int]:
        """Up to `limit` ids; waits up to timeout_s for the first one."""
        ...

    async def depth(self) -> int: ...

    async def ping(self) -> bool:
        """Whether the channel's server answers (the readiness check)."""
        ...

    async def close(self) -> None: ...


class LocalChannel:
    """An in-process FIFO: the embedded default for a single node."""

    def __init__(self) -> None:
        self._ids: collections.deque[int] = collections.deque()
        self._ready = asyncio.Event()

    async def push(self, ids: Sequence[int]) -> None:
        self.push_nowait(ids)

    def push_nowait(self, ids: Iterable[int]) -> None:
        self._ids.extend(ids)
        if self._ids:
            self._ready.set()

    async def pop(self, limit: int, timeout_s: float = BLOCKING_POP_S) -> list[int]:
        if not self._ids:
            try:
                await asyncio.wait_for(self._ready.wait(), timeout_s)
            except TimeoutError:
                return []
        return self.pop_nowait(limit)

    def pop_nowait(self, limit: int) -> list[int]:
        taken = [self._ids.popleft() for _ in range(min(limit, len(self._ids)))]
        if not self._ids:
            self._ready.clear()
        return taken

    async def depth(self) -> int:
        return len(self._ids)

    async def ping(self) -> bool:
        return True  # this process is its server

    async def close(self) -> None:
        self._ids.clear()


class RedisChannel:
    """A Redis list: RPUSH after commit, BLPOP by consumers, FIFO across nodes.

    Blocking pops use a client of their own, so pushes from the API never
    wait behind them.
    """

    def __init__(self, url: str, name: str, failed: Callable[[], None] = lambda: None) -> None:
        self.name = name
        self.failed = failed  # told of each Redis error, answered from the fallback (metrics)
        self._pusher = redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._popper = redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=BLOCKING_POP_S + 5
        )
        self._fallback = LocalChannel()
        self._down = False
        self._multi_pop = True  # BLMPOP (Redis 7): the first id and more in one round trip

    async def push(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        try:
            await self._pusher.rpush(self.name, *ids)
        except (RedisError, OSError) as error:
            self._went_down(error)
            self._fallback.push_nowait(ids)

    async def pop(self, limit: int, timeout_s: float = BLOCKING_POP_S) -> list[int]:
        local = self._fallback.pop_nowait(limit)
        if local:
            return local
        try:
            ids = await self._pop(limit, timeout_s)
        except (RedisError, OSError) as error:
            self._went_down(error)
            return await self._fallback.pop(limit, timeout_s)
        self._came_back()
        return ids

    async def _pop(self, limit: int, timeout_s: float) -> list[int]:
        if timeout_s <= 0:  # no waiting (BLPOP would take 0 as "wait for ever")
            taken = await self._popper.lpop(self.name, limit)
            return list(_ids(taken if isinstance(taken, list) else []))
        if self._multi_pop:
            try:
                return await self._blmpop(limit, timeout_s)
            except ResponseError as error:  # an older Redis: two commands, as before 7.0
                log.info("channel: BLMPOP not available (%s), using BLPOP and LPOP", error)
                self._multi_pop = False
        first = await self._popper.blpop([self.name], timeout=timeout_s)
        if first is None:
            return []
        payloads = [first[1]]
        if limit > 1:
            more = await self._popper.lpop(self.name, limit - 1)
            payloads += more if isinstance(more, list) else []
        return list(_ids(payloads))

    async def _blmpop(self, limit: int, timeout_s: float) -> list[int]:
        popped = await self._popper.blmpop(timeout_s, 1, self.name, direction="LEFT", count=limit)
        payloads = popped[1] if popped else []  # [list name, [payloads]], or nil on timeout
        return list(_ids(payloads if isinstance(payloads, list) else [payloads]))

    async def depth(self) -> int:
        try:
            return int(await self._pusher.llen(self.name)) + await self._fallback.depth()
        except (RedisError, OSError) as error:
            self._went_down(error)
            return await self._fallback.depth()

    async def ping(self) -> bool:
        """PING on the pushers' client. Not a fallback: a node whose Redis is
        down still works alone, but is not ready for its share of the work."""
        try:
            return bool(await self._pusher.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._pusher.aclose()
        await self._popper.aclose()

    def _went_down(self, error: Exception) -> None:
        self.failed()
        if not self._down:
            log.warning("channel redis unavailable, using this process's own channel: %s", error)
        self._down = True

    def _came_back(self) -> None:
        if self._down:
            log.info("channel redis available again")
        self._down = False


def _ids(payloads: Iterable[bytes | str]) -> Iterable[int]:
    """Task ids from payloads; "<id>:<retry_count>" (the original's form) too."""
    for payload in payloads:
        try:
            text = payload.decode("ascii", "replace") if isinstance(payload, bytes) else payload
            yield int(text.split(":", 1)[0])
        except ValueError:
            log.warning("channel dropped a payload that is no task id: %.40r", payload)


def make_channel(redis_url: str, name: str, failed: Callable[[], None] = lambda: None) -> Channel:
    return RedisChannel(redis_url, name, failed) if redis_url else LocalChannel()
