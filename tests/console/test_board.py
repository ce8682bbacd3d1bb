"""The dashboard's queue rows stay cheap: one read of a namespace's figures
per second however many pages and sockets ask, a fresh one after a pause or
resume on this node, and never a read that began before it kept as fresh."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ntorque.channel import LocalChannel
from ntorque.config import Settings
from ntorque.console.board import QueueBoard
from ntorque.console.calls import CallRate
from ntorque.flow import Flow
from ntorque.queues import NamedQueue
from ntorque.store import Store
from ntorque.store import engine as database
from tests.inprocess import Clock

pytestmark = pytest.mark.asyncio


class CountedFlow(Flow):
    """The real Flow on a real store, counting its figures reads (and able to
    hold one open, to change the queue meanwhile)."""

    reads = 0
    gate: asyncio.Event | None = None  # a read begun now waits for it to return

    async def queues(self, app_id: int) -> list[NamedQueue]:
        self.reads += 1
        gate = self.gate
        found = await super().queues(app_id)
        if gate is not None:
            await gate.wait()
        return found


Made = tuple[QueueBoard, CountedFlow, Clock]


@pytest_asyncio.fixture
async def made(tmp_path: Path) -> AsyncIterator[Made]:
    """A board on the real Flow and store (SQLite), its clock moved by hand."""
    url = f"sqlite:///{tmp_path / 'board.db'}"
    await asyncio.to_thread(database.upgrade, url)
    engine = database.make_engine(Settings(database_url=url))
    clock = Clock()
    flow = CountedFlow(Store(engine).tasks.queues, LocalChannel(), max_retries=3, clock=clock)
    try:
        yield QueueBoard(flow, CallRate(), clock=clock), flow, clock
    finally:
        await flow.close()  # the wake-up a resume or pause may leave
        await engine.dispose()


async def test_one_read_per_second_however_many_ask(made: Made) -> None:
    board, flow, clock = made
    together = await asyncio.gather(*(board.rows(0) for _ in range(5)))
    assert flow.reads == 1 and all(rows == together[0] for rows in together)
    assert [row["name"] for row in together[0]] == ["default"]
    assert together[0][0]["calls_per_s"] is None  # nobody counts yet
    clock.advance(0.5)
    await board.rows(0)
    assert flow.reads == 1
    clock.advance(0.5)
    await board.rows(0)
    assert flow.reads == 2
    await board.rows(7)  # another namespace reads its own
    assert flow.reads == 3


async def test_a_pause_here_makes_the_next_read_fresh(made: Made) -> None:
    board, flow, _ = made
    await board.rows(0)
    await flow.pause(0, "mail")
    board.stale(0)
    rows = await board.rows(0)
    assert flow.reads == 2 and [(r["name"], r["paused"]) for r in rows][-1] == ("mail", True)


async def test_a_read_begun_before_a_pause_is_not_kept(made: Made) -> None:
    board, flow, _ = made
    gate = flow.gate = asyncio.Event()
    early = asyncio.ensure_future(board.rows(0))
    while flow.reads == 0:
        await asyncio.sleep(0.01)
    flow.gate = None
    await flow.pause(0, "mail")
    board.stale(0)
    fresh = await board.rows(0)
    assert flow.reads == 2 and [(r["name"], r["paused"]) for r in fresh][-1] == ("mail", True)
    gate.set()
    assert [r["name"] for r in await early] == ["default"]  # its asker gets it
    assert await board.rows(0) == fresh  # but the board keeps the fresh one
    assert flow.reads == 2
