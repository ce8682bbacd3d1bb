"""Firing due schedules, on both backends: a round makes every due
schedule's tick in one transaction, and two nodes firing the same round at
once make each tick once, without a deadlock.

One transaction per schedule cost ~8 ms each on three PostgreSQL nodes
sharing two cores with their calls: 100 schedules due at one second were
made over a second late (`python -m bench schedules --schedules 100`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ntorque.store import ticks
from tests.conftest import Backend, live_for
from tests.inprocess import Clock, LiveNode

SCHEDULES = 30


async def make_schedules(node: LiveNode, count: int) -> list[int]:
    """Schedules ticking every second, every other one by a 6-field cron."""
    made = []
    for n in range(count):
        rule: dict[str, Any] = {"every_s": 1} if n % 2 else {"cron": "* * * * * *"}
        body = {**rule, "task": {"url": "http://127.0.0.1:9/unused"}}
        answer = await node.request("POST", "/schedules", json.dumps(body).encode())
        assert answer.status == 201, answer.body
        made.append(answer.json["id"])
    return made


async def ticks_by_schedule(node: LiveNode, ids: list[int]) -> dict[int, list[str]]:
    found = {}
    for schedule_id in ids:
        answer = await node.request("GET", f"/tasks?schedule_id={schedule_id}")
        found[schedule_id] = [task["schedule_tick"] for task in answer.json["tasks"]]
    return found


class Commits:
    """Counts the transactions committed on an engine while it is entered: a
    COMMIT, or a statement that commits by itself (autocommit, see
    Database.single)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.sync_engine
        self.count = 0

    def _committed(self, _connection: sa.Connection) -> None:
        self.count += 1

    def _executing(self, connection: sa.Connection, *_: object) -> None:
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            self.count += 1

    def __enter__(self) -> Commits:
        sa.event.listen(self.engine, "commit", self._committed)
        sa.event.listen(self.engine, "before_cursor_execute", self._executing)
        return self

    def __exit__(self, *_: object) -> None:
        sa.event.remove(self.engine, "commit", self._committed)
        sa.event.remove(self.engine, "before_cursor_execute", self._executing)


async def test_a_round_makes_every_due_tick_in_one_transaction(backend: Backend) -> None:
    clock = Clock()
    async with live_for(backend, loops=False, clock=clock) as node:
        ids = await make_schedules(node, SCHEDULES)
        with Commits(node.running.engine) as commits:
            await node.running.ticker.round()  # a look: the soonest tick, nothing due
        assert commits.count == 1, commits.count
        clock.advance(1.5)  # one tick of each is due
        with Commits(node.running.engine) as commits:
            await node.running.ticker.round()
        # Reading the due schedules, firing them, reading the soonest next tick.
        assert commits.count == 3, commits.count
        ticks = await ticks_by_schedule(node, ids)
    assert all(len(made) == 1 for made in ticks.values()), ticks


async def test_two_nodes_firing_one_round_at_once_make_each_tick_once(backend: Backend) -> None:
    """Both read the same due schedules and fire them in one transaction
    each: the guarded UPDATEs, in schedule id order, let one of them make
    every tick (or share them out), and neither waits for the other forever."""
    clock = Clock()
    async with (
        live_for(backend, loops=False, clock=clock) as first,
        live_for(backend, loops=False, clock=clock) as second,
    ):
        ids = await make_schedules(first, SCHEDULES)
        for _ in range(3):  # three ticks, each fired by both nodes at once
            clock.advance(1.0)
            rounds = (first.running.ticker.round(), second.running.ticker.round())
            await asyncio.wait_for(asyncio.gather(*rounds), timeout=20)
        ticks = await ticks_by_schedule(first, ids)
    assert all(len(made) == len(set(made)) == 3 for made in ticks.values()), ticks


async def test_a_schedule_that_cannot_fire_holds_up_no_other(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its round fails as a whole, then each schedule fires alone: the
    others make their ticks, it makes none, and the ticker waits a look."""
    clock = Clock()
    async with live_for(backend, loops=False, clock=clock) as node:
        ids = await make_schedules(node, 4)
        broken = ids[1]
        real = ticks.tick_task

        def tick_task(schedule: Any, tick: float) -> Any:
            if schedule.id == broken:
                raise ValueError("this template cannot make a task")
            return real(schedule, tick)

        monkeypatch.setattr(ticks, "tick_task", tick_task)
        clock.advance(1.5)
        assert await node.running.ticker.round() == node.running.ticker.look_s
        made = await ticks_by_schedule(node, ids)
    assert [len(made[schedule_id]) for schedule_id in ids] == [1, 0, 1, 1]
