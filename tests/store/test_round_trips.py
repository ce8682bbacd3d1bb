"""On PostgreSQL each hot transition of a task (enqueue, acquire, settle) is
one statement that commits by itself: one round trip to the database, alone
or in a batch, with no BEGIN and COMMIT of its own.

Counted on the wire: the node's database connection goes through a proxy on
127.0.0.1 that counts each time the client speaks after the server answered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest

from ntorque.config import Settings
from ntorque.errors import StorageUnavailable
from ntorque.queues import QueueSettings
from ntorque.store import Settlement, Store
from ntorque.store.engine import make_engine
from ntorque.store.rows import new_task
from ntorque.tasks import Status
from tests.factories import DONE, LEASE_EXTRA_S, MAX_RETRIES, NOW, spec
from tests.hookserver import HookServer
from tests.inprocess import LiveNode
from tests.netfaults import RoundTripCounter, database_through
from tests.services import PostgresDatabases


def counted(database_url: str) -> contextlib.AbstractContextManager[tuple[str, RoundTripCounter]]:
    """The url through a round-trip counting proxy, and the proxy."""
    return database_through(database_url, RoundTripCounter)


@pytest.fixture
async def counted_store(
    postgres_databases: PostgresDatabases,
) -> AsyncIterator[tuple[Store, RoundTripCounter]]:
    """A store with ONE pooled connection, through the counter (its
    statements already prepared, as on a running node)."""
    url = postgres_databases.new()
    with counted(url) as (proxied, proxy):
        engine = make_engine(Settings(database_url=proxied, pool_size=1, max_overflow=0))
        store = Store(engine)
        try:
            await one_task_through(store, NOW)
            yield store, proxy
        finally:
            await engine.dispose()
            postgres_databases.give_back(url)


async def one_task_through(store: Store, now: float, count: int = 1) -> None:
    made = await store.tasks.insert_many([spec() for _ in range(count)], now)
    leased = await store.tasks.acquire([t.id for t in made], now, LEASE_EXTRA_S, MAX_RETRIES)
    assert [task.id for task in leased] == [task.id for task in made]
    batch = [Settlement(task, DONE, Status.COMPLETED, now) for task in leased]
    results, _ = await store.tasks.settle_many(batch, now)
    assert all(result is not None for result in results)


async def test_each_transition_of_a_lone_task_is_one_round_trip(
    counted_store: tuple[Store, RoundTripCounter],
) -> None:
    store, proxy = counted_store
    before = proxy.round_trips
    (task,) = await store.tasks.insert_many([spec()], NOW + 1)
    assert proxy.round_trips - before == 1  # enqueue

    before = proxy.round_trips
    (leased,) = await store.tasks.acquire([task.id], NOW + 1, LEASE_EXTRA_S, MAX_RETRIES)
    assert proxy.round_trips - before == 1  # acquire

    before = proxy.round_trips
    (settled,), _ = await store.tasks.settle_many(
        [Settlement(leased, DONE, Status.COMPLETED, NOW + 1)], NOW + 1
    )
    assert proxy.round_trips - before == 1  # settle
    assert settled is not None and settled.status is Status.COMPLETED
    assert await store.tasks.get(task.id) == settled  # committed: another read sees it


async def test_a_batch_of_tasks_is_one_round_trip_per_transition(
    counted_store: tuple[Store, RoundTripCounter],
) -> None:
    store, proxy = counted_store
    before = proxy.round_trips
    await one_task_through(store, NOW + 2, count=50)
    assert proxy.round_trips - before == 3  # 50 enqueued, 50 acquired, 50 settled


async def test_named_queues_cost_no_more_round_trips(
    counted_store: tuple[Store, RoundTripCounter],
) -> None:
    """A queue's settings are read, and a new queue's row made, by the same statement."""
    store, proxy = counted_store
    slow = QueueSettings(timeout_s=7, retries=2, backoff="linear", paused=True)
    await store.queues.put(0, "slow", slow, NOW)
    before = proxy.round_trips
    new, configured = await store.tasks.insert_many(
        [spec(queue="emails", timeout_s=None), spec(queue="slow", timeout_s=None)], NOW + 3
    )
    assert proxy.round_trips - before == 1
    assert "emails" in [queue.name for queue in await store.queues.page(0, NOW + 3)]
    assert (new.timeout_s, new.retries, new.held) == (store.tasks.db.default_timeout_s, None, False)
    assert (configured.timeout_s, configured.retries, configured.backoff) == (7, 2, "linear")
    assert configured.held  # its queue is paused: not notified until resumed
    assert await store.tasks.get(configured.id) == dataclasses.replace(configured, held=False)


# -- a node: over HTTP, through the consumer ------------------------------------------


async def test_a_task_costs_three_round_trips_from_enqueue_to_settled(
    postgres_databases: PostgresDatabases, redis_url: str, hooks: HookServer
) -> None:
    """What a client sees: POST a task, the node calls the hook, the task is
    completed; the node's database heard from it three times."""
    url = postgres_databases.new()
    with counted(url) as (proxied, proxy):
        node = LiveNode(proxied, redis_url, loops=False, authenticate=False,
                        pool_size=1, max_overflow=0)  # fmt: skip
        async with node:
            for n in range(3):  # the first warms the connection and prepares statements
                before = proxy.round_trips
                query = urlencode({"url": hooks.url(f"/round-trips/{n}")})
                answer = await node.request("POST", f"/?{query}", b"{}")
                assert answer.status == 201, answer.body
                enqueued = proxy.round_trips - before
                (task,) = await node.consume()
                total = proxy.round_trips - before
                got = json.loads((await node.request("GET", f"/tasks/{task.id}")).body)
                assert got["status"] == "completed"
            assert (enqueued, total) == (1, 3)
    postgres_databases.give_back(url)


