"""Schedules in the store, on SQLite and PostgreSQL: their rows, which are
due, and firing a tick exactly once however many firings race for it.

Times are passed explicitly, so these tests move the clock instead of sleeping.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from ntorque.schedules import Rule, Schedule, Settings, Template, plan
from ntorque.store import Store
from ntorque.tables import tasks
from ntorque.tasks import Task
from tests.factories import NOW

TEMPLATE = Template(
    url="http://127.0.0.1:9/tick", method="POST", timeout_s=None, body=b"\x00tick",
    content_type="application/octet-stream", charset="", headers=(("X-Kind", "tick"),),
    queue="ticks", retries=3, backoff="linear", callback_url=None,
)  # fmt: skip
EVERY_MINUTE = Settings(Rule(every_s=60.0, anchor=NOW))


async def make(store: Store, settings: Settings = EVERY_MINUTE, app_id: int = 0) -> Schedule:
    made = await store.schedules.create(app_id, settings, TEMPLATE, NOW)
    assert made is not None
    return made


async def fire(store: Store, schedule: Schedule, now: float) -> list[Task] | None:
    """The schedule's round alone: its tasks, or None when it was not fired."""
    assert schedule.next_tick is not None
    firing = plan(schedule.rule, schedule.settings.catch_up, schedule.next_tick, now)
    return (await store.tasks.fire([(schedule, firing)], now)).get(schedule.id)


async def test_a_schedule_round_trips_with_its_template(store: Store) -> None:
    made = await make(store)
    assert made.next_tick == NOW + 60
    assert made.template == TEMPLATE
    assert await store.schedules.get(0, made.id) == made
    assert await store.schedules.get(7, made.id) is None  # another application's
    assert [s.id for s in await store.schedules.page(0, 10)] == [made.id]
    assert await store.schedules.page(7, 10) == []


async def test_due_lists_active_schedules_whose_tick_has_come(store: Store) -> None:
    soon = await make(store)
    later = await make(store, Settings(Rule(every_s=120.0, anchor=NOW)))
    paused = await make(store, Settings(Rule(every_s=30.0, anchor=NOW), paused=True))
    assert await store.schedules.due(NOW + 59, 10) == []
    assert [s.id for s in await store.schedules.due(NOW + 200, 10)] == [soon.id, later.id]
    assert await store.schedules.earliest() == NOW + 60
    await store.schedules.set_paused(0, paused.id, False, NOW)
    assert await store.schedules.earliest() == NOW + 30


async def test_a_tick_makes_a_task_from_the_template(store: Store) -> None:
    schedule = await make(store)
    (task,) = await fire(store, schedule, NOW + 60.5)
    assert (task.schedule_id, task.schedule_tick, task.due) == (schedule.id, NOW + 60, NOW + 60)
    assert (task.url, task.body, task.headers, task.queue) == (
        TEMPLATE.url, TEMPLATE.body, TEMPLATE.headers, "ticks",
    )  # fmt: skip
    assert (task.retries, task.backoff, task.timeout_s, task.app_id) == (3, "linear", 60, None)
    assert await store.tasks.get(task.id) == task
    moved = await store.schedules.get(0, schedule.id)
    assert moved is not None and (moved.next_tick, moved.last_tick) == (NOW + 120, NOW + 60)
    # The same firing again (a node that read the schedule before the move): nothing.
    assert await fire(store, schedule, NOW + 60.5) is None


async def test_racing_firings_make_one_task_per_tick(store: Store) -> None:
    """Eight firings of the same tick at once, as eight nodes would: one wins."""
    schedule = await make(store)
    results = await asyncio.gather(*(fire(store, schedule, NOW + 60.1) for _ in range(8)))
    winners = [made for made in results if made is not None]
    assert len(winners) == 1 and len(winners[0]) == 1
    async with store.engine.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).where(tasks.c.schedule_id == schedule.id)
        )
    assert count == 1


async def test_the_database_refuses_a_second_task_for_a_tick(store: Store) -> None:
    """The last word, should a firing ever slip past the guarded update."""
    schedule = await make(store)
    (task,) = await fire(store, schedule, NOW + 60)
    copy = {
        "url": task.url, "method": task.method, "timeout_s": 60, "body": b"", "content_type": "",
        "charset": "", "headers": [], "status": "pending", "retry_count": 0, "due": NOW,
        "created": NOW, "modified": NOW, "schedule_id": schedule.id, "schedule_tick": NOW + 60,
    }  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError):
        async with store.engine.begin() as conn:
            await conn.execute(tasks.insert().values(copy))


async def test_a_paused_or_deleted_schedule_fires_nothing(store: Store) -> None:
    schedule = await make(store)
    await store.schedules.set_paused(0, schedule.id, True, NOW)
    assert await fire(store, schedule, NOW + 60) is None
    await store.schedules.set_paused(0, schedule.id, False, NOW)
    assert await store.schedules.delete(0, schedule.id)
    assert await fire(store, schedule, NOW + 60) is None
    assert not await store.schedules.delete(0, schedule.id)


async def test_a_round_fires_what_no_one_else_fired(store: Store) -> None:
    """In one transaction: a schedule another node fired is left out."""
    first, second = await make(store), await make(store)
    assert await fire(store, first, NOW + 60) is not None  # another node's round
    firings = [
        (schedule, plan(schedule.rule, "latest", NOW + 60, NOW + 60.2))
        for schedule in (first, second)
    ]
    made = await store.tasks.fire(firings, NOW + 60.2)
    assert list(made) == [second.id] and len(made[second.id]) == 1


async def test_an_application_has_a_bounded_number_of_schedules(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ntorque.store.schedules.MAX_SCHEDULES", 2)
    await make(store, app_id=5)
    await make(store, app_id=5)
    assert await store.schedules.create(5, EVERY_MINUTE, TEMPLATE, NOW) is None
    assert await store.schedules.create(6, EVERY_MINUTE, TEMPLATE, NOW) is not None


async def test_a_deactivated_applications_schedules_make_nothing(store: Store) -> None:
    """Its API key no longer works; its schedules stop too, until it is
    active again (then its catch_up says what the gap makes)."""
    app = await store.apps.create("ticking", "d" * 64, NOW)
    assert app is not None
    schedule = await make(store, app_id=app["id"])
    assert [s.id for s in await store.schedules.due(NOW + 60, 10)] == [schedule.id]
    await store.apps.update("ticking", active=False)
    assert await store.schedules.due(NOW + 60, 10) == []
    assert await store.schedules.earliest() is None
    await store.apps.update("ticking", active=True)
    assert [s.id for s in await store.schedules.due(NOW + 60, 10)] == [schedule.id]


async def test_a_database_error_never_shows_the_statements_parameters(store: Store) -> None:
    """What a logged traceback of a failed write would show: not the body."""
    schedule = await make(store)
    (task,) = await fire(store, schedule, NOW + 60)
    copy = {
        "url": task.url, "method": task.method, "timeout_s": 60, "body": b"secret-body",
        "content_type": "", "charset": "", "headers": [], "status": "pending", "retry_count": 0,
        "due": NOW, "created": NOW, "modified": NOW, "schedule_id": schedule.id,
        "schedule_tick": NOW + 60,
    }  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError) as raised:
        async with store.engine.begin() as conn:
            await conn.execute(tasks.insert().values(copy))
    assert "secret-body" not in str(raised.value)
