"""The task statements on SQLite and PostgreSQL: insert, acquire, settle,
due ids, expire, cleanup, batches; every hot and periodic query uses an index.

Times are passed explicitly, so these tests move the clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ntorque.store import Settlement, Store
from ntorque.tasks import Keyed, Outcome, Status, Verdict
from tests.factories import (
    BINARY_BODY,
    BUSY,
    DONE,
    GONE,
    LEASE_EXTRA_S,
    MAX_RETRIES,
    NOW,
    acquire_one,
    all_statements,
    finish,
    outcome,
    spec,
)

# -- tasks ---------------------------------------------------------------------


async def test_insert_returns_pending_task_due_now_with_body_bytes_intact(store: Store) -> None:
    headers = (("X-Request-Id", "abc"), ("Authorization", "Bearer t"))
    task = await store.tasks.insert(
        spec(body=BINARY_BODY, content_type="application/octet-stream", headers=headers), NOW
    )
    assert task.id > 0
    assert task.status is Status.PENDING
    assert task.retry_count == 0
    assert task.due == task.created == task.modified == NOW
    assert task.body == BINARY_BODY
    assert task.headers == headers
    assert task.content_type == "application/octet-stream"
    assert (task.last_status_code, task.last_error) == (None, None)
    assert await store.tasks.get(task.id) == task
    assert await store.tasks.get(task.id + 1000) is None


async def test_insert_hands_out_increasing_ids(store: Store) -> None:
    first = await store.tasks.insert(spec(), NOW)
    second = await store.tasks.insert(spec(), NOW)
    assert second.id > first.id


async def test_acquire_takes_due_unfinished_tasks_and_leases_them(store: Store) -> None:
    due = await store.tasks.insert(spec(timeout_s=10), NOW)
    later = await store.tasks.insert(spec(), NOW + 100)

    acquired = await store.tasks.acquire([due.id, later.id], NOW + 1, LEASE_EXTRA_S, MAX_RETRIES)

    assert [task.id for task in acquired] == [due.id]
    (task,) = acquired
    assert task.status is Status.IN_PROGRESS
    assert task.retry_count == 1
    assert task.due == NOW + 1 + 10 + LEASE_EXTRA_S
    assert task.modified == NOW + 1
    assert task.body == due.body
    assert await store.tasks.get(due.id) == task
    assert await store.tasks.get(later.id) == later  # not due yet: untouched


async def test_acquire_of_nothing_or_unknown_ids_takes_nothing(store: Store) -> None:
    task = await store.tasks.insert(spec(), NOW)
    assert await store.tasks.acquire([], NOW, LEASE_EXTRA_S, MAX_RETRIES) == []
    assert await store.tasks.acquire([task.id + 1000], NOW, LEASE_EXTRA_S, MAX_RETRIES) == []
    assert await store.tasks.get(task.id) == task


async def test_acquire_returns_several_tasks_in_id_order(store: Store) -> None:
    tasks = [await store.tasks.insert(spec(), NOW) for _ in range(3)]
    ids = [task.id for task in tasks]
    acquired = await store.tasks.acquire(list(reversed(ids)), NOW, LEASE_EXTRA_S, MAX_RETRIES)
    assert [task.id for task in acquired] == ids


async def test_task_due_in_the_future_is_not_acquired(store: Store) -> None:
    task = await acquire_one(store, await store.tasks.insert(spec(), NOW), NOW)
    retry = await store.tasks.settle(task, BUSY, Status.PENDING, NOW + 50, NOW)
    assert retry is not None and retry.due == NOW + 50

    assert await store.tasks.acquire([task.id], NOW + 49.5, LEASE_EXTRA_S, MAX_RETRIES) == []
    assert (await store.tasks.get(task.id)) == retry
    again = await acquire_one(store, task, NOW + 50)  # due exactly now counts as due
    assert again.retry_count == 2


async def test_a_running_task_is_not_acquired_again_before_its_lease_runs_out(
    store: Store,
) -> None:
    task = await acquire_one(store, await store.tasks.insert(spec(timeout_s=10), NOW), NOW)
    assert await store.tasks.acquire([task.id], task.due - 0.5, LEASE_EXTRA_S, MAX_RETRIES) == []
    again = await acquire_one(store, task, task.due)  # the consumer died: taken again
    assert again.status is Status.IN_PROGRESS
    assert again.retry_count == 2


async def test_acquire_skips_tasks_out_of_attempts(store: Store) -> None:
    task = await acquire_one(store, await store.tasks.insert(spec(), NOW), NOW, max_retries=1)
    assert await store.tasks.acquire([task.id], task.due + 100, LEASE_EXTRA_S, 1) == []
    assert (await store.tasks.get(task.id)) == task


async def test_concurrent_acquires_of_one_task_give_it_to_exactly_one(store: Store) -> None:
    """W2: two consumers popped the same id at the same moment."""
    tasks = [await store.tasks.insert(spec(), NOW) for _ in range(5)]
    for task in tasks:
        results = await asyncio.gather(
            store.tasks.acquire([task.id], NOW, LEASE_EXTRA_S, MAX_RETRIES),
            store.tasks.acquire([task.id], NOW, LEASE_EXTRA_S, MAX_RETRIES),
        )
        winners = [result for result in results if result]
        assert len(winners) == 1, results
        assert [t.id for t in winners[0]] == [task.id]
        stored = await store.tasks.get(task.id)
        assert stored is not None and stored.retry_count == 1


async def test_concurrent_batch_acquires_share_tasks_without_overlap(store: Store) -> None:
    ids = [(await store.tasks.insert(spec(), NOW)).id for _ in range(10)]
    first, second = await asyncio.gather(
        store.tasks.acquire(ids, NOW, LEASE_EXTRA_S, MAX_RETRIES),
        store.tasks.acquire(list(reversed(ids)), NOW, LEASE_EXTRA_S, MAX_RETRIES),
    )
    taken = [task.id for task in first] + [task.id for task in second]
    assert sorted(taken) == ids


@pytest.mark.parametrize(("result", "status"), [(DONE, Status.COMPLETED), (GONE, Status.FAILED)])
async def test_finished_task_is_never_acquired_or_due(
    store: Store, result: Outcome, status: Status
) -> None:
    """W3: a completed or failed task stays finished, whatever comes later."""
    task = await finish(store, await store.tasks.insert(spec(), NOW), result, status, NOW)
    assert task.status is status
    for later in (NOW, NOW + 10_000, NOW + 10_000_000):
        assert await store.tasks.acquire([task.id], later, LEASE_EXTRA_S, MAX_RETRIES) == []
        assert await store.tasks.due_ids(later, 100, MAX_RETRIES) == []
        assert await store.tasks.expire(later, 1) == ([], [])
    assert await store.tasks.get(task.id) == task


async def test_settle_sets_the_result_and_records_every_attempt(store: Store) -> None:
    created = await store.tasks.insert(spec(), NOW)
    first = await acquire_one(store, created, NOW)
    timeout = Outcome(Verdict.RETRY, NOW + 0.5, 10.0, None, "Timeout during request")
    retry = await store.tasks.settle(first, timeout, Status.PENDING, NOW + 12, NOW + 10.5)
    assert retry is not None
    assert (retry.status, retry.retry_count, retry.due) == (Status.PENDING, 1, NOW + 12)
    assert (retry.last_status_code, retry.last_error) == (None, "Timeout during request")
    assert retry.modified == NOW + 10.5

    second = await acquire_one(store, created, NOW + 12)
    done = await store.tasks.settle(second, DONE, Status.COMPLETED, second.due, NOW + 13)
    assert done is not None
    assert (done.status, done.retry_count) == (Status.COMPLETED, 2)
    assert (done.last_status_code, done.last_error) == (200, None)
    assert await store.tasks.get(created.id) == done

    rows = await store.tasks.attempts(created.id)
    summary = [
        (row["number"], row["started"], row["duration_s"], row["status_code"], row["error"])
        for row in rows
    ]
    assert summary == [
        (1, NOW + 0.5, 10.0, None, "Timeout during request"),
        (2, NOW, 0.25, 200, None),
    ]
    assert all(row["task_id"] == created.id for row in rows)


async def test_settle_after_the_lease_was_taken_over_changes_nothing_but_is_recorded(
    store: Store,
) -> None:
    created = await store.tasks.insert(spec(timeout_s=10), NOW)
    stale = await acquire_one(store, created, NOW)  # attempt 1: its call hangs
    current = await acquire_one(store, created, stale.due)  # lease ran out: attempt 2
    assert (stale.retry_count, current.retry_count) == (1, 2)

    late = await store.tasks.settle(stale, DONE, Status.COMPLETED, stale.due, stale.due + 1)

    assert late is None
    assert await store.tasks.get(created.id) == current  # still attempt 2's, in progress
    assert [row["number"] for row in await store.tasks.attempts(created.id)] == [1]
    assert (await store.tasks.attempts(created.id))[0]["status_code"] == 200

    settled = await store.tasks.settle(current, GONE, Status.FAILED, current.due, current.due - 1)
    assert settled is not None and settled.status is Status.FAILED
    assert [row["number"] for row in await store.tasks.attempts(created.id)] == [1, 2]


async def test_settling_twice_keeps_the_first_result(store: Store) -> None:
    task = await acquire_one(store, await store.tasks.insert(spec(), NOW), NOW)
    assert await store.tasks.settle(task, DONE, Status.COMPLETED, task.due, NOW + 1) is not None
    assert await store.tasks.settle(task, BUSY, Status.PENDING, NOW + 5, NOW + 2) is None
    stored = await store.tasks.get(task.id)
    assert stored is not None
    assert (stored.status, stored.last_status_code) == (Status.COMPLETED, 200)
    assert len(await store.tasks.attempts(task.id)) == 2


async def test_due_ids_are_the_due_unfinished_tasks_oldest_first(store: Store) -> None:
    third = await store.tasks.insert(spec(), NOW + 3)
    first = await store.tasks.insert(spec(), NOW + 1)
    second = await store.tasks.insert(spec(), NOW + 2)
    await store.tasks.insert(spec(), NOW + 100)  # not due
    await finish(store, await store.tasks.insert(spec(), NOW), DONE, Status.COMPLETED, NOW)
    await finish(store, await store.tasks.insert(spec(), NOW), GONE, Status.FAILED, NOW)
    # In progress, lease ran out at NOW + 1.5: its consumer died; due again.
    orphan = await store.tasks.acquire(
        [(await store.tasks.insert(spec(timeout_s=1), NOW)).id], NOW, 0.5, MAX_RETRIES
    )
    assert orphan[0].due == NOW + 1.5

    expected = [first.id, orphan[0].id, second.id, third.id]
    assert await store.tasks.due_ids(NOW + 10, 100, MAX_RETRIES) == expected
    assert await store.tasks.due_ids(NOW + 10, 2, MAX_RETRIES) == expected[:2]
    assert await store.tasks.due_ids(NOW + 1.5, 100, MAX_RETRIES) == expected[:2]
    assert await store.tasks.due_ids(NOW + 0.5, 100, MAX_RETRIES) == []
    # Out of attempts (retry_count 1 of 1): left to expire, not re-notified.
    assert await store.tasks.due_ids(NOW + 10, 100, 1) == [first.id, second.id, third.id]


async def test_expire_fails_tasks_out_of_attempts_whose_lease_ran_out(store: Store) -> None:
    last = await acquire_one(store, await store.tasks.insert(spec(timeout_s=10), NOW), NOW, 1)
    pending = await store.tasks.insert(spec(), NOW)
    assert last.due == NOW + 10 + LEASE_EXTRA_S

    assert await store.tasks.expire(last.due - 1, 1) == ([], [])  # its final call may still answer
    assert await store.tasks.expire(last.due + 1, 2) == ([], [])  # one more attempt allowed
    (expired,), callbacks = await store.tasks.expire(last.due, 1)
    assert callbacks == []  # it asked for none

    assert expired.id == last.id
    assert expired.status is Status.FAILED
    assert expired.retry_count == 1
    assert expired.modified == last.due
    assert expired.last_error is not None and "final attempt" in expired.last_error
    assert await store.tasks.get(last.id) == expired
    assert await store.tasks.get(pending.id) == pending  # attempts left: untouched
    assert await store.tasks.expire(last.due + 100, 1) == ([], [])


async def test_cleanup_deletes_old_finished_tasks_in_batches(store: Store) -> None:
    old = []
    for offset in range(4):  # finished at NOW+0 .. NOW+3, oldest first
        result, status = (GONE, Status.FAILED) if offset == 2 else (DONE, Status.COMPLETED)
        old.append(
            await finish(store, await store.tasks.insert(spec(), NOW), result, status, NOW + offset)
        )
    recent = await finish(
        store, await store.tasks.insert(spec(), NOW), DONE, Status.COMPLETED, NOW + 900
    )
    pending = await store.tasks.insert(spec(), NOW)
    running = await acquire_one(store, await store.tasks.insert(spec(), NOW), NOW)
    failing = await acquire_one(store, await store.tasks.insert(spec(), NOW), NOW)
    retrying = await store.tasks.settle(failing, BUSY, Status.PENDING, NOW + 5, NOW)
    assert retrying is not None
    cutoff = NOW + 500

    assert await store.tasks.cleanup(cutoff, 3) == 3
    assert [await store.tasks.get(task.id) for task in old[:3]] == [None, None, None]
    assert await store.tasks.get(old[3].id) == old[3]
    assert await store.tasks.cleanup(cutoff, 3) == 1
    assert await store.tasks.cleanup(cutoff, 3) == 0

    for task in old:
        assert await store.tasks.get(task.id) is None
        assert await store.tasks.attempts(task.id) == []
    for task in (recent, pending, running, retrying):
        assert await store.tasks.get(task.id) == task
    assert len(await store.tasks.attempts(recent.id)) == 1
    assert len(await store.tasks.attempts(retrying.id)) == 1


async def test_cleanup_never_deletes_unfinished_tasks_however_old(store: Store) -> None:
    pending = await store.tasks.insert(spec(), NOW)
    running = await acquire_one(store, await store.tasks.insert(spec(), NOW), NOW)
    assert await store.tasks.cleanup(NOW + 10_000_000, 100) == 0
    assert await store.tasks.get(pending.id) == pending
    assert await store.tasks.get(running.id) == running


# -- query plans ---------------------------------------------------------------


async def captured_statement(
    engine: AsyncEngine, run: Callable[[], Awaitable[object]]
) -> tuple[str, Any]:
    """The first SQL statement (with its parameters) that `run` sends."""
    return (await all_statements(engine, run))[0]


async def query_plan(engine: AsyncEngine, statement: str, parameters: Any) -> str:
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in rows)
        # A tiny table is cheaper to scan: forbid that, to see whether the index *can* serve.
        await conn.exec_driver_sql("SET enable_seqscan = off")
        rows = await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("due_ids", "ix_tasks_due_unfinished"),
        ("expire", "ix_tasks_due_unfinished"),
        ("cleanup", "ix_tasks_modified_finished"),
    ],
)
async def test_periodic_queries_use_their_partial_index(
    engine: AsyncEngine, store: Store, query: str, index: str
) -> None:
    """The requeuer runs these every few seconds over the whole table."""
    for offset in range(20):
        await store.tasks.insert(spec(), NOW + offset)
    runs: dict[str, Callable[[], Awaitable[object]]] = {
        "due_ids": lambda: store.tasks.due_ids(NOW + 10, 1000, MAX_RETRIES),
        "expire": lambda: store.tasks.expire(NOW + 10, MAX_RETRIES),
        "cleanup": lambda: store.tasks.cleanup(NOW - 100, 500),
    }
    statement, parameters = await captured_statement(engine, runs[query])
    plan = await query_plan(engine, statement, parameters)
    assert index in plan, f"{statement}\n{parameters}\n{plan}"


# -- batches -----------------------------------------------------------------


async def test_insert_many_stores_each_task_in_order(engine: AsyncEngine, store: Store) -> None:
    """One transaction; on PostgreSQL one statement too, sent on the driver,
    where SQLAlchemy does not see it: test_round_trips counts it on the wire.
    (SQLite cannot promise the order of a multi-row RETURNING, so SQLAlchemy
    sends one row at a time.)"""
    specs = [spec(url=f"http://127.0.0.1:9/hook/{n}", body=bytes([n]) * n) for n in range(5)]
    statements = await all_statements(engine, lambda: store.tasks.insert_many(specs, NOW))
    created = await store.tasks.insert_many(specs, NOW)
    inserts = [statement for statement, _ in statements if "INSERT INTO tasks" in statement]
    assert len(inserts) == (0 if engine.dialect.name == "postgresql" else len(specs))
    assert [task.url for task in created] == [s.url for s in specs]
    assert [task.id for task in created] == sorted(task.id for task in created)
    for task in created:
        assert await store.tasks.get(task.id) == task


async def test_settle_many_settles_held_attempts_and_skips_stale_ones(store: Store) -> None:
    held = [await acquire_one(store, await store.tasks.insert(spec(), NOW), NOW) for _ in range(3)]
    stale = dataclasses.replace(held[1], retry_count=held[1].retry_count + 7)
    batch = [
        Settlement(held[0], outcome(Verdict.COMPLETED, 200), Status.COMPLETED, held[0].due),
        Settlement(stale, outcome(Verdict.FAILED, 404, "HTTP 404"), Status.FAILED, stale.due),
        Settlement(held[2], outcome(Verdict.RETRY, 503, "HTTP 503"), Status.PENDING, NOW + 60),
    ]
    (first, skipped, retried), callbacks = await store.tasks.settle_many(batch, NOW + 1)
    assert callbacks == []
    assert skipped is None
    assert first == await store.tasks.get(held[0].id)
    assert first is not None and (first.status, first.last_status_code) == (Status.COMPLETED, 200)
    assert await store.tasks.get(held[1].id) == held[1]  # untouched: a newer attempt owns it
    assert retried == await store.tasks.get(held[2].id)
    assert retried is not None and (retried.status, retried.due) == (Status.PENDING, NOW + 60)
    # Every answer is recorded, the stale one too.
    assert [a["status_code"] for a in await store.tasks.attempts(held[1].id)] == [404]
    assert [a["number"] for a in await store.tasks.attempts(held[2].id)] == [1]


async def test_hot_statements_find_their_rows_by_primary_key(
    engine: AsyncEngine, store: Store
) -> None:
    """Acquire and settle find the rows they name by index, however large the table."""
    created = [await store.tasks.insert(spec(), NOW) for _ in range(20)]
    acquired = await all_statements(
        engine, lambda: store.tasks.acquire([t.id for t in created[:5]], NOW, 2.0, MAX_RETRIES)
    )
    held = await store.tasks.get(created[0].id)
    assert held is not None
    item = Settlement(held, outcome(Verdict.COMPLETED, 200), Status.COMPLETED, held.due)
    settled = await all_statements(engine, lambda: store.tasks.settle_many([item], NOW))
    for statement, parameters in acquired + settled:
        if not statement.lstrip().startswith(("UPDATE", "WITH")):
            continue
        plan = await query_plan(engine, statement, parameters)
        # An index lookup (the primary key, or the small partial index of
        # unfinished tasks), never a scan of the whole table.
        uses_index = any(
            name in plan for name in ("pk_tasks", "INTEGER PRIMARY KEY", "ix_tasks_due_unfinished")
        )
        assert uses_index and "Seq Scan" not in plan and "SCAN tasks" not in plan, (
            f"{statement}\n{plan}"
        )


async def test_a_scheduled_task_is_never_acquired_before_its_time(store: Store) -> None:
    """The fresh-task clock slack is for tasks due at once, not for scheduled ones."""
    task = await store.tasks.insert(spec(due=NOW + 0.5), NOW)
    assert task.due == NOW + 0.5
    assert await store.tasks.acquire([task.id], NOW, LEASE_EXTRA_S, MAX_RETRIES) == []
    assert await store.tasks.due_ids(NOW, 100, MAX_RETRIES) == []
    assert await store.tasks.upcoming(NOW, NOW + 1, 100, MAX_RETRIES) == [(task.id, NOW + 0.5)]
    (acquired,) = await store.tasks.acquire([task.id], NOW + 0.5, LEASE_EXTRA_S, MAX_RETRIES)
    assert acquired.id == task.id and acquired.retry_count == 1


async def test_a_task_s_own_retries_bound_its_attempts(store: Store) -> None:
    task = await store.tasks.insert(spec(retries=1), NOW)
    (first,) = await store.tasks.acquire([task.id], NOW, LEASE_EXTRA_S, MAX_RETRIES)
    await store.tasks.settle(first, BUSY, Status.PENDING, NOW + 1, NOW)
    assert await store.tasks.acquire([task.id], NOW + 2, LEASE_EXTRA_S, MAX_RETRIES) == []
    assert await store.tasks.due_ids(NOW + 2, 100, MAX_RETRIES) == []


async def test_expired_idempotency_keys_are_forgotten(store: Store) -> None:
    keyed = [Keyed("k1", "f1"), Keyed("k2", "f2"), None]
    made = await store.tasks.keys.insert([spec()] * 3, keyed, 7, NOW + 60, NOW)
    assert [replayed for _, replayed in made] == [False, False, False]
    assert await store.tasks.keys.forget_expired(NOW + 60) == 0  # the window's last moment
    assert await store.tasks.keys.forget_expired(NOW + 61) == 2
    again = await store.tasks.keys.insert([spec()], [Keyed("k1", "f1")], 7, NOW + 200, NOW + 61)
    assert again[0][1] is False and again[0][0].id not in {task.id for task, _ in made}
