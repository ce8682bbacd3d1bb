"""The only writer of task state: enqueue, acquire, settle, requeue, cleanup.

Each operation is one store call, then one event (and, where it says so, one
notification). Handlers and loops call this; nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import backoff
from .batching import Batcher
from .channel import Channel
from .events import Events
from .store.settle import Settlement
from .store.tasks import TaskStore
from .tasks import NewTask, Outcome, Status, Task, Verdict, iso, loggable_url

log = logging.getLogger(__name__)

# The most rows one statement writes (enqueue or settle): large enough to
# absorb a burst, small enough to keep a statement's parameters modest.
MAX_BATCH = 500
CANCELLED = "cancelled in the console"  # the last_error of a cancelled task


class Queue:
    def __init__(
        self,
        store: TaskStore,
        channel: Channel,
        events: Events,
        *,
        min_due_delay_s: float,
        max_due_delay_s: float,
        max_retries: int,
        backoff_kind: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.channel = channel
        self.events = events
        self.min_due_delay_s = min_due_delay_s
        self.max_due_delay_s = max_due_delay_s
        self.max_retries = max_retries
        self.backoff_kind = backoff_kind
        self.clock = clock
        self._pushes: set[asyncio.Future[None]] = set()
        self._closed = False
        self._inserts = Batcher(self._enqueue_batch, max_batch=MAX_BATCH)
        self._settles = Batcher(self._settle_batch, max_batch=MAX_BATCH)

    async def enqueue(self, spec: NewTask) -> Task:
        """Commit the task, then notify. Returns only once the task is durable.

        Tasks enqueued while a commit is under way share the next one.
        """
        return await self._inserts.submit(spec)

    async def _enqueue_batch(self, specs: list[NewTask]) -> list[Task]:
        created = await self.store.insert_many(specs, self.clock())
        for task in created:
            log.info(
                "task %s enqueued %s %s app=%s",
                task.id, task.method, loggable_url(task.url), task.app_id,
            )  # fmt: skip
        self.events.publish_many(created)
        await self.channel.push([task.id for task in created])
        return created

    async def get(self, task_id: int) -> Task | None:
        return await self.store.get(task_id)

    async def attempts(self, task_id: int) -> list[dict[str, Any]]:
        """The task's attempts in order, as JSON."""
        return [
            {
                "number": row["number"],
                "started": iso(row["started"]),
                "duration_s": round(row["duration_s"], 6),
                "status_code": row["status_code"],
                "error": row["error"],
            }
            for row in await self.store.attempts(task_id)
        ]

    async def notify(self, task: Task) -> None:
        """Re-send a task's notification (the client's /push)."""
        log.info("task %s pushed", task.id)
        await self.channel.push([task.id])

    async def acquire(self, ids: Sequence[int]) -> list[Task]:
        """Lease the due, unfinished tasks among ids; the lease outlasts each timeout."""
        acquired = await self.store.acquire(
            ids, self.clock(), self.min_due_delay_s, self.max_retries
        )
        for task in acquired:
            log.debug("task %s acquired attempt=%s", task.id, task.retry_count)
        self.events.publish_many(acquired)
        return acquired

    async def release(self, leased: Sequence[Task]) -> None:
        """Give back leases never used (stopped before calling) and notify them again."""
        released = await self.store.release(leased, self.clock())
        for task in released:
            log.info("task %s released unperformed", task.id)
            self.events.publish(task)
        await self.channel.push([task.id for task in released])

    async def settle(self, task: Task, outcome: Outcome) -> Task | None:
        """Record an attempt's outcome; None when a newer attempt owns the task.

        Outcomes arriving while a commit is under way share the next one.
        """
        return await self._settles.submit((task, outcome))

    async def _settle_batch(self, results: list[tuple[Task, Outcome]]) -> list[Task | None]:
        now = self.clock()
        batch = [
            Settlement(task, outcome, *self._next_state(task, outcome.verdict, now))
            for task, outcome in results
        ]
        settled = await self.store.settle_many(batch, now)
        for item, task in zip(batch, settled, strict=True):
            self._settled(item, task)
        self.events.publish_many([task for task in settled if task is not None])
        return settled

    def _settled(self, item: Settlement, task: Task | None) -> None:
        outcome = item.outcome
        if task is None:
            log.warning(
                "task %s attempt=%s answered after its lease", item.task.id, item.task.retry_count
            )
            return
        # An HTTP error's text quotes the hook's answer, which may echo the
        # task's body: the log gets the code alone; the API shows the text.
        error = None if outcome.status_code else outcome.error
        log.info(
            "task %s %s attempt=%s code=%s error=%s duration=%.3fs",
            task.id, task.status, task.retry_count, outcome.status_code,
            error, outcome.duration_s,
        )  # fmt: skip
        if task.status is Status.PENDING:
            self._notify_at(task)

    def _notify_at(self, task: Task) -> None:
        """Notify a retry when it falls due. Only a shortcut: if this process
        dies or stops first, the requeuer finds the task all the same."""
        loop = asyncio.get_running_loop()
        delay = max(task.due - self.clock(), 0.0)
        loop.call_later(delay, self._push_soon, task.id)

    def _push_soon(self, task_id: int) -> None:
        if self._closed:  # the channel is closed, or closing
            return
        push = asyncio.ensure_future(self.channel.push([task_id]))
        self._pushes.add(push)
        push.add_done_callback(self._pushes.discard)

    def _next_state(self, task: Task, verdict: Verdict, now: float) -> tuple[Status, float]:
        if verdict is Verdict.COMPLETED:
            return Status.COMPLETED, task.due
        if verdict is Verdict.FAILED or task.retry_count >= self.max_retries:
            return Status.FAILED, task.due
        wait = backoff.delay_s(
            task.retry_count,
            kind=self.backoff_kind,
            min_s=self.min_due_delay_s,
            max_s=self.max_due_delay_s,
        )
        return Status.PENDING, now + wait

    async def close(self) -> None:
        """Notify no more retries; wait for the notifications under way."""
        self._closed = True
        if self._pushes:
            await asyncio.wait(set(self._pushes))

    async def requeue(self, limit: int) -> int:
        """Re-notify due tasks (retries, and tasks whose consumer died)."""
        now = self.clock()
        for task in await self.store.expire(now, self.max_retries):
            log.warning("task %s failed: %s", task.id, task.last_error)
            self.events.publish(task)
        ids = await self.store.due_ids(now, limit, self.max_retries)
        if ids:
            log.info("requeue notified %s due tasks, oldest %s", len(ids), ids[0])
            await self.channel.push(ids)
        return len(ids)

    async def cleanup(self, older_than_s: float, limit: int) -> int:
        """Delete up to limit finished tasks older than older_than_s."""
        deleted = await self.store.cleanup(self.clock() - older_than_s, limit)
        if deleted:
            log.info("cleanup deleted %s finished tasks", deleted)
        return deleted

    # -- the console's actions ------------------------------------------------

    async def retry_now(self, task: Task) -> Task | None:
        """Run a failed or pending task now, with one more attempt at least;
        None when it is neither (any more)."""
        retried = await self.store.retry_now(task.id, self.clock(), self.max_retries - 1)
        if retried is not None:
            log.info("task %s retried from the console", retried.id)
            self.events.publish(retried)
            await self.channel.push([retried.id])
        return retried

    async def cancel(self, task: Task) -> Task | None:
        """Fail a pending task for good; None when it is not pending (any more)."""
        cancelled = await self.store.cancel(task.id, self.clock(), CANCELLED)
        if cancelled is not None:
            log.info("task %s cancelled from the console", cancelled.id)
            self.events.publish(cancelled)
        return cancelled
