"""The consumer driven by hand: pop -> acquire -> call the hook -> settle;
duplicates, retries through the channel, and stopping."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ntorque.channel import BLOCKING_POP_S, Channel, LocalChannel
from ntorque.consumer import Consumer
from ntorque.events import Events
from ntorque.queue import Queue
from ntorque.store import Store
from ntorque.tasks import NewTask, Status, Task
from ntorque.webhook import Webhook, make_client
from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode

MAX_RETRIES = 5
TRANSIENT_CODES = (408, 423, 429, 449)
QUICK_S = 0.05  # how long a pop waits when nothing is expected

# -- the consumer ----------------------------------------------------------------


class Pipeline:
    """A real store, an in-process channel, a real web-hook client, one consumer."""

    def __init__(self, store: Store, *, concurrency: int = 10, **options: Any) -> None:
        self.store = store
        self.channel = LocalChannel()
        settings: dict[str, Any] = {
            "min_due_delay_s": 2.0,
            "max_due_delay_s": 7200.0,
            "max_retries": MAX_RETRIES,
            "backoff_kind": "exponential",
        }
        self.queue = Queue(store.tasks, self.channel, Events(), **{**settings, **options})
        self.client = make_client(10)
        self.webhook = Webhook(
            self.client, max_retries=MAX_RETRIES, transient_codes=TRANSIENT_CODES, ca_certs=None
        )
        self.consumer = self.new_consumer(concurrency)

    def new_consumer(self, concurrency: int) -> Consumer:
        return Consumer(self.queue, self.webhook, concurrency=concurrency)

    async def enqueue(self, url: str, body: bytes = b"user_id=1234", **changes: Any) -> Task:
        values: dict[str, Any] = {
            "app_id": None,
            "url": url,
            "method": "POST",
            "timeout_s": 10,
            "body": body,
            "content_type": "application/x-www-form-urlencoded",
            "charset": "utf-8",
            "headers": (),
        }
        return await self.queue.enqueue(NewTask(**{**values, **changes}))

    async def stored(self, task: Task) -> Task:
        stored = await self.store.tasks.get(task.id)
        assert stored is not None
        return stored


@pytest.fixture
async def pipeline(store: Store) -> AsyncIterator[Pipeline]:
    pipeline = Pipeline(store)
    try:
        yield pipeline
    finally:
        pipeline.client.close()


def hook_path(route: str) -> str:
    return f"/{route}/consumer-{uuid.uuid4().hex}"


async def test_consumer_pops_acquires_calls_and_settles(
    pipeline: Pipeline, hooks: HookServer
) -> None:
    path = hook_path("status/200")
    task = await pipeline.enqueue(
        hooks.url(path),
        b"\x00binary\xff",
        method="PUT",
        content_type="application/octet-stream",
        headers=(("X-Trace", "t-1"),),
    )

    started = await pipeline.consumer.run_once(pop_timeout_s=5)

    assert [(t.id, t.status, t.retry_count) for t in started] == [(task.id, Status.IN_PROGRESS, 1)]
    assert await pipeline.consumer.drain(30) == 0
    done = await pipeline.stored(task)
    assert (done.status, done.retry_count, done.last_status_code) == (Status.COMPLETED, 1, 200)
    (call,) = hooks.calls(path)
    assert call.method == "PUT"
    assert call.body == b"\x00binary\xff"
    assert call.headers["content-type"] == "application/octet-stream; charset=utf-8"
    assert call.headers["x-trace"] == "t-1"
    assert call.headers["ntorque-task-id"] == str(task.id)
    assert call.headers["ntorque-task-retry-count"] == "0"
    assert call.headers["ntorque-task-retry-limit"] == str(MAX_RETRIES)
    (attempt,) = await pipeline.store.tasks.attempts(task.id)
    assert (attempt["number"], attempt["status_code"], attempt["error"]) == (1, 200, None)


async def test_consumer_with_nothing_to_do_starts_nothing(pipeline: Pipeline) -> None:
    assert await pipeline.consumer.run_once(pop_timeout_s=QUICK_S) == []
    assert pipeline.consumer.in_flight == set()


async def test_duplicate_notification_in_one_pop_calls_the_hook_once(
    pipeline: Pipeline, hooks: HookServer
) -> None:
    path = hook_path("status/200")
    task = await pipeline.enqueue(hooks.url(path))
    await pipeline.channel.push([task.id])  # e.g. the client's /push, or the requeuer

    started = await pipeline.consumer.run_once(pop_timeout_s=5)
    assert [t.id for t in started] == [task.id]
    await pipeline.consumer.drain(30)

    assert await pipeline.consumer.run_once(pop_timeout_s=QUICK_S) == []
    assert len(hooks.calls(path)) == 1
    assert (await pipeline.stored(task)).status is Status.COMPLETED


async def test_duplicate_notification_to_two_consumers_calls_the_hook_once(
    pipeline: Pipeline, hooks: HookServer
) -> None:
    path = hook_path("slow/0.3")
    task = await pipeline.enqueue(hooks.url(path))
    await pipeline.channel.push([task.id])
    first = pipeline.new_consumer(concurrency=1)
    second = pipeline.new_consumer(concurrency=1)

    taken = await asyncio.gather(first.run_once(5), second.run_once(5))

    assert sorted(len(tasks) for tasks in taken) == [0, 1]
    assert await pipeline.channel.depth() == 0
    await asyncio.gather(first.drain(30), second.drain(30))
    await pipeline.channel.push([task.id])  # a late duplicate, after the call
    assert await second.run_once(5) == []
    assert len(hooks.calls(path)) == 1
    done = await pipeline.stored(task)
    assert (done.status, done.retry_count) == (Status.COMPLETED, 1)


async def test_consumer_retries_through_the_channel_until_the_hook_succeeds(
    store: Store, hooks: HookServer
) -> None:
    pipeline = Pipeline(store, min_due_delay_s=0.05)
    try:
        path = hook_path("flaky/2")  # 500, 500, then 200
        task = await pipeline.enqueue(hooks.url(path))
        for attempt in (1, 2, 3):
            (started,) = await pipeline.consumer.run_once(pop_timeout_s=10)
            assert started.retry_count == attempt
            await pipeline.consumer.drain(30)
        done = await pipeline.stored(task)
        assert (done.status, done.retry_count, done.last_status_code) == (
            Status.COMPLETED,
            3,
            200,
        )
        codes = [row["status_code"] for row in await store.tasks.attempts(task.id)]
        assert codes == [500, 500, 200]
        assert [c.headers["ntorque-task-retry-count"] for c in hooks.calls(path)] == [
            "0",
            "1",
            "2",
        ]
    finally:
        pipeline.client.close()


async def test_consumer_fails_a_task_on_a_client_error(
    pipeline: Pipeline, hooks: HookServer
) -> None:
    path = hook_path("status/404")
    task = await pipeline.enqueue(hooks.url(path))
    await pipeline.consumer.run_once(pop_timeout_s=5)
    await pipeline.consumer.drain(30)
    failed = await pipeline.stored(task)
    assert (failed.status, failed.last_status_code) == (Status.FAILED, 404)
    assert failed.last_error is not None and failed.last_error.startswith("HTTP 404")
    assert await pipeline.channel.pop(10, QUICK_S) == []  # nothing left to retry


async def test_stopping_cuts_a_waiting_pop_short(store: Store, channel: Channel) -> None:
    """A consumer waiting for work stops at once, not when its pop times out."""
    queue = Queue(
        store.tasks, channel, Events(), min_due_delay_s=2.0, max_due_delay_s=60.0,
        max_retries=MAX_RETRIES, backoff_kind="linear",
    )  # fmt: skip
    client = make_client(1)
    try:
        webhook = Webhook(client, max_retries=MAX_RETRIES, transient_codes=(), ca_certs=None)
        consumer = Consumer(queue, webhook, concurrency=1)
        running = asyncio.ensure_future(consumer.run())
        await asyncio.sleep(0.1)  # waiting in its pop now
        stopped = time.monotonic()
        consumer.stop()
        await asyncio.wait_for(running, BLOCKING_POP_S)
        assert time.monotonic() - stopped < BLOCKING_POP_S / 2
    finally:
        client.close()


# -- from the delivery tests ---------------------------------------------------

IN_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")  # tests sharing a module node

MIN_DUE_DELAY_S = 1.0
TIMEOUT_S = 10
ROUNDS = 3  # requeue rounds while the call runs


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[LiveNode]:
    clock = Clock()
    async with live_for(
        module_backend, loops=False, clock=clock, min_due_delay_s=MIN_DUE_DELAY_S
    ) as running:
        yield running


def uid() -> str:
    return uuid.uuid4().hex[:12]


async def nothing_started(node: LiveNode) -> None:
    """A requeue round and a consumer round (popping whatever is waiting) start no call."""
    assert (await node.requeue())[0] == 0
    assert await node.running.consumer.run_once(pop_timeout_s=0) == []
    assert await node.running.channel.depth() == 0


@IN_MODULE_LOOP
async def test_long_hook_is_called_once(node: LiveNode, hooks: HookServer) -> None:
    """A call that lasts several requeue rounds but stays within its timeout
    is not repeated: its lease outlasts the timeout."""
    assert node.clock is not None
    path = f"/slow/0.5/{uid()}"
    task = await node.enqueue(hooks.url(path), timeout=TIMEOUT_S)
    calling = asyncio.ensure_future(node.consume())
    await hooks.wait_for_calls_async(path, 1)
    leased = await node.running.queue.get(task["id"])
    assert leased is not None
    assert leased.due == node.clock.now + MIN_DUE_DELAY_S + TIMEOUT_S  # the lease
    for _ in range(ROUNDS):  # requeue rounds while the call runs
        node.clock.advance(TIMEOUT_S / ROUNDS)
        await nothing_started(node)
    node.clock.advance(leased.due - node.clock.now - 0.001)  # up to the lease's last moment
    await nothing_started(node)
    assert [started.id for started in await calling] == [task["id"]]
    done = await node.task(task["id"])
    assert done["status"] == "completed"
    assert done["retry_count"] == 1
    assert done["last_status_code"] == 200
    # Two more requeue rounds, past the lease: nobody calls the hook again.
    for _ in range(2):
        node.clock.advance(TIMEOUT_S)
        await nothing_started(node)
    assert len(hooks.calls(path)) == 1
    assert (await node.task(task["id"]))["status"] == "completed"


@IN_MODULE_LOOP
async def test_duplicate_pushes_call_the_hook_once(node: LiveNode, hooks: HookServer) -> None:
    assert node.clock is not None
    path = f"/slow/0.5/{uid()}"
    task = await node.enqueue(hooks.url(path), timeout=TIMEOUT_S)
    calling = asyncio.ensure_future(node.consume())
    await hooks.wait_for_calls_async(path, 1)
    for _ in range(5):
        pushed = await node.request("POST", f"/task/{task['id']}/push")
        assert pushed.status == 201, (pushed.status, pushed.body)
        assert pushed.json["id"] == task["id"]
    assert await node.running.channel.depth() == 5
    await nothing_started(node)  # five notifications popped: none starts a call
    await calling
    done = await node.task(task["id"])
    assert done["status"] == "completed"
    assert done["retry_count"] == 1
    for past_the_lease in (False, True):  # once it is done, pushes change nothing either
        if past_the_lease:
            node.clock.advance(2 * TIMEOUT_S)
        for _ in range(5):
            assert (await node.request("POST", f"/task/{task['id']}/push")).status == 201
        await nothing_started(node)
    assert len(hooks.calls(path)) == 1
    assert (await node.task(task["id"]))["status"] == "completed"