# -- on the driver, a lost connection is a 503 and is replaced --------------------------


GHOST = new_task(spec(), 10**9, NOW, 10, None, None)  # never stored


async def test_a_connection_lost_under_a_hot_statement_is_replaced(
    counted_store: tuple[Store, RoundTripCounter],
) -> None:
    store, proxy = counted_store
    for call in (
        lambda: store.tasks.insert_many([spec()], NOW + 4),
        lambda: store.tasks.acquire([1], NOW + 4, LEASE_EXTRA_S, MAX_RETRIES),
        lambda: store.tasks.settle_many([Settlement(GHOST, DONE, Status.COMPLETED, NOW)], NOW),
    ):
        proxy.close()  # cuts the pooled connection (and refuses new ones)
        proxy.open()  # a new connection would get through again
        with pytest.raises(StorageUnavailable) as caught:
            await call()  # on the connection that was cut: no hang, a 503
        assert caught.value.status == 503
        await one_task_through(store, NOW + 4)  # on a new connection


async def test_a_connection_that_failed_a_statement_is_not_lent_again(
    counted_store: tuple[Store, RoundTripCounter],
) -> None:
    """After an error asyncpg may still be reading the failed statement's last
    messages (the next statement on it failed with "another operation is in
    progress", and a settle was lost for its lease): the connection is dropped."""
    store, _ = counted_store
    db = store.tasks.db
    async with db.driver() as conn:
        first = conn
    async with db.driver() as conn:
        assert conn is first  # one pooled connection, lent again and again
        await conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    with pytest.raises(StorageUnavailable):
        await store.tasks.insert_many([spec()], NOW + 5)  # read-only: a 503
    async with db.driver() as conn:
        assert conn is not first  # the failed one was dropped...
    await one_task_through(store, NOW + 5)  # ...and its replacement takes writes


async def test_every_kind_of_unavailable_database_is_counted(
    postgres_databases: PostgresDatabases,
) -> None:
    """What ntorque_database_errors_total counts: the driver's 503s too."""
    url = postgres_databases.new()
    seen: list[None] = []
    with counted(url) as (proxied, proxy):
        engine = make_engine(Settings(database_url=proxied, pool_size=1, max_overflow=0))
        store = Store(engine, unavailable=lambda: seen.append(None))
        try:
            await one_task_through(store, NOW)
            proxy.close()
            proxy.open()
            for call in (
                lambda: store.tasks.insert_many([spec()], NOW),  # the driver
                lambda: store.tasks.due_ids(NOW, 10, MAX_RETRIES),  # SQLAlchemy, autocommit
            ):
                proxy.close()
                with pytest.raises(StorageUnavailable):
                    await call()
                proxy.open()
            assert len(seen) == 2
        finally:
            await engine.dispose()
            postgres_databases.give_back(url)


async def test_an_acquire_ignores_a_column_a_newer_schema_added(
    counted_store: tuple[Store, RoundTripCounter],
) -> None:
    """A node of the version before a migration that adds a column to tasks
    still acquires (a rolling upgrade): it reads the columns it knows."""
    store, _ = counted_store
    async with store.tasks.db.driver() as conn:
        await conn.execute("ALTER TABLE tasks ADD COLUMN added_later TEXT DEFAULT 'x'")
    await store.engine.dispose()  # new connections: the statements prepared afresh
    await one_task_through(store, NOW + 6)
