"""The consumer: pop ids -> acquire -> call each web hook -> settle.

One loop pops as many ids as it has free slots and acquires them in one
statement; each acquired task is then performed in its own coroutine, at
most `concurrency` at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .channel import BLOCKING_POP_S
from .errors import StorageUnavailable
from .logs import task_fields
from .queue import Queue
from .tasks import Outcome, Task, loggable_url
from .webhook import Webhook

log = logging.getLogger(__name__)

SETTLE_RETRY_S = 1.0


class Consumer:
    def __init__(
        self,
        queue: Queue,
        webhook: Webhook,
        *,
        concurrency: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.clock = clock
        self.webhook = webhook
        self.concurrency = concurrency
        self.in_flight: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._popping: asyncio.Future[list[int]] | None = None

    async def run(self) -> None:
        """Repeat run_once() until stop(); errors are logged and survived."""
        self.queue.metrics.slots.set(self.concurrency)
        while not self._stopping:
            try:
                await self.run_once()
            except StorageUnavailable:
                log.warning("consumer: database unavailable, retrying in 1s")
                await asyncio.sleep(1)
            except Exception:
                log.exception("consumer: unexpected error, retrying in 1s")
                await asyncio.sleep(1)

    async def run_once(self, pop_timeout_s: float = BLOCKING_POP_S) -> list[Task]:
        """Wait for a free slot, pop ids, acquire them, start their calls."""
        await self._free_slot()
        if self._stopping:
            return []
        free = self.concurrency - len(self.in_flight)
        ids = await self._pop(free, pop_timeout_s)
        if self._stopping:  # stopped while popping: start nothing new, hand the ids back
            await self.queue.channel.push(ids)
            return []
        tasks = await self.queue.acquire(ids) if ids else []
        if self._stopping and tasks:  # stopped while acquiring: start nothing new either
            await self.queue.release(tasks)
            return []
        for task in tasks:
            self._start(task)
        return tasks

    async def _pop(self, limit: int, timeout_s: float) -> list[int]:
        """Up to limit ids. stop() cuts a waiting pop short, so a node stops
        at once; an id lost that way costs only latency (the requeuer re-sends
        every due task)."""
        popping = asyncio.ensure_future(self.queue.channel.pop(limit, timeout_s))
        self._popping = popping
        try:
            await asyncio.wait([popping])
        finally:
            self._popping = None
            popping.cancel()  # this coroutine itself was cancelled: so is the pop
        return [] if popping.cancelled() else popping.result()

    def _start(self, task: Task) -> None:
        job = asyncio.ensure_future(self.perform(task))
        self.in_flight.add(job)
        self.queue.metrics.slots_in_use.inc()
        job.add_done_callback(self._finished)

    def _finished(self, job: asyncio.Task[None]) -> None:
        self.in_flight.discard(job)
        self.queue.metrics.slots_in_use.dec()
        self._slot_freed.set()
        if not job.cancelled() and job.exception() is not None:
            log.error("consumer: a call ended with an error", exc_info=job.exception())

    async def _free_slot(self) -> None:
        while len(self.in_flight) >= self.concurrency and not self._stopping:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    async def perform(self, task: Task) -> None:
        """Call the hook once and settle the task with what came back."""
        log.info(
            "task %s calling attempt=%s %s %s",
            task.id, task.retry_count, task.method, loggable_url(task.url),
            extra=task_fields(task, attempt=task.retry_count),
        )  # fmt: skip
        outcome = await self.webhook.call(task)
        await self._settle(task, outcome)

    async def _settle(self, task: Task, outcome: Outcome) -> None:
        """Settle, retrying while the database is away and the lease still holds.

        When the lease runs out first, the task is simply performed again
        later: at least once, never lost.
        """
        while True:
            try:
                await self.queue.settle(task, outcome)
                return
            except StorageUnavailable:
                if self.clock() + SETTLE_RETRY_S >= task.due:
                    log.warning(
                        "task %s outcome not stored: its lease ran out", task.id,
                        extra=task_fields(task, attempt=task.retry_count),
                    )  # fmt: skip
                    return
                log.warning(
                    "task %s outcome not stored yet: database unavailable", task.id,
                    extra=task_fields(task, attempt=task.retry_count),
                )  # fmt: skip
                await asyncio.sleep(SETTLE_RETRY_S)

    def stop(self) -> None:
        """Stop popping; calls in flight go on."""
        self._stopping = True
        self._slot_freed.set()  # wake a loop waiting for a slot, so it ends now
        if self._popping is not None:
            self._popping.cancel()

    async def drain(self, grace_s: float) -> int:
        """Wait up to grace_s for calls in flight; return how many were cut off."""
        if self.in_flight:
            await asyncio.wait(set(self.in_flight), timeout=grace_s)
        left = len(self.in_flight)
        for job in list(self.in_flight):
            job.cancel()
        return left
