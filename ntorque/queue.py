"""The only writer of task state: enqueue, acquire, settle, requeue, cleanup.

Each operation is one store call, then one event (and, where it says so, one
notification). Handlers and loops call this; nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import backoff
from .batching import Batcher
from .channel import SCHEDULES_CHANGED, Channel
from .events import Events
from .flow import Flow, QueueKey
from .logs import task_fields
from .metrics import Metrics
from .scheduler import Scheduler
from .schedules import Firing, Schedule
from .store.settle import Settlement
from .store.tasks import TaskStore
from .tasks import (
    Keyed,
    NewTask,
    Outcome,
    Status,
    Task,
    TaskFilter,
    Verdict,
    attempt_json,
    iso,
    loggable_url,
)

log = logging.getLogger(__name__)

# The most rows one statement writes (enqueue or settle): large enough to
# absorb a burst, small enough to keep a statement's parameters modest.
MAX_BATCH = 500
BULK_BATCH = 500  # tasks a bulk cancel or retry changes per transaction
TIMER_MARGIN_S = 0.005


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
        lookahead_s: float = 10.0,
        idempotency_window_s: float = 86400.0,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or Metrics()
        self.channel = channel
        self.events = events
        self.min_due_delay_s = min_due_delay_s
        self.max_due_delay_s = max_due_delay_s
        self.max_retries = max_retries
        self.backoff_kind = backoff_kind
        # Tasks falling due within this are notified by a timer (set when they
        # are enqueued, and by the requeuer's look-ahead), not found late.
        self.lookahead_s = lookahead_s
        self.idempotency_window_s = idempotency_window_s
        self.clock = clock
        self._timed: dict[int, float] = {}  # task id -> the due date its timer is for
        self._pushes: set[asyncio.Future[None]] = set()
        self._closed = False
        self.flow = Flow(store.queues, channel, max_retries=max_retries, clock=clock)
        self.scheduler = Scheduler(
            store.schedules, self._fire, self._schedules_changed, clock=clock
        )
        self._inserts = Batcher(self._enqueue_batch, max_batch=MAX_BATCH)
        self._settles = Batcher(self._settle_batch, max_batch=MAX_BATCH)

    async def enqueue(self, spec: NewTask) -> Task:
        """Commit the task, then notify. Returns only once the task is durable.

        Tasks enqueued while a commit is under way share the next one.
        """
        return await self._inserts.submit(spec)

    async def _enqueue_batch(self, specs: list[NewTask]) -> list[Task]:
        created = await self.store.insert_many(specs, self.clock())
        await self._created(created)
        return created

    async def enqueue_keyed(
        self, specs: Sequence[NewTask], keyed: Sequence[Keyed | None], scope: int
    ) -> list[tuple[Task, bool]]:
        """Store tasks in one transaction, all or nothing: (task, replayed) in
        order. A spec whose idempotency key names a task already made from the
        same request answers that task; one made from another raises KeyReused."""
        now = self.clock()
        results = await self.store.keys.insert(
            specs, keyed, scope, now + self.idempotency_window_s, now
        )
        await self._created([task for task, replayed in results if not replayed])
        return results

    async def _created(self, created: list[Task]) -> None:
        """Log, publish and notify new tasks (those due later: when they fall due)."""
        now = self.clock()
        for task in created:
            self.metrics.created(task.queue)
            log.info(
                "task %s enqueued %s %s app=%s%s%s",
                task.id, task.method, loggable_url(task.url), task.app_id,
                f" due_in={task.due - now:.3f}s" if task.due > now else "", _made_by(task, now),
                extra=task_fields(task, status=task.status.value),
            )  # fmt: skip
        self.events.publish_many(created)
        await self.channel.push([task.id for task in created if task.due <= now and not task.held])
        for task in created:
            if now < task.due <= now + self.lookahead_s and not task.held:
                self._notify_at(task.id, task.due)

    async def _fire(self, firings: Sequence[tuple[Schedule, Firing]]) -> dict[int, list[Task]]:
        """Schedules' ticks become tasks, notified like any enqueue's."""
        made = await self.store.fire(firings, self.clock())
        await self._created([task for tasks in made.values() for task in tasks])
        return made

    async def get(self, task_id: int) -> Task | None:
        return await self.store.get(task_id)

    async def attempts(self, task_id: int) -> list[dict[str, Any]]:
        """The task's attempts in order, as JSON."""
        return [attempt_json(row) for row in await self.store.attempts(task_id)]

    async def notify(self, task: Task) -> None:
        """Re-send a task's notification (the client's /push)."""
        log.info("task %s pushed", task.id, extra=task_fields(task))
        await self.channel.push([task.id])

    async def _schedules_changed(self) -> None:
        await self.channel.push([SCHEDULES_CHANGED])

    async def acquire(self, ids: Sequence[int]) -> list[Task]:
        """Lease the due, unfinished tasks among ids; the lease outlasts each timeout."""
        if SCHEDULES_CHANGED in ids:
            self.scheduler.changed.set()
            ids = [task_id for task_id in ids if task_id != SCHEDULES_CHANGED]
        leased = await self.store.lease(ids, self.clock(), self.min_due_delay_s, self.max_retries)
        for wait in leased.waits:  # tasks a rate limit turned away: wake at its next token
            self.flow.wake_at((wait.app_id, wait.queue), wait.until)
        acquired = leased.tasks
        for task in acquired:
            fields = task_fields(task, attempt=task.retry_count)
            log.debug("task %s acquired attempt=%s", task.id, task.retry_count, extra=fields)
        self.events.publish_many(acquired)
        return acquired

    async def release(self, leased: Sequence[Task]) -> None:
        """Give back leases never used (stopped before calling) and notify them again."""
        released = await self.store.release(leased, self.clock())
        for task in released:
            log.info("task %s released unperformed", task.id, extra=task_fields(task))
            self.events.publish(task)
        await self.channel.push([task.id for task in released])
        self.flow.wake_soon(_limited_queues(leased))

    async def settle(self, task: Task, outcome: Outcome) -> Task | None:
        """Record an attempt's outcome; None when a newer attempt owns the task.

        Outcomes arriving while a commit is under way share the next one.
        """
        return await self._settles.submit((task, outcome))

    async def _settle_batch(self, results: list[tuple[Task, Outcome]]) -> list[Task | None]:
        now = self.clock()
        batch = [
            Settlement(task, outcome, *self._next_state(task, outcome, now))
            for task, outcome in results
        ]
        settled, callbacks = await self.store.settle_many(batch, now)
        for item, task in zip(batch, settled, strict=True):
            self._settled(item, task)
        self.events.publish_many([task for task in settled if task is not None])
        await self._callbacks(callbacks)
        # Calls of limited queues ended: room for the tasks waiting there.
        self.flow.wake_soon(_limited_queues(task for task, _ in results))
        return settled

    async def _callbacks(self, callbacks: list[Task]) -> None:
        """Publish and notify the callbacks of tasks that ended."""
        for callback in callbacks:
            self.metrics.created(callback.queue)
            log.info(
                "task %s callback of task %s enqueued", callback.id, callback.callback_of,
                extra=task_fields(callback, status=callback.status.value),
            )  # fmt: skip
        if callbacks:
            self.events.publish_many(callbacks)
            await self.channel.push([callback.id for callback in callbacks])

    def _settled(self, item: Settlement, task: Task | None) -> None:
        outcome = item.outcome
        if task is None:
            log.warning(
                "task %s attempt=%s answered after its lease, or once cancelled",
                item.task.id, item.task.retry_count,
                extra=task_fields(item.task, attempt=item.task.retry_count),
            )  # fmt: skip
            return
        self.metrics.settled(task.queue, task.status, outcome.status_code, outcome.duration_s)
        # An HTTP error's text quotes the hook's answer, which may echo the
        # task's body: the log gets the code alone; the API shows the text.
        error = None if outcome.status_code else outcome.error
        log.info(
            "task %s %s attempt=%s code=%s error=%s duration=%.3fs",
            task.id, task.status, task.retry_count, outcome.status_code,
            error, outcome.duration_s,
            extra=task_fields(
                task, attempt=task.retry_count, status=task.status.value,
                code=outcome.status_code, duration_s=round(outcome.duration_s, 6),
            ),
        )  # fmt: skip
        if task.status is Status.PENDING:
            self._notify_at(task.id, task.due)

    def _notify_at(self, task_id: int, due: float) -> None:
        """Notify a task when it falls due (a retry, a scheduled task). Only a
        shortcut: if this process dies or stops first, the requeuer finds the
        task all the same. One timer per task and due date."""
        if self._timed.get(task_id) == due:
            return
        self._timed[task_id] = due
        loop = asyncio.get_running_loop()
        # A hair after the due date: the timer's clock is not the wall clock
        # the acquire compares due dates with, and early is "not due yet".
        delay = max(due - self.clock(), 0.0) + TIMER_MARGIN_S
        loop.call_later(delay, self._push_soon, task_id, due)

    def _push_soon(self, task_id: int, due: float) -> None:
        if self._timed.get(task_id) == due:
            del self._timed[task_id]
        if self._closed:  # the channel is closed, or closing
            return
        push = asyncio.ensure_future(self.channel.push([task_id]))
        self._pushes.add(push)
        push.add_done_callback(self._pushes.discard)

    def _next_state(self, task: Task, outcome: Outcome, now: float) -> tuple[Status, float]:
        if outcome.verdict is Verdict.COMPLETED:
            return Status.COMPLETED, task.due
        limit = task.attempt_limit(self.max_retries)
        if outcome.verdict is Verdict.FAILED or task.retry_count >= limit:
            return Status.FAILED, task.due
        wait = backoff.delay_s(
            task.retry_count - task.attempts_before,
            kind=task.backoff or self.backoff_kind,
            min_s=self.min_due_delay_s,
            max_s=self.max_due_delay_s,
        )
        # The hook's Retry-After is a floor, within the longest wait there is.
        asked = min(outcome.retry_after_s or 0.0, self.max_due_delay_s)
        return Status.PENDING, now + max(wait, asked)

    async def close(self) -> None:
        """Notify no more retries; wait for the notifications under way."""
        self._closed = True
        await self.flow.close()
        if self._pushes:
            await asyncio.wait(set(self._pushes))

    async def requeue(self, limit: int) -> int:
        """Re-notify due tasks (retries, and tasks whose consumer died)."""
        now = self.clock()
        soonest = await self.store.soonest_due()
        if soonest is None or soonest > now + self.lookahead_s:
            # Nothing due or falling due soon: nothing to expire, notify, time
            # or wake. An idle node's round stops at this one read.
            return 0
        expired, callbacks = await self.store.expire(now, self.max_retries)
        for task in expired:
            fields = task_fields(task, attempt=task.retry_count, status=task.status.value)
            log.warning("task %s failed: %s", task.id, task.last_error, extra=fields)
            self.events.publish(task)
        await self._callbacks(callbacks)
        ids = await self.store.due_ids(now, limit, self.max_retries)
        if ids:
            log.info("requeue notified %s due tasks, oldest %s", len(ids), ids[0])
            await self.channel.push(ids)
        upcoming = await self.store.upcoming(now, now + self.lookahead_s, limit, self.max_retries)
        for task_id, due in upcoming:
            self._notify_at(task_id, due)
        # Limited queues are not in due_ids: each is woken with what its
        # limits let start (after a crash no settle wakes them).
        woken = [await self.flow.wake(key) for key in await self.store.queues.limited_with_due(now)]
        return len(ids) + sum(woken)

    async def cleanup(self, older_than_s: float, limit: int) -> int:
        """Delete up to limit finished tasks older than older_than_s."""
        deleted = await self.store.cleanup(self.clock() - older_than_s, limit)
        forgotten = await self.store.keys.forget_expired(self.clock())
        if forgotten:
            log.info("cleanup forgot %s expired idempotency keys", forgotten)
        if deleted:
            log.info("cleanup deleted %s finished tasks", deleted)
        return deleted

    # -- control: cancel, retry, run now, list ----------------------------------

    async def cancel(self, ids: Sequence[int]) -> list[Task]:
        """Cancel the pending or in-progress tasks among ids; the cancelled ones."""
        cancelled, callbacks = await self.store.control.cancel(ids, self.clock())
        for task in cancelled:
            log.info("task %s cancelled", task.id, extra=task_fields(task, status="cancelled"))
        self.events.publish_many(cancelled)
        await self._callbacks(callbacks)
        return cancelled

    async def retry(self, ids: Sequence[int]) -> list[Task]:
        """Run the failed or cancelled tasks among ids again now, with a fresh
        allowance of attempts; the retried ones."""
        retried = await self.store.control.retry(ids, self.clock())
        for task in retried:
            log.info(
                "task %s retried attempts_so_far=%s", task.id, task.retry_count,
                extra=task_fields(task, attempt=task.retry_count),
            )  # fmt: skip
        self.events.publish_many(retried)
        await self.channel.push([task.id for task in retried])
        return retried

    async def run_now(self, task: Task) -> Task | None:
        """A pending task (waiting for a retry or its time) is due now; None
        when it is not pending (any more)."""
        ran = await self.store.run_now(task.id, self.clock())
        if ran is not None:
            log.info("task %s due now", ran.id, extra=task_fields(ran))
            self.events.publish(ran)
            await self.channel.push([ran.id])
        return ran

    async def listing(
        self, selection: TaskFilter, limit: int, before_id: int | None = None
    ) -> list[Task]:
        return await self.store.listing.page(selection, limit, before_id)

    async def bulk(self, selection: TaskFilter, action: str) -> tuple[int, int]:
        """Cancel or retry every task the selection matches, BULK_BATCH at a
        time, each batch its own short transaction: (matched, changed)."""
        act = self.cancel if action == "cancel" else self.retry
        matched = changed = 0
        before_id: int | None = None
        while ids := await self.store.listing.ids(selection, BULK_BATCH, before_id):
            matched += len(ids)
            changed += len(await act(ids))
            before_id = ids[-1]
        log.info("bulk %s matched=%s changed=%s", action, matched, changed)
        return matched, changed


def _made_by(task: Task, now: float) -> str:
    """The schedule and tick that made a task, and how late."""
    if task.schedule_id is None or task.schedule_tick is None:
        return ""
    late = now - task.schedule_tick
    return f" schedule={task.schedule_id} tick={iso(task.schedule_tick)} late={late:.3f}s"


def _limited_queues(tasks: Iterable[Task]) -> set[QueueKey]:
    """The queues of tasks leased under a limit."""
    return {(task.app_id or 0, task.queue) for task in tasks if task.limited}
