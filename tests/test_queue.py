"""The queue's retry schedule, through a node on both backends: after each
failed attempt a task falls due exactly when the backoff says, not a moment
before, and the requeuer notifies it then.

The node runs no loops of its own; the test drives the consumer and the
requeuer and moves the node's clock by hand, so due dates are exact.
"""

from __future__ import annotations

import asyncio
import gc
from uuid import uuid4

import pytest
import redis

from ntorque.channel import Channel
from ntorque.tasks import Status
from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import Clock

MIN_DUE_DELAY_S = 0.3
MAX_RETRIES = 4  # 3 waits to check
EARLY_S = 0.001


@pytest.mark.parametrize(
    ("kind", "factors"),
    [
        ("exponential", [2 ** (n - 1) for n in range(1, MAX_RETRIES)]),  # 1, 2, 4
        ("linear", list(range(1, MAX_RETRIES))),  # 1, 2, 3
    ],
    ids=["exponential", "linear"],
)
async def test_backoff_schedule(
    backend: Backend, hooks: HookServer, kind: str, factors: list[int]
) -> None:
    """After the n-th failed attempt the task is due at exactly now +
    min_due_delay * 2**(n-1) (exponential) or * n (linear)."""
    path = f"/status/500/{uuid4().hex}"
    clock = Clock()
    settings = {"min_due_delay_s": MIN_DUE_DELAY_S, "max_due_delay_s": 30}
    async with live_for(
        backend, loops=False, clock=clock, backoff=kind, max_retries=MAX_RETRIES, **settings
    ) as node:
        queue = node.running.queue
        task_id = (await node.enqueue(hooks.url(path), b"a=1"))["id"]
        for attempt, factor in enumerate(factors, start=1):
            assert [task.id for task in await node.consume()] == [task_id]
            failed_at = clock.now
            task = await queue.get(task_id)
            assert task is not None
            assert (task.status, task.retry_count) == (Status.PENDING, attempt)
            assert task.due == failed_at + MIN_DUE_DELAY_S * factor, (attempt, task.due - failed_at)
            clock.advance(MIN_DUE_DELAY_S * factor - EARLY_S)  # not a moment before
            assert (await node.requeue())[0] == 0
            assert await node.consume() == []
            clock.advance(task.due - clock.now)
            assert (await node.requeue())[0] == 1
        assert [task.id for task in await node.consume()] == [task_id]
        done = await node.task(task_id)
        assert (done["status"], done["retry_count"]) == ("failed", MAX_RETRIES)
        calls = hooks.calls(path)
        assert len(calls) == MAX_RETRIES
        assert {call.headers["ntorque-task-retry-limit"] for call in calls} == {str(MAX_RETRIES)}


async def waiting(backend: Backend, channel: Channel) -> int:
    """Ids waiting in a node's channel, read after the node stopped (Redis: by
    a client of the test's own)."""
    if not backend.redis_url:
        return await channel.depth()
    client = redis.Redis.from_url(backend.redis_url)
    try:
        return int(await asyncio.to_thread(client.llen, backend.redis_channel))
    finally:
        client.close()


async def test_a_stopped_node_notifies_no_retry(backend: Backend, hooks: HookServer) -> None:
    """A retry falling due after the node stopped is not notified by the
    stopped node (the requeuer of the next start finds it), and opens no
    connection again: the stray push of this test leaked a Redis connection."""
    delay_s = 0.5
    async with live_for(backend, loops=False, clock=Clock(), min_due_delay_s=delay_s) as node:
        task_id = (await node.enqueue(hooks.url(f"/status/500/{uuid4().hex}")))["id"]
        assert [task.id for task in await node.consume()] == [task_id]  # fails: a retry
        channel = node.running.channel
        assert await channel.depth() == 0
    await asyncio.sleep(delay_s + 0.3)  # past the retry's notification
    assert await waiting(backend, channel) == 0
    gc.collect()  # an unclosed connection would warn here
