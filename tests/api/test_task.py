"""One task's actions: cancel (POST .../cancel and DELETE) and retry, with
their 409s; a call in flight when its task is cancelled. Both backends."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode


def hook(hooks: HookServer, prefix: str) -> tuple[str, str]:
    path = f"{prefix}/{uuid.uuid4().hex}"
    return path, hooks.url(path)


async def attempts(node: LiveNode, task_id: int) -> list[dict[str, object]]:
    answer = await node.request("GET", f"/tasks/{task_id}/attempts")
    return list(answer.json["attempts"])


@pytest.mark.parametrize("how", ["POST /tasks/{id}/cancel", "DELETE /tasks/{id}"])
async def test_a_cancelled_task_is_never_called(
    backend: Backend, hooks: HookServer, how: str
) -> None:
    clock = Clock()
    async with live_for(backend, loops=False, clock=clock) as node:
        path, url = hook(hooks, "/status/503")
        task = await node.enqueue(url)
        await node.consume()  # one attempt, then waiting for its retry
        method, route = how.split()
        answer = await node.request(method, route.format(id=task["id"]))
        assert answer.status == 200, answer.body
        assert (answer.json["status"], answer.json["due"]) == ("cancelled", None)
        clock.advance(3600)
        await node.requeue()
        assert await node.consume() == []
        assert (await node.task(task["id"]))["status"] == "cancelled"
        assert len(hooks.calls(path)) == 1
        again = await node.request("POST", f"/tasks/{task['id']}/cancel")
        assert again.status == 409 and "cancelled" in again.json["error"]


async def test_cancelling_a_finished_task_is_409_and_changes_nothing(
    backend: Backend, hooks: HookServer
) -> None:
    async with live_for(backend, loops=False) as node:
        _, url = hook(hooks, "/status/200")
        task = await node.enqueue(url)
        await node.consume()
        done = await node.task(task["id"])
        answer = await node.request("DELETE", f"/tasks/{task['id']}")
        assert answer.status == 409
        assert answer.json == {
            "status": 409,
            "error": f"task {task['id']} is completed: "
            "only a pending or in-progress task can be cancelled",
        }
        assert await node.task(task["id"]) == done


async def test_a_call_in_flight_finishes_and_is_recorded_but_the_task_stays_cancelled(
    backend: Backend, hooks: HookServer
) -> None:
    async with live_for(backend) as node:
        path, url = hook(hooks, "/slow/1")
        task = await node.enqueue(url)
        await node.wait_for(task["id"], ("in_progress",))
        cancelled = await node.request("POST", f"/tasks/{task['id']}/cancel")
        assert cancelled.json["status"] == "cancelled"
        await hooks.wait_for_calls_async(path, 1)
        deadline = time.monotonic() + 10
        while not await attempts(node, task["id"]):  # until the call's answer is recorded
            assert time.monotonic() < deadline, "the call in flight was never recorded"
            await asyncio.sleep(0.02)
        (attempt,) = await attempts(node, task["id"])
        assert attempt["status_code"] == 200
        assert (await node.task(task["id"]))["status"] == "cancelled"


async def test_retry_runs_a_failed_task_again_with_a_fresh_allowance(
    backend: Backend, hooks: HookServer
) -> None:
    clock = Clock()
    async with live_for(backend, loops=False, clock=clock, max_retries=2) as node:
        path, url = hook(hooks, "/status/503")
        task = await node.enqueue(url)
        await node.consume()
        clock.advance(10)
        await node.requeue()
        await node.consume()
        failed = await node.task(task["id"])
        assert (failed["status"], failed["retry_count"]) == ("failed", 2)
        retried = await node.request("POST", f"/tasks/{task['id']}/retry")
        assert retried.status == 200 and retried.json["status"] == "pending"
        for _ in range(2):  # two more attempts: a fresh allowance
            await node.consume()
            clock.advance(10)
            await node.requeue()
        assert await node.consume() == []
        again = await node.task(task["id"])
        assert (again["status"], again["retry_count"]) == ("failed", 4)
        numbers = [attempt["number"] for attempt in await attempts(node, task["id"])]
        assert numbers == [1, 2, 3, 4]  # the history is kept and goes on
        calls = hooks.calls(path)
        assert [call.headers["ntorque-task-retry-count"] for call in calls] == ["0", "1", "2", "3"]
        assert [call.headers["ntorque-task-retry-limit"] for call in calls] == ["2", "2", "4", "4"]


async def test_retry_runs_a_cancelled_task(backend: Backend, hooks: HookServer) -> None:
    async with live_for(backend, loops=False) as node:
        path, url = hook(hooks, "/status/200")
        task = await node.enqueue(url, delay=600)
        await node.request("POST", f"/tasks/{task['id']}/cancel")
        retried = await node.request("POST", f"/tasks/{task['id']}/retry")
        assert retried.json["status"] == "pending"
        await node.consume()
        assert (await node.task(task["id"]))["status"] == "completed"
        assert len(hooks.calls(path)) == 1


@pytest.mark.parametrize("finish", [False, True])
async def test_retrying_a_pending_or_completed_task_is_409(
    backend: Backend, hooks: HookServer, finish: bool
) -> None:
    async with live_for(backend, loops=False) as node:
        _, url = hook(hooks, "/status/200")
        task = await node.enqueue(url)
        if finish:
            await node.consume()
        status = "completed" if finish else "pending"
        answer = await node.request("POST", f"/task/{task['id']}/retry")
        assert answer.status == 409
        assert answer.json["error"] == (
            f"task {task['id']} is {status}: only a failed or cancelled task can be retried"
        )
