"""The Queue over a real store and an in-process channel: enqueue, retries and
backoff, requeue, cleanup, and batched commits. A clock stands still unless moved."""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import datetime
from uuid import uuid4

import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from ntorque.channel import Channel
from ntorque.store import Store
from ntorque.tasks import Status, Task, Verdict
from tests.conftest import Backend, live_for
from tests.factories import (
    BINARY_BODY,
    BUSY,
    DONE,
    GONE,
    NOW,
    QueueUnderTest,
    all_statements,
    outcome,
    spec,
)
from tests.hookserver import HookServer
from tests.inprocess import Clock

# -- the queue over a real store ----------------------------------------------


async def test_queue_enqueue_commits_notifies_and_publishes(store: Store) -> None:
    q = QueueUnderTest(store, Clock(NOW))
    task = await q.queue.enqueue(spec(body=BINARY_BODY))
    assert task.status is Status.PENDING and task.due == NOW
    assert await store.tasks.get(task.id) == task
    assert await q.popped() == [task.id]
    assert q.events == [(task.id, Status.PENDING, 0)]
    assert await q.queue.get(task.id) == task

    await q.queue.notify(task)  # the client's /push
    assert await q.popped() == [task.id]


async def test_queue_retry_backs_off_and_requeue_renotifies_when_due(store: Store) -> None:
    clock = Clock(NOW)
    q = QueueUnderTest(store, clock)
    task = await q.queue.enqueue(spec())
    assert await q.popped() == [task.id]

    retry = await q.attempt(task, BUSY)
    assert retry is not None
    assert (retry.status, retry.retry_count, retry.due) == (Status.PENDING, 1, NOW + 2)
    assert retry.last_status_code == 503

    assert await q.queue.requeue(100) == 0  # not due yet
    assert await q.popped() == []
    clock.now = NOW + 2
    assert await q.queue.requeue(100) == 1
    assert await q.popped() == [task.id]

    retry = await q.attempt(task, BUSY)  # second failure: twice the wait
    assert retry is not None
    assert (retry.status, retry.retry_count, retry.due) == (Status.PENDING, 2, NOW + 2 + 4)
    assert q.events == [
        (task.id, Status.PENDING, 0),
        (task.id, Status.IN_PROGRESS, 1),
        (task.id, Status.PENDING, 1),
        (task.id, Status.IN_PROGRESS, 2),
        (task.id, Status.PENDING, 2),
    ]


async def test_queue_linear_backoff(store: Store) -> None:
    clock = Clock(NOW)
    q = QueueUnderTest(store, clock, backoff_kind="linear", min_due_delay_s=3.0)
    task = await q.queue.enqueue(spec())
    for attempt in (1, 2, 3):
        retry = await q.attempt(task, BUSY)
        assert retry is not None and retry.due == clock.now + 3.0 * attempt
        clock.now = retry.due


async def test_queue_retry_is_renotified_by_its_timer(store: Store) -> None:
    q = QueueUnderTest(store, time.time, min_due_delay_s=0.05)  # the timer runs on real time
    task = await q.queue.enqueue(spec())
    assert await q.popped() == [task.id]
    retry = await q.attempt(task, BUSY)
    assert retry is not None and retry.status is Status.PENDING
    assert await q.channel.pop(100, 10) == [task.id]


async def test_queue_fails_a_task_after_max_retries(store: Store) -> None:
    clock = Clock(NOW)
    q = QueueUnderTest(store, clock, max_retries=2)
    task = await q.queue.enqueue(spec())
    retry = await q.attempt(task, BUSY)
    assert retry is not None and retry.status is Status.PENDING
    clock.now = retry.due

    failed = await q.attempt(task, BUSY)

    assert failed is not None
    assert (failed.status, failed.retry_count, failed.last_status_code) == (Status.FAILED, 2, 503)
    assert failed.last_error == BUSY.error
    await q.popped()
    clock.now += 100_000
    assert await q.queue.requeue(100) == 0
    assert await q.popped() == []
    assert q.events[-1] == (task.id, Status.FAILED, 2)


async def test_queue_completed_and_failed_are_final(store: Store) -> None:
    clock = Clock(NOW)
    q = QueueUnderTest(store, clock)
    done_task = await q.queue.enqueue(spec())
    gone_task = await q.queue.enqueue(spec())
    (done_lease,) = await q.queue.acquire([done_task.id])
    done = await q.queue.settle(done_lease, DONE)
    gone = await q.attempt(gone_task, GONE)  # 404: not retried however many attempts are left

    assert done is not None and done.status is Status.COMPLETED
    assert done.last_status_code == 200
    assert gone is not None and gone.status is Status.FAILED
    assert gone.last_error == GONE.error
    assert await q.queue.settle(done_lease, BUSY) is None  # a duplicate late answer
    assert await store.tasks.get(done_task.id) == done
    clock.now += 100_000
    assert await q.queue.requeue(100) == 0
    assert await q.queue.acquire([done_task.id, gone_task.id]) == []


