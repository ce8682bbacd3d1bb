"""Named queues in the store, on SQLite and PostgreSQL: settings, defaults
for new tasks, figures, and the acquire under limits (paused, concurrency,
rate), exact when acquires race.

Times are passed explicitly, so these tests move the clock instead of sleeping.
"""

from __future__ import annotations

import asyncio

from ntorque.queues import QueueSettings
from ntorque.store import Store
from ntorque.tasks import Status
from tests.factories import DONE, LEASE_EXTRA_S, MAX_RETRIES, NOW, spec

MAIL = "mail"


async def due_tasks(store: Store, count: int, queue: str = MAIL, app_id: int | None = None):
    return await store.tasks.insert_many(
        [spec(queue=queue, app_id=app_id) for _ in range(count)], NOW
    )


async def limit(store: Store, name: str = MAIL, app_id: int = 0, **settings: object) -> None:
    await store.tasks.queues.put(app_id, name, QueueSettings(**settings), NOW)  # type: ignore[arg-type]


async def lease(store: Store, ids: list[int], now: float = NOW):
    return await store.tasks.lease(ids, now, LEASE_EXTRA_S, MAX_RETRIES)


# -- settings and defaults -------------------------------------------------------


async def test_a_task_names_its_queue_and_the_queue_exists_from_then_on(store: Store) -> None:
    (task,) = await due_tasks(store, 1)
    assert task.queue == MAIL
    assert (await store.tasks.get(task.id)).queue == MAIL  # type: ignore[union-attr]
    named = await store.tasks.queues.get(0, MAIL, NOW)
    assert named is not None and named.configured
    assert named.settings == QueueSettings()
    assert await store.tasks.queues.get(0, "never-named", NOW) is None
    assert [q.name for q in await store.tasks.queues.page(0, NOW)] == ["default", MAIL]


async def test_queue_defaults_fill_what_a_task_leaves_out(store: Store) -> None:
    await limit(store, retries=3, backoff="linear", timeout_s=7)
    bare = await store.tasks.insert(spec(queue=MAIL, timeout_s=None), NOW)
    own = await store.tasks.insert(
        spec(queue=MAIL, timeout_s=20, retries=9, backoff="exponential"), NOW
    )
    elsewhere = await store.tasks.insert(spec(timeout_s=None), NOW)
    assert (bare.timeout_s, bare.retries, bare.backoff) == (7, 3, "linear")
    assert (own.timeout_s, own.retries, own.backoff) == (20, 9, "exponential")
    assert (elsewhere.timeout_s, elsewhere.retries, elsewhere.backoff) == (60, None, None)
    assert await store.tasks.get(bare.id) == bare


async def test_queue_names_are_per_application(store: Store) -> None:
    app_a = (await store.apps.create("a", "a" * 64, NOW) or {})["id"]
    app_b = (await store.apps.create("b", "b" * 64, NOW) or {})["id"]
    await limit(store, app_id=app_a, max_concurrency=1)
    a_tasks = await due_tasks(store, 3, app_id=app_a)
    b_tasks = await due_tasks(store, 3, app_id=app_b)
    leased = await lease(store, [t.id for t in a_tasks + b_tasks])
    assert len([t for t in leased.tasks if t.app_id == app_a]) == 1
    assert len([t for t in leased.tasks if t.app_id == app_b]) == 3
    assert (await store.tasks.queues.get(app_b, MAIL, NOW)).settings == QueueSettings()  # type: ignore[union-attr]


async def test_delete_forgets_only_an_empty_queue(store: Store) -> None:
    (task,) = await due_tasks(store, 1)
    assert await store.tasks.queues.delete(0, MAIL) is False
    await store.tasks.settle(
        (await lease(store, [task.id])).tasks[0], DONE, Status.COMPLETED, NOW, NOW
    )
    assert await store.tasks.queues.delete(0, MAIL) is True
    assert await store.tasks.queues.delete(0, MAIL) is None


async def test_figures_count_pending_due_in_flight_and_recent_outcomes(store: Store) -> None:
    tasks = await due_tasks(store, 4)
    later = await store.tasks.insert(spec(queue=MAIL, due=NOW + 60), NOW)
    leased = (await lease(store, [tasks[0].id, tasks[1].id], NOW + 1)).tasks
    await store.tasks.settle(leased[0], DONE, Status.COMPLETED, leased[0].due, NOW + 2)
    named = await store.tasks.queues.get(0, MAIL, NOW + 3)
    assert named is not None
    figures = named.figures
    assert figures.pending == 3  # two due, one later
    assert figures.due_now == 2
    assert figures.in_flight == 1
    assert (figures.completed_recently, figures.failed_recently) == (1, 0)
    assert figures.oldest_due == NOW
    assert named.to_json(NOW + 3)["figures"]["oldest_due_age_s"] == 3.0
    assert later.id not in [t.id for t in leased]


# -- the acquire under limits ------------------------------------------------------


async def test_paused_queue_starts_nothing_and_resumed_starts_all(store: Store) -> None:
    await store.tasks.queues.set_paused(0, MAIL, True, NOW)
    tasks = await due_tasks(store, 3)
    ids = [t.id for t in tasks]
    leased = await lease(store, ids)
    assert leased.tasks == [] and leased.waits == []
    assert await store.tasks.due_ids(NOW, 100, MAX_RETRIES) == []
    await store.tasks.queues.set_paused(0, MAIL, False, NOW)
    assert [t.id for t in (await lease(store, ids)).tasks] == ids


