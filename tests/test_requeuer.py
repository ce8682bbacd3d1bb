"""The requeuer: a round re-notifies due tasks and cleans up, batch after batch."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
import pytest_asyncio

from ntorque.requeuer import Requeuer
from ntorque.store import Leadership, Store
from ntorque.tasks import Status
from tests.conftest import Backend, live_for
from tests.factories import DONE, NOW, QueueUnderTest, all_statements, spec
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode


async def test_a_requeue_round_cleans_up_batch_after_batch_until_caught_up(store: Store) -> None:
    clock = Clock(NOW)
    q = QueueUnderTest(store, clock)
    for _ in range(25):
        await q.attempt(await q.queue.enqueue(spec()), DONE)
    clock.now = NOW + 10 * 86400
    requeuer = Requeuer(
        q.queue,
        Leadership(store.engine),
        batch=100,
        cleanup_after_s=86400,
        cleanup_interval_s=3600,
        cleanup_batch=10,
    )
    assert await requeuer.run_once() == (0, 25)  # batches of 10, 10 and 5
    await q.attempt(await q.queue.enqueue(spec()), DONE)
    clock.now += 2 * 86400
    assert await requeuer.run_once() == (0, 0)  # caught up: the next round is an interval away


# -- from the delivery tests ---------------------------------------------------

IN_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")  # tests sharing a module node

MIN_DUE_DELAY_S = 1.0
TIMEOUT_S = 5


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[LiveNode]:
    clock = Clock()
    async with live_for(
        module_backend, loops=False, clock=clock, min_due_delay_s=MIN_DUE_DELAY_S
    ) as running:
        yield running


def hook_path() -> str:
    return f"/status/200/{uuid.uuid4().hex}"


@IN_MODULE_LOOP
async def test_the_requeuer_finds_a_task_whose_notification_was_lost(
    node: LiveNode, hooks: HookServer
) -> None:
    path = hook_path()
    task = await node.enqueue(hooks.url(path), b"a=1")
    assert await node.running.channel.pop(100, 0) == [task["id"]]  # lost on the way
    assert await node.consume() == []
    assert await node.requeue() == (1, 0)
    assert [started.id for started in await node.consume()] == [task["id"]]
    done = await node.task(task["id"])
    assert (done["status"], done["retry_count"]) == ("completed", 1)
    assert [call.body for call in hooks.calls(path)] == [b"a=1"]
    assert (await node.requeue())[0] == 0


@IN_MODULE_LOOP
async def test_a_task_whose_consumer_died_is_performed_again_when_its_lease_runs_out(
    node: LiveNode, hooks: HookServer
) -> None:
    """A consumer takes the lease, calls the hook and dies before settling:
    the task is due again exactly when the lease runs out, not before, and
    is performed again (at least once: the hook sees the call twice)."""
    assert node.clock is not None
    path = hook_path()
    task = await node.enqueue(hooks.url(path), b"a=1", timeout=TIMEOUT_S)
    queue = node.running.queue
    (leased,) = await queue.acquire(await node.running.channel.pop(100, 0))
    assert (leased.id, leased.status, leased.retry_count) == (task["id"], Status.IN_PROGRESS, 1)
    assert leased.due == node.clock.now + MIN_DUE_DELAY_S + TIMEOUT_S
    await node.running.webhook.call(leased)  # ... and the consumer dies here
    assert len(hooks.calls(path)) == 1
    node.clock.advance(leased.due - node.clock.now - 0.001)
    assert (await node.requeue())[0] == 0
    assert await node.consume() == []
    node.clock.advance(leased.due - node.clock.now)
    assert await node.requeue() == (1, 0)
    assert [started.id for started in await node.consume()] == [task["id"]]
    done = await node.task(task["id"])
    assert (done["status"], done["retry_count"]) == ("completed", 2)
    assert [call.headers["ntorque-task-retry-count"] for call in hooks.calls(path)] == ["0", "1"]


# -- scheduled tasks: timers, not polling --------------------------------------------


async def test_a_task_due_soon_is_notified_by_its_enqueuing_nodes_timer(
    backend: Backend, hooks: HookServer
) -> None:
    """The requeuer's round is a minute away; the task is called on time all the same."""
    async with live_for(backend, requeue_interval_s=60) as node:
        path = f"/status/200/{uuid.uuid4().hex}"
        task = await node.enqueue(hooks.url(path), delay=0.5)
        due = datetime.fromisoformat(task["due"]).timestamp()
        (call,) = await hooks.wait_for_calls_async(path, 1, timeout_s=20)
        assert call.at >= due


async def test_the_requeuers_look_ahead_times_tasks_before_they_fall_due(
    backend: Backend, hooks: HookServer
) -> None:
    """A task due beyond the enqueuing node's look-ahead (2 rounds) gets its
    timer from a requeue round before its time, and none of the rounds
    notifies it early; the consumer then finds it when it falls due."""
    async with live_for(backend, loops=False, requeue_interval_s=1) as node:
        path = f"/status/200/{uuid.uuid4().hex}"
        task = await node.enqueue(hooks.url(path), delay=3)
        due = datetime.fromisoformat(task["due"]).timestamp()
        assert await node.consume() == []  # not notified: due too late for a timer
        await asyncio.sleep(max(due - 2 - time.time(), 0) + 0.2)
        assert await node.requeue() == (0, 0)  # not due yet: the round only times it
        assert await node.consume() == []
        await asyncio.sleep(max(due - time.time(), 0) + 0.1)
        (acquired,) = await node.consume()  # notified by the timer the round set
        assert acquired.id == task["id"]
        (call,) = hooks.calls(path)
        assert call.at >= due


async def test_a_round_with_nothing_due_or_coming_reads_the_database_once(store: Store) -> None:
    """An idle node's round: one statement, not one per kind of due work."""
    clock = Clock(NOW)
    q = QueueUnderTest(store, clock)
    later = await q.queue.enqueue(spec(due=NOW + 3600))  # due in an hour: not yet a concern
    statements = await all_statements(store.engine, lambda: q.queue.requeue(100))
    assert len(statements) == 1, statements
    clock.now = later.due  # now it is due: found, as before
    assert await q.queue.requeue(100) == 1
