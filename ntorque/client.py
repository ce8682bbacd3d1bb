"""Python clients of ntorque's HTTP API: `Client` blocks (standard library
only), `AsyncClient` is awaited (Tornado). The same methods, one per route;
both build their requests and read the answers with `client_requests` (and
raise `client_errors`' exceptions), and only move bytes here.

Also re-exported, for the imports people already have: the transactional
outbox (`transaction`, `Outbox`) and the receiver's `verify`.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from email.message import Message
from typing import Any, TypeVar, Unpack

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from . import client_requests as build
from . import client_schedules as schedule_requests
from .client_errors import (
    ClientError,
    Conflict,
    KeyReused,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from .client_requests import (
    Answer,
    BatchItem,
    Deadline,
    Enqueue,
    EnqueuedTask,
    Filters,
    QueueSettings,
    Request,
    result,
)
from .client_schedules import NewSchedule, ScheduleChanges, ScheduleTask
from .outbox import Outbox, transaction
from .receiver import SignatureError, verify

__all__ = [
    "AsyncClient",
    "BatchItem",
    "Client",
    "ClientError",
    "Conflict",
    "EnqueuedTask",
    "KeyReused",
    "NewSchedule",
    "NotFound",
    "Outbox",
    "PayloadTooLarge",
    "QueueSettings",
    "ScheduleChanges",
    "ScheduleTask",
    "SignatureError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "transaction",
    "verify",
]

T = TypeVar("T")
Task = dict[str, Any]
Queue = dict[str, Any]
Schedule = dict[str, Any]
# Named here: inside the classes, `list` is a method (the listing).
Tasks = list[Task]
Queues = list[Queue]
Attempts = list[dict[str, Any]]
WAIT_S, POLL_S = 60.0, 0.5  # wait()'s defaults


class Client:
    """ntorque's API, blocking. An error answer raises a ClientError (a
    subclass per status: see client_errors); a network failure raises OSError."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def enqueue(
        self, url: str, body: bytes | str = b"", **options: Unpack[Enqueue]
    ) -> EnqueuedTask:
        """Enqueue a task; its JSON once stored. The body is bytes, text
        (encoded in `charset`, or UTF-8), or `json=` any JSON value. With an
        idempotency_key seen before, the earlier task, with `.replayed` True."""
        return self._send(build.enqueue(url, body, options))

    def batch(self, items: Sequence[BatchItem]) -> Tasks:
        """Enqueue up to 1,000 tasks at once, all or none; their JSON in order."""
        return self._send(build.enqueue_batch(items))

    def get(self, task_id: int) -> Task:
        return self._send(build.task(task_id))

    def wait(self, task_id: int, timeout_s: float = WAIT_S, poll_s: float = POLL_S) -> Task:
        """The task once finished (completed, failed or cancelled), polled
        every poll_s; TimeoutError if it is not within timeout_s."""
        deadline = Deadline(task_id, timeout_s, poll_s)
        while not build.finished(task := self.get(task_id)):
            time.sleep(deadline.pause(task))
        return task

    def attempts(self, task_id: int) -> Attempts:
        """The task's attempts, oldest first."""
        return self._send(build.attempts(task_id))

    def push(self, task_id: int) -> Task:
        """Notify a task again (e.g. one added through the outbox)."""
        return self._send(build.action(task_id, "push"))

    def cancel(self, task_id: int) -> Task:
        """Cancel a pending or in-progress task (409 once it has finished)."""
        return self._send(build.action(task_id, "cancel"))

    def retry(self, task_id: int) -> Task:
        """Run a failed or cancelled task again, now, with a fresh allowance."""
        return self._send(build.action(task_id, "retry"))

    def list(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Unpack[Filters]
    ) -> dict[str, Any]:
        """One page of tasks, newest first: {"tasks": [...], "next_cursor": ...}."""
        return self._send(build.tasks(filters, limit, cursor))

    def iter_tasks(
        self, *, page_size: int | None = None, **filters: Unpack[Filters]
    ) -> Iterator[Task]:
        """Every task the filters select, newest first, page after page."""
        cursor = None
        while True:
            page = self.list(limit=page_size, cursor=cursor, **filters)
            yield from page["tasks"]
            if not (cursor := page["next_cursor"]):
                return

    def cancel_many(self, **filters: Unpack[Filters]) -> dict[str, int]:
        """Cancel the tasks the filters select: {"matched": n, "changed": m}."""
        return self._send(build.bulk("cancel", filters))

    def retry_many(self, **filters: Unpack[Filters]) -> dict[str, int]:
        """Retry the tasks the filters select: {"matched": n, "changed": m}."""
        return self._send(build.bulk("retry", filters))

    def queues(self) -> Queues:
        """Every queue of the caller, by name, with its settings and figures."""
        return self._send(build.queues())

    def queue(self, name: str) -> Queue:
        return self._send(build.queue(name))

    def set_queue(self, name: str, **settings: Unpack[QueueSettings]) -> Queue:
        """Replace the queue's settings (made if need be); those left out are reset."""
        return self._send(build.configure_queue(name, "PUT", settings))

    def update_queue(self, name: str, **changes: Unpack[QueueSettings]) -> Queue:
        """Change the settings given (None clears one); the others stay."""
        return self._send(build.configure_queue(name, "PATCH", changes))

    def pause_queue(self, name: str) -> Queue:
        """Start none of its tasks until resumed (calls in flight finish)."""
        return self._send(build.queue_action(name, "pause"))

    def resume_queue(self, name: str) -> Queue:
        return self._send(build.queue_action(name, "resume"))

    def delete_queue(self, name: str) -> None:
        """Forget the queue's settings (409 while unfinished tasks name it)."""
        return self._send(build.delete_queue(name))

    def create_schedule(self, **schedule: Unpack[NewSchedule]) -> Schedule:
        """A recurring task: cron (in timezone) or every_s, and the task each tick enqueues."""
        return self._send(schedule_requests.create_schedule(schedule))

    def schedules(self, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """One page of schedules, newest first: {"schedules": [...], "next_cursor": ...}."""
        return self._send(schedule_requests.schedules(limit, cursor))

    def schedule(self, schedule_id: int) -> Schedule:
        """The schedule, its next_ticks and last_tasks."""
        return self._send(schedule_requests.schedule(schedule_id))

    def update_schedule(self, schedule_id: int, **changes: Unpack[ScheduleChanges]) -> Schedule:
        """Change the fields given; a task replaces the template; a new rule ticks from now."""
        return self._send(schedule_requests.update_schedule(schedule_id, changes))

    def pause_schedule(self, schedule_id: int) -> Schedule:
        """Make no task until resumed."""
        return self._send(schedule_requests.schedule_action(schedule_id, "pause"))

    def resume_schedule(self, schedule_id: int) -> Schedule:
        """Tick again; the ticks missed meanwhile are made as its catch_up says."""
        return self._send(schedule_requests.schedule_action(schedule_id, "resume"))

    def delete_schedule(self, schedule_id: int) -> None:
        """Forget the schedule (the tasks it made stay)."""
        return self._send(schedule_requests.delete_schedule(schedule_id))

    # The names the methods had first.
    task, tasks, enqueue_batch = get, list, batch

    def _send(self, request: Request[T]) -> T:
        sent = urllib.request.Request(
            self.base_url + request.path,
            request.body,
            request.with_key(self.api_key),
            method=request.method,
        )
        try:
            with urllib.request.urlopen(sent, timeout=self.timeout_s) as answer:
                got = Answer(answer.status, _lower(answer.headers), answer.read())
        except urllib.error.HTTPError as error:
            got = Answer(error.code, _lower(error.headers), error.read())
        return result(request, got)


class AsyncClient:
    """ntorque's API, awaited: `Client`'s methods, each a coroutine (iter_tasks
    an async iterator). An error answer raises a ClientError (a subclass per
    status: see client_errors); a network failure raises OSError."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 10,
        http_client: AsyncHTTPClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.http_client = http_client  # None: Tornado's shared client of the running loop

    async def enqueue(
        self, url: str, body: bytes | str = b"", **options: Unpack[Enqueue]
    ) -> EnqueuedTask:
        return await self._send(build.enqueue(url, body, options))

    async def batch(self, items: Sequence[BatchItem]) -> Tasks:
        return await self._send(build.enqueue_batch(items))

    async def get(self, task_id: int) -> Task:
        return await self._send(build.task(task_id))

    async def wait(self, task_id: int, timeout_s: float = WAIT_S, poll_s: float = POLL_S) -> Task:
        deadline = Deadline(task_id, timeout_s, poll_s)
        while not build.finished(task := await self.get(task_id)):
            await asyncio.sleep(deadline.pause(task))
        return task

    async def attempts(self, task_id: int) -> Attempts:
        return await self._send(build.attempts(task_id))

    async def push(self, task_id: int) -> Task:
        return await self._send(build.action(task_id, "push"))

    async def cancel(self, task_id: int) -> Task:
        return await self._send(build.action(task_id, "cancel"))

    async def retry(self, task_id: int) -> Task:
        return await self._send(build.action(task_id, "retry"))

    async def list(
        self, *, limit: int | None = None, cursor: str | None = None, **filters: Unpack[Filters]
    ) -> dict[str, Any]:
        return await self._send(build.tasks(filters, limit, cursor))

    async def iter_tasks(
        self, *, page_size: int | None = None, **filters: Unpack[Filters]
    ) -> AsyncIterator[Task]:
        cursor = None
        while True:
            page = await self.list(limit=page_size, cursor=cursor, **filters)
            for task in page["tasks"]:
                yield task
            if not (cursor := page["next_cursor"]):
                return

    async def cancel_many(self, **filters: Unpack[Filters]) -> dict[str, int]:
        return await self._send(build.bulk("cancel", filters))

    async def retry_many(self, **filters: Unpack[Filters]) -> dict[str, int]:
        return await self._send(build.bulk("retry", filters))

    async def queues(self) -> Queues:
        return await self._send(build.queues())

    async def queue(self, name: str) -> Queue:
        return await self._send(build.queue(name))

    async def set_queue(self, name: str, **settings: Unpack[QueueSettings]) -> Queue:
        return await self._send(build.configure_queue(name, "PUT", settings))

    async def update_queue(self, name: str, **changes: Unpack[QueueSettings]) -> Queue:
        return await self._send(build.configure_queue(name, "PATCH", changes))

    async def pause_queue(self, name: str) -> Queue:
        return await self._send(build.queue_action(name, "pause"))

    async def resume_queue(self, name: str) -> Queue:
        return await self._send(build.queue_action(name, "resume"))

    async def delete_queue(self, name: str) -> None:
        return await self._send(build.delete_queue(name))

    async def create_schedule(self, **schedule: Unpack[NewSchedule]) -> Schedule:
        return await self._send(schedule_requests.create_schedule(schedule))

    async def schedules(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        return await self._send(schedule_requests.schedules(limit, cursor))

    async def schedule(self, schedule_id: int) -> Schedule:
        return await self._send(schedule_requests.schedule(schedule_id))

    async def update_schedule(
        self, schedule_id: int, **changes: Unpack[ScheduleChanges]
    ) -> Schedule:
        return await self._send(schedule_requests.update_schedule(schedule_id, changes))

    async def pause_schedule(self, schedule_id: int) -> Schedule:
        return await self._send(schedule_requests.schedule_action(schedule_id, "pause"))

    async def resume_schedule(self, schedule_id: int) -> Schedule:
        return await self._send(schedule_requests.schedule_action(schedule_id, "resume"))

    async def delete_schedule(self, schedule_id: int) -> None:
        return await self._send(schedule_requests.delete_schedule(schedule_id))

    task, tasks, enqueue_batch = get, list, batch  # the names the methods had first

    async def _send(self, request: Request[T]) -> T:
        try:
            answer = await (self.http_client or AsyncHTTPClient()).fetch(
                self.base_url + request.path,
                method=request.method,
                body=request.body,
                headers=request.with_key(self.api_key),
                request_timeout=self.timeout_s,
                raise_error=False,  # an error answer is returned; no answer still raises
            )
        except HTTPClientError as error:  # 599: timed out, or the connection closed
            raise OSError(f"{request.method} {request.path}: {error}") from error
        return result(request, Answer(answer.code, _lower(answer.headers), answer.body or b""))


def _lower(headers: Message | Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}
