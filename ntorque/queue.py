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
from .channel import Channel
from .events import Events
from .store import Store
from .tasks import NewTask, Outcome, Status, Task, Verdict, iso

log = logging.getLogger(__name__)


class Queue:
    def __init__(
        self,
        store: Store,
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

    async def enqueue(self, spec: NewTask) -> Task:
        """Commit the task, then notify. Returns only once the task is durable."""
        task = await self.store.insert(spec, self.clock())
        log.info("task %s enqueued %s %s app=%s", task.id, task.method, task.url, task.app_id)
        await self.channel.push([task.id])
        self.events.publish(task)
        return task

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
            log.info("task %s acquired attempt=%s", task.id, task.retry_count)
            self.events.publish(task)
        return acquired

    async def release(self, leased: Sequence[Task]) -> None:
        """Give back leases never used (stopped before calling) and notify them again."""
        released = await self.store.release(leased, self.clock())
        for task in released:
            log.info("task %s released unperformed", task.id)
            self.events.publish(task)
        await self.channel.push([task.id for task in released])

    async def settle(self, task: Task, outcome: Outcome) -> Task | None:
        """Record an attempt's outcome; None when a newer attempt owns the task."""
        now = self.clock()
        status, due = self._next_state(task, outcome.verdict, now)
        settled = await self.store.settle(task, outcome, status, due, now)
        if settled is None:
            log.warning("task %s attempt=%s answered after its lease", task.id, task.retry_count)
            return None
        log.info(
            "task %s %s attempt=%s code=%s error=%s duration=%.3fs",
            task.id, settled.status, task.retry_count, outcome.status_code,
            outcome.error, outcome.duration_s,
        )  # fmt: skip
        self.events.publish(settled)
        if settled.status is Status.PENDING:
            self._notify_at(settled)
        return settled

    def _notify_at(self, task: Task) -> None:
        """Notify a retry when it falls due. Only a shortcut: if this process
        dies first, the requeuer finds the task all the same."""
        loop = asyncio.get_running_loop()
        delay = max(task.due - self.clock(), 0.0)
        loop.call_later(delay, self._push_soon, task.id)

    def _push_soon(self, task_id: int) -> None:
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
