"""Builders of test data shared by the store, queue and webhook tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ntorque.channel import LocalChannel
from ntorque.events import Events
from ntorque.queue import Queue
from ntorque.store import Store
from ntorque.tasks import NewTask, Outcome, Status, Task, Verdict

NOW = 1_700_000_000.0
LEASE_EXTRA_S = 2.0
MAX_RETRIES = 5
BINARY_BODY = bytes(range(256)) + b"\x00\r\n\xff end"
HASH_A = "a" * 64
HASH_B = "b" * 64
HASH_C = "c" * 64


def spec(**changes: Any) -> NewTask:
    values: dict[str, Any] = {
        "app_id": None,
        "url": "http://127.0.0.1:9/hook",
        "method": "POST",
        "timeout_s": 10,
        "body": b"user_id=1234",
        "content_type": "application/x-www-form-urlencoded",
        "charset": "utf-8",
        "headers": (),
    }
    values.update(changes)
    return NewTask(**values)


def outcome(verdict: Verdict, code: int | None = None, error: str | None = None) -> Outcome:
    return Outcome(verdict, started=NOW, duration_s=0.25, status_code=code, error=error)


DONE = outcome(Verdict.COMPLETED, 200)
BUSY = outcome(Verdict.RETRY, 503, "HTTP 503 Service Unavailable")
GONE = outcome(Verdict.FAILED, 404, "HTTP 404 Not Found")


async def acquire_one(store: Store, task: Task, now: float, max_retries: int = MAX_RETRIES) -> Task:
    (acquired,) = await store.tasks.acquire([task.id], now, LEASE_EXTRA_S, max_retries)
    return acquired


async def finish(store: Store, task: Task, result: Outcome, status: Status, now: float) -> Task:
    """Acquire the task at `now` and settle it with `status` at `now`."""
    acquired = await acquire_one(store, task, now)
    settled = await store.tasks.settle(acquired, result, status, acquired.due, now)
    assert settled is not None
    return settled


class QueueUnderTest:
    def __init__(self, store: Store, clock: Callable[[], float], **options: Any) -> None:
        self.clock = clock
        self.channel = LocalChannel()
        self.events: list[tuple[int, Status, int]] = []
        events = Events()
        events.subscribe(lambda task: self.events.append((task.id, task.status, task.retry_count)))
        settings: dict[str, Any] = {
            "min_due_delay_s": 2.0,
            "max_due_delay_s": 7200.0,
            "max_retries": MAX_RETRIES,
            "backoff_kind": "exponential",
        }
        self.queue = Queue(
            store.tasks, self.channel, events, clock=clock, **{**settings, **options}
        )

    async def popped(self) -> list[int]:
        return await self.channel.pop(100, 0.05)

    async def attempt(self, task: Task, result: Outcome) -> Task | None:
        (acquired,) = await self.queue.acquire([task.id])
        return await self.queue.settle(acquired, result)


async def all_statements(
    engine: AsyncEngine, run: Callable[[], Awaitable[object]]
) -> list[tuple[str, Any]]:
    """Every SQL statement (with its parameters) that `run` sends."""
    seen: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        _conn, _cursor, statement, parameters, _context, _many = args
        seen.append((statement, parameters))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await run()
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", capture)
    return seen