async def test_queue_requeue_fails_tasks_whose_final_lease_ran_out(store: Store) -> None:
    clock = Clock(NOW)
    q = QueueUnderTest(store, clock, max_retries=1)
    task = await q.queue.enqueue(spec(timeout_s=10))
    (lease,) = await q.queue.acquire([task.id])
    assert lease.due == NOW + 10 + 2.0
    await q.popped()

    clock.now = lease.due
    assert await q.queue.requeue(100) == 0

    stored = await store.tasks.get(task.id)
    assert stored is not None and stored.status is Status.FAILED
    assert q.events[-1] == (task.id, Status.FAILED, 1)
    assert await q.popped() == []


async def test_queue_requeue_renotifies_orphans_oldest_first_up_to_the_limit(
    store: Store,
) -> None:
    clock = Clock(NOW)
    q = QueueUnderTest(store, clock)
    tasks = []
    for offset in range(3):
        clock.now = NOW + offset
        tasks.append(await q.queue.enqueue(spec()))
    await q.popped()  # the notifications were lost
    assert await q.queue.requeue(2) == 2
    assert await q.popped() == [tasks[0].id, tasks[1].id]


async def test_queue_cleanup(store: Store) -> None:
    clock = Clock(NOW)
    q = QueueUnderTest(store, clock)
    task = await q.queue.enqueue(spec())
    await q.attempt(task, DONE)
    clock.now = NOW + 50
    assert await q.queue.cleanup(100, 10) == 0
    clock.now = NOW + 101
    assert await q.queue.cleanup(100, 10) == 1
    assert await store.tasks.get(task.id) is None


async def test_concurrent_enqueues_share_commits_and_each_gets_its_own_task(
    engine: AsyncEngine, store: Store
) -> None:
    subject = QueueUnderTest(store, Clock(NOW))
    specs = [spec(url=f"http://127.0.0.1:9/hook/{n}") for n in range(20)]

    async def enqueue_all() -> list[Task]:
        return list(await asyncio.gather(*(subject.queue.enqueue(s) for s in specs)))

    statements = await all_statements(engine, enqueue_all)
    commits = [s for s, _ in statements if "INSERT INTO tasks" in s]
    stored = [await store.tasks.get(task_id) for task_id in await subject.popped()]
    assert sorted(task.url for task in stored if task) == sorted(s.url for s in specs)
    assert len(stored) == 20
    if engine.dialect.name == "postgresql":
        assert len(commits) <= 2  # the first alone, the other 19 together


async def test_concurrent_settles_share_a_transaction_and_each_gets_its_own_result(
    store: Store,
) -> None:
    subject = QueueUnderTest(store, Clock(NOW))
    created = [await store.tasks.insert(spec(), NOW) for _ in range(6)]
    held = await subject.queue.acquire([task.id for task in created])
    results = [outcome(Verdict.COMPLETED, 200), outcome(Verdict.FAILED, 410, "HTTP 410")] * 3
    settled = await asyncio.gather(
        *(subject.queue.settle(task, result) for task, result in zip(held, results, strict=True))
    )
    assert [task.status if task else None for task in settled] == [
        Status.COMPLETED, Status.FAILED] * 3  # fmt: skip
    for task in settled:
        assert task is not None and await store.tasks.get(task.id) == task


# -- from the delivery tests ---------------------------------------------------

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


# -- a hook's Retry-After ------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "asked", "waited"),
    [("s", 120, 120), ("date", 120, 120), ("s", 1, 2), ("s", 99999, 600)],
)
async def test_retry_after_delays_the_next_attempt_within_the_longest_wait(
    backend: Backend, hooks: HookServer, form: str, asked: int, waited: int
) -> None:
    """At least what the hook asked (seconds or an HTTP date); never less
    than the backoff (2 s here); at most max_due_delay_s (600 s here)."""
    clock = Clock(time.time())  # an HTTP date is read against the wall clock
    async with live_for(backend, loops=False, clock=clock, max_due_delay_s=600) as node:
        path = f"/retry-after/503/{asked}/{form}/{uuid4().hex}"
        task = await node.enqueue(hooks.url(path))
        await node.consume()
        retrying = await node.task(task["id"])
        due = datetime.fromisoformat(retrying["due"]).timestamp()
        assert due - clock() == pytest.approx(waited, abs=1.5 if form == "date" else 0.01)
        (attempt,) = (await node.request("GET", f"/tasks/{task['id']}/attempts")).json["attempts"]
        assert attempt["status_code"] == 503
        assert attempt["retry_after_s"] == pytest.approx(asked, abs=1.5)


async def test_retry_after_on_a_final_answer_is_not_a_wait(
    backend: Backend, hooks: HookServer
) -> None:
    async with live_for(backend, loops=False) as node:
        task = await node.enqueue(hooks.url(f"/retry-after/404/60/s/{uuid4().hex}"))
        await node.consume()
        assert (await node.task(task["id"]))["status"] == "failed"
        (attempt,) = (await node.request("GET", f"/tasks/{task['id']}/attempts")).json["attempts"]
        assert attempt["retry_after_s"] is None
