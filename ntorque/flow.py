"""Named queues at work: their settings, and the wake-ups that start the
tasks waiting for a limit.

A task a limit turned away costs nothing while it waits: no timer, no
polling. Its queue is woken when the limit may let it through: when a call
of that queue settles (room again), when a rate-limited queue's next token
is due (the acquire says when), on resume or a change of settings, and by
the requeuer (leases of crashed nodes run out with no settle). A wake-up
notifies the queue's oldest due tasks, as many as its limits would start
now; the acquire still decides, so a wake-up on two nodes at once is only
a duplicate notification.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from .channel import Channel
from .errors import StorageUnavailable
from .queues import NamedQueue, QueueSettings
from .store.queues import QueueStore

log = logging.getLogger(__name__)

QueueKey = tuple[int, str]  # (app_id, or 0 with no application; name)
WAKE_MARGIN_S = 0.002  # a hair after a token is due: early is "no token yet"
WAKE_BATCH = 500  # ids read and notified at a time
MAX_WOKEN = 100_000  # by one wake-up (a resumed queue): the requeuer finds any more


class Flow:
    def __init__(
        self,
        store: QueueStore,
        channel: Channel,
        *,
        max_retries: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.channel = channel
        self.max_retries = max_retries
        self.clock = clock
        self._timers: dict[QueueKey, asyncio.TimerHandle] = {}
        self._waking: set[QueueKey] = set()
        self._again: set[QueueKey] = set()
        self._jobs: set[asyncio.Future[None]] = set()
        self._closed = False

    # -- settings ------------------------------------------------------------

    async def queues(self, app_id: int) -> list[NamedQueue]:
        return await self.store.page(app_id, self.clock())

    async def get(self, app_id: int, name: str) -> NamedQueue | None:
        return await self.store.get(app_id, name, self.clock())

    async def configure(self, app_id: int, name: str, settings: QueueSettings) -> NamedQueue:
        """Store the settings; wake the queue (its limits may have grown)."""
        await self.store.put(app_id, name, settings, self.clock())
        log.info("queue %s app=%s configured %s", name, app_id, settings.to_json())
        self.wake_soon([(app_id, name)])
        return await self._got(app_id, name)

    async def pause(self, app_id: int, name: str) -> NamedQueue:
        await self.store.set_paused(app_id, name, True, self.clock())
        log.info("queue %s app=%s paused", name, app_id)
        return await self._got(app_id, name)

    async def resume(self, app_id: int, name: str) -> NamedQueue:
        await self.store.set_paused(app_id, name, False, self.clock())
        log.info("queue %s app=%s resumed", name, app_id)
        self.wake_soon([(app_id, name)])
        return await self._got(app_id, name)

    async def delete(self, app_id: int, name: str) -> bool | None:
        """True: forgotten; False: it has unfinished tasks; None: no such queue."""
        deleted = await self.store.delete(app_id, name)
        if deleted:
            log.info("queue %s app=%s deleted", name, app_id)
        return deleted

    async def _got(self, app_id: int, name: str) -> NamedQueue:
        found = await self.get(app_id, name)
        assert found is not None  # it has a row: just written
        return found

    # -- wake-ups ------------------------------------------------------------

    def wake_at(self, key: QueueKey, when: float) -> None:
        """Wake the queue at `when` (its next token); the earliest timer wins."""
        if self._closed:
            return
        timer = self._timers.get(key)
        loop = asyncio.get_running_loop()
        delay = max(when - self.clock(), 0.0) + WAKE_MARGIN_S
        if timer is not None and timer.when() <= loop.time() + delay:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_later(delay, self._timer_fired, key)

    def _timer_fired(self, key: QueueKey) -> None:
        self._timers.pop(key, None)
        self.wake_soon([key])

    def wake_soon(self, keys: Iterable[QueueKey]) -> None:
        """Wake the queues now, in the background; a queue already being
        woken is woken once more after (what settled meanwhile counts)."""
        for key in set(keys):
            if self._closed:
                return
            if key in self._waking:
                self._again.add(key)
                continue
            self._waking.add(key)
            job = asyncio.ensure_future(self._wake(key))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _wake(self, key: QueueKey) -> None:
        try:
            while True:
                self._again.discard(key)
                await self.wake(key)
                if key not in self._again or self._closed:
                    return
        except StorageUnavailable:
            log.warning("queue %s app=%s not woken: database unavailable", key[1], key[0])
        except Exception:
            log.exception("queue %s app=%s not woken: unexpected error", key[1], key[0])
        finally:
            self._waking.discard(key)

    async def wake(self, key: QueueKey) -> int:
        """Notify the queue's due tasks its limits would start now: with no
        limit (a resumed queue), all of them, a batch at a time."""
        app_id, name = key
        now = self.clock()
        woken = 0
        after = None
        while woken < MAX_WOKEN:
            ready = await self.store.ready(app_id, name, now, self.max_retries, WAKE_BATCH, after)
            await self.channel.push(ready.ids)
            woken += len(ready.ids)
            if not ready.unlimited or len(ready.ids) < WAKE_BATCH:
                break
            after = ready.last
        if woken:
            log.debug("queue %s app=%s woke %s tasks", name, app_id, woken)
        return woken

    async def close(self) -> None:
        """No more wake-ups; wait for those under way."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._jobs:
            await asyncio.wait(set(self._jobs))
