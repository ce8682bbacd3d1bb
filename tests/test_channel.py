"""The notification channel contract (in-process and Redis), Redis outages,
and the consumer driven by hand: pop -> acquire -> call the hook -> settle."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from ntorque.channel import Channel, LocalChannel, RedisChannel
from ntorque.consumer import Consumer
from ntorque.events import Events
from ntorque.queue import Queue
from ntorque.store import Store
from ntorque.tasks import NewTask, Status, Task
from ntorque.webhook import Webhook, make_client
from tests.hookserver import HookServer
from tests.services import unique_name

MAX_RETRIES = 5
TRANSIENT_CODES = (408, 423, 429, 449)
QUICK_S = 0.05  # how long a pop waits when nothing is expected


@pytest.fixture(params=["local", "redis"])
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[Channel]:
    if request.param == "local":
        local = LocalChannel()
        yield local
        await local.close()
        return
    url: str = request.getfixturevalue("redis_url")
    name = unique_name("ntorque_test_channel")
    remote = RedisChannel(url, name)
    try:
        yield remote
    finally:
        await remote.close()
        client = redis.from_url(url)
        await client.delete(name)
        await client.aclose()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[tuple[RedisChannel, redis.Redis]]:
    """A Redis channel and a plain client on its list, to push payloads by hand."""
    name = unique_name("ntorque_test_channel")
    channel = RedisChannel(redis_url, name)
    client = redis.from_url(redis_url)
    try:
        yield channel, client
    finally:
        await client.delete(name)
        await client.aclose()
        await channel.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the contract, on both channels -------------------------------------------


async def test_ids_come_out_in_the_order_they_went_in(channel: Channel) -> None:
    await channel.push([3, 1, 2])
    await channel.push([10])
    await channel.push([])
    await channel.push([7, 7])
    assert await channel.pop(100, 1) == [3, 1, 2, 10, 7, 7]
    assert await channel.pop(100, QUICK_S) == []


async def test_pop_takes_at_most_limit_ids(channel: Channel) -> None:
    await channel.push([1, 2, 3, 4, 5])
    assert await channel.pop(2, 1) == [1, 2]
    assert await channel.pop(1, 1) == [3]
    assert await channel.pop(10, 1) == [4, 5]


async def test_pop_on_an_empty_channel_returns_nothing_after_its_timeout(
    channel: Channel,
) -> None:
    assert await channel.pop(10, 0.1) == []


async def test_pop_waits_for_the_first_id(channel: Channel) -> None:
    waiting = asyncio.ensure_future(channel.pop(10, 10))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await channel.push([42])
    assert await asyncio.wait_for(waiting, 10) == [42]


async def test_depth_counts_waiting_ids(channel: Channel) -> None:
    assert await channel.depth() == 0
    await channel.push([1, 2, 3])
    assert await channel.depth() == 3
    await channel.pop(1, 1)
    assert await channel.depth() == 2
    await channel.pop(10, 1)
    assert await channel.depth() == 0


# -- Redis payloads ------------------------------------------------------------


async def test_redis_accepts_the_original_id_colon_retry_payload(
    raw_redis: tuple[RedisChannel, redis.Redis],
) -> None:
    channel, client = raw_redis
    await client.rpush(channel.name, "17:3", b"18:0", "19")
    assert await channel.depth() == 3
    assert await channel.pop(10, 1) == [17, 18, 19]


async def test_redis_drops_a_garbage_payload_with_a_warning(
    raw_redis: tuple[RedisChannel, redis.Redis], caplog: pytest.LogCaptureFixture
) -> None:
    channel, client = raw_redis
    caplog.set_level(logging.WARNING, logger="ntorque.channel")
    await client.rpush(channel.name, "5", "not-a-task-id", "6")
    assert await channel.pop(10, 1) == [5, 6]
    await client.rpush(channel.name, "")
    assert await channel.pop(10, 1) == []

    dropped = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(dropped) == 2
    assert "not-a-task-id" in dropped[0].getMessage()
    assert await channel.depth() == 0


async def test_redis_channel_pushes_are_shared_between_processes(
    raw_redis: tuple[RedisChannel, redis.Redis], redis_url: str
) -> None:
    """Another node's channel object on the same list sees the same ids."""
    channel, _client = raw_redis
    other = RedisChannel(redis_url, channel.name)
    try:
        await other.push([8, 9])
        assert await channel.pop(10, 1) == [8, 9]
    finally:
        await other.close()


# -- Redis down ----------------------------------------------------------------


@pytest.fixture
async def redis_down() -> AsyncIterator[RedisChannel]:
    channel = RedisChannel(f"redis://127.0.0.1:{closed_port()}/0", unique_name("ntorque"))
    try:
        yield channel
    finally:
        await channel.close()


async def test_redis_down_push_falls_back_to_this_process(
    redis_down: RedisChannel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ntorque.channel")
    await redis_down.push([1, 2])  # does not raise
    await redis_down.push([3])
    assert await redis_down.depth() == 3
    assert await redis_down.pop(2, 1) == [1, 2]
    assert await redis_down.pop(10, 1) == [3]
    assert await redis_down.depth() == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said once, not on every push
    assert "redis unavailable" in warnings[0].getMessage()


async def test_redis_down_pop_does_not_raise_and_waits_locally(redis_down: RedisChannel) -> None:
    assert await redis_down.pop(10, 0.1) == []
    waiting = asyncio.ensure_future(redis_down.pop(10, 10))
    await asyncio.sleep(0.2)
    await redis_down.push([5])
    assert await asyncio.wait_for(waiting, 10) == [5]


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