async def test_max_concurrency_counts_live_leases_only(store: Store) -> None:
    await limit(store, max_concurrency=2)
    tasks = await due_tasks(store, 5)
    ids = [t.id for t in tasks]
    first = await lease(store, ids)
    assert [t.id for t in first.tasks] == ids[:2]  # oldest first
    assert all(t.limited for t in first.tasks)
    assert (await lease(store, ids)).tasks == []
    await store.tasks.settle(first.tasks[0], DONE, Status.COMPLETED, first.tasks[0].due, NOW)
    assert [t.id for t in (await lease(store, ids)).tasks] == [ids[2]]
    # A crashed node's leases stop counting when they run out.
    # ids[1] and ids[2] are leased, the queue is full; once their leases run
    # out, they are due again and the queue has room for both.
    expired = first.tasks[1].due + 0.1
    assert (await lease(store, [ids[3]], expired - 1)).tasks == []
    taken = (await lease(store, [ids[1], ids[2]], expired)).tasks
    assert [t.id for t in taken] == [ids[1], ids[2]]


async def test_rate_limit_spends_a_token_bucket_and_says_when_the_next_token_is(
    store: Store,
) -> None:
    await limit(store, rate_per_s=10.0, burst=3)
    ids = [t.id for t in await due_tasks(store, 10)]
    first = await lease(store, ids, NOW)
    assert len(first.tasks) == 3  # a full bucket: the burst
    (wait,) = first.waits
    assert (wait.app_id, wait.queue) == (0, MAIL)
    assert abs(wait.until - (NOW + 0.1)) < 1e-6
    assert len((await lease(store, ids, NOW + 0.05)).tasks) == 0
    assert len((await lease(store, ids, NOW + 0.25)).tasks) == 2  # 2.5 tokens
    assert len((await lease(store, ids, NOW + 10)).tasks) == 3  # never more than the burst


async def test_racing_acquires_never_exceed_the_concurrency_limit(store: Store) -> None:
    await limit(store, max_concurrency=3)
    ids = [t.id for t in await due_tasks(store, 30)]
    results = await asyncio.gather(*(lease(store, [task_id]) for task_id in ids))
    assert sum(len(result.tasks) for result in results) == 3


async def test_racing_acquires_never_overspend_the_rate_limit(store: Store) -> None:
    await limit(store, rate_per_s=1.0, burst=4)
    ids = [t.id for t in await due_tasks(store, 30)]
    results = await asyncio.gather(*(lease(store, ids[i : i + 3]) for i in range(0, 30, 3)))
    assert sum(len(result.tasks) for result in results) == 4


async def test_limited_and_unlimited_queues_share_one_acquire(store: Store) -> None:
    await limit(store, max_concurrency=1)
    limited = await due_tasks(store, 3)
    free = await due_tasks(store, 3, queue="default")
    leased = await lease(store, [t.id for t in limited + free])
    assert sorted(t.id for t in leased.tasks) == sorted([limited[0].id] + [t.id for t in free])
    assert [t.limited for t in leased.tasks if t.queue == "default"] == [False] * 3


async def test_limited_queues_are_woken_not_requeued(store: Store) -> None:
    await limit(store, max_concurrency=2)
    limited = [t.id for t in await due_tasks(store, 5)]
    free = [t.id for t in await due_tasks(store, 2, queue="default")]
    assert await store.tasks.due_ids(NOW, 100, MAX_RETRIES) == free
    assert await store.tasks.queues.limited_with_due(NOW) == [(0, MAIL)]
    ready = await store.tasks.queues.ready(0, MAIL, NOW, MAX_RETRIES, 100)
    assert (ready.ids, ready.unlimited) == (limited[:2], False)
    await lease(store, limited)
    assert (await store.tasks.queues.ready(0, MAIL, NOW, MAX_RETRIES, 100)).ids == []
    await store.tasks.queues.set_paused(0, MAIL, True, NOW)
    assert await store.tasks.queues.limited_with_due(NOW) == []


async def test_changing_a_rate_refills_the_bucket(store: Store) -> None:
    await limit(store, rate_per_s=1.0, burst=2)
    ids = [t.id for t in await due_tasks(store, 6)]
    assert len((await lease(store, ids)).tasks) == 2
    await limit(store, rate_per_s=1.0, burst=2)  # the same rate: the bucket stays spent
    assert len((await lease(store, ids)).tasks) == 0
    await limit(store, rate_per_s=2.0, burst=3)
    assert len((await lease(store, ids)).tasks) == 3


async def test_a_wake_up_pages_an_unlimited_queue_oldest_first(store: Store) -> None:
    ids = [t.id for t in await due_tasks(store, 7)]  # one batch: one due date
    pages, after = [], None
    while True:
        ready = await store.tasks.queues.ready(0, MAIL, NOW, MAX_RETRIES, 3, after)
        assert ready.unlimited
        pages.append(ready.ids)
        if len(ready.ids) < 3:
            break
        after = ready.last
    assert pages == [ids[:3], ids[3:6], ids[6:]]


async def test_a_task_stored_into_a_paused_queue_is_held(store: Store) -> None:
    (running,) = await due_tasks(store, 1)
    await store.tasks.queues.set_paused(0, MAIL, True, NOW)
    (held,) = await due_tasks(store, 1)
    default = await store.tasks.insert(spec(), NOW)
    assert (running.held, held.held, default.held) == (False, True, False)
