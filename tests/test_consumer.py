"""The consumer and the lease it takes, through a node on both backends: a
call in flight is never started again, however many requeue rounds or
duplicate notifications come while it runs, or after it is done.

One node per backend, shared by the module, runs no loops of its own: the
test drives the consumer and the requeuer and moves the node's clock by
hand, up to the very end of the lease.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode

pytestmark = pytest.mark.asyncio(loop_scope="module")

MIN_DUE_DELAY_S = 1.0
TIMEOUT_S = 10
ROUNDS = 3  # requeue rounds while the call runs


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[LiveNode]:
    clock = Clock()
    async with live_for(
        module_backend, loops=False, clock=clock, min_due_delay_s=MIN_DUE_DELAY_S
    ) as running:
        yield running


def uid() -> str:
    return uuid.uuid4().hex[:12]


async def nothing_started(node: LiveNode) -> None:
    """A requeue round and a consumer round (popping whatever is waiting) start no call."""
    assert (await node.requeue())[0] == 0
    assert await node.running.consumer.run_once(pop_timeout_s=0) == []
    assert await node.running.channel.depth() == 0


async def test_long_hook_is_called_once(node: LiveNode, hooks: HookServer) -> None:
    """A call that lasts several requeue rounds but stays within its timeout
    is not repeated: its lease outlasts the timeout."""
    assert node.clock is not None
    path = f"/slow/0.5/{uid()}"
    task = await node.enqueue(hooks.url(path), timeout=TIMEOUT_S)
    calling = asyncio.ensure_future(node.consume())
    await hooks.wait_for_calls_async(path, 1)
    leased = await node.running.queue.get(task["id"])
    assert leased is not None
    assert leased.due == node.clock.now + MIN_DUE_DELAY_S + TIMEOUT_S  # the lease
    for _ in range(ROUNDS):  # requeue rounds while the call runs
        node.clock.advance(TIMEOUT_S / ROUNDS)
        await nothing_started(node)
    node.clock.advance(leased.due - node.clock.now - 0.001)  # up to the lease's last moment
    await nothing_started(node)
    assert [started.id for started in await calling] == [task["id"]]
    done = await node.task(task["id"])
    assert done["status"] == "completed"
    assert done["retry_count"] == 1
    assert done["last_status_code"] == 200
    # Two more requeue rounds, past the lease: nobody calls the hook again.
    for _ in range(2):
        node.clock.advance(TIMEOUT_S)
        await nothing_started(node)
    assert len(hooks.calls(path)) == 1
    assert (await node.task(task["id"]))["status"] == "completed"


async def test_duplicate_pushes_call_the_hook_once(node: LiveNode, hooks: HookServer) -> None:
    assert node.clock is not None
    path = f"/slow/0.5/{uid()}"
    task = await node.enqueue(hooks.url(path), timeout=TIMEOUT_S)
    calling = asyncio.ensure_future(node.consume())
    await hooks.wait_for_calls_async(path, 1)
    for _ in range(5):
        pushed = await node.request("POST", f"/task/{task['id']}/push")
        assert pushed.status == 201, (pushed.status, pushed.body)
        assert pushed.json["id"] == task["id"]
    assert await node.running.channel.depth() == 5
    await nothing_started(node)  # five notifications popped: none starts a call
    await calling
    done = await node.task(task["id"])
    assert done["status"] == "completed"
    assert done["retry_count"] == 1
    for past_the_lease in (False, True):  # once it is done, pushes change nothing either
        if past_the_lease:
            node.clock.advance(2 * TIMEOUT_S)
        for _ in range(5):
            assert (await node.request("POST", f"/task/{task['id']}/push")).status == 201
        await nothing_started(node)
    assert len(hooks.calls(path)) == 1
    assert (await node.task(task["id"]))["status"] == "completed"
