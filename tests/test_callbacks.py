"""Completion callbacks: a task that ends (completed, failed, cancelled)
makes, in the same commit, a signed POST of its JSON and last attempt to its
callback url; the two are linked both ways. Both backends, in process."""

from __future__ import annotations

import json
import uuid

import pytest

from ntorque.client import verify
from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode


def hook(hooks: HookServer, prefix: str) -> tuple[str, str]:
    path = f"{prefix}/{uuid.uuid4().hex}"
    return path, hooks.url(path)


async def ended_with_callback(node: LiveNode, task_id: int) -> tuple[dict, dict]:
    """The ended task and its callback task, checked to point at each other."""
    task = await node.task(task_id)
    callback = await node.task(task["callback_task_id"])
    assert callback["callback_of"] == task_id
    assert callback["callback_url"] is None and callback["callback_task_id"] is None
    return task, callback


@pytest.mark.parametrize(
    ("prefix", "status"), [("/status/200", "completed"), ("/status/404", "failed")]
)
async def test_an_ended_task_calls_back_with_its_json_and_last_attempt(
    backend: Backend, hooks: HookServer, prefix: str, status: str
) -> None:
    async with live_for(backend, loops=False) as node:
        _, url = hook(hooks, prefix)
        told_path, told = hook(hooks, "/status/200")
        task = await node.enqueue(url, b"a=1", callback=told)
        assert task["callback_url"] == told
        await node.consume()
        ended, callback = await ended_with_callback(node, task["id"])
        assert ended["status"] == status
        assert (callback["url"], callback["method"], callback["content_type"]) == (
            told, "POST", "application/json",
        )  # fmt: skip
        await node.consume()
        (call,) = hooks.calls(told_path)
        report = json.loads(call.body)
        assert report["task"]["id"] == task["id"] and report["task"]["status"] == status
        assert report["attempts"]["number"] == 1
        assert report["attempts"]["status_code"] == int(prefix.rsplit("/", 1)[1])
        secret = (await node.apps.signing_secrets("default"))[0]
        assert verify(secret, call.headers, call.body) == call.headers["webhook-id"]
        assert (await node.task(callback["id"]))["status"] == "completed"
        assert len(hooks.calls(told_path)) == 1  # a callback task gets no callback


async def test_a_cancelled_task_calls_back_and_a_retry_calls_back_again(
    backend: Backend, hooks: HookServer
) -> None:
    async with live_for(backend, loops=False) as node:
        _, url = hook(hooks, "/status/200")
        told_path, told = hook(hooks, "/status/200")
        task = await node.enqueue(url, callback=told, delay=600)
        await node.request("POST", f"/tasks/{task['id']}/cancel")
        _, first = await ended_with_callback(node, task["id"])
        await node.consume()
        (call,) = hooks.calls(told_path)
        report = json.loads(call.body)
        assert report["task"]["status"] == "cancelled" and report["attempts"] is None
        await node.request("POST", f"/tasks/{task['id']}/retry")
        await node.consume()  # the task completes: a second callback
        done, second = await ended_with_callback(node, task["id"])
        assert done["status"] == "completed" and second["id"] != first["id"]
        await node.consume()
        assert len(hooks.calls(told_path)) == 2


async def test_a_task_failed_by_the_requeuer_calls_back(
    backend: Backend, hooks: HookServer
) -> None:
    """Out of attempts when its final lease ran out unanswered (its node died)."""
    clock = Clock()
    async with live_for(backend, loops=False, clock=clock, max_retries=1) as node:
        _, told = hook(hooks, "/status/200")
        task = await node.enqueue(hooks.url("/status/200/x"), callback=told, timeout=5)
        await node.running.queue.acquire([task["id"]])  # leased, never answered
        clock.advance(60)
        await node.requeue()
        ended, callback = await ended_with_callback(node, task["id"])
        assert ended["status"] == "failed" and callback["status"] == "pending"


async def test_a_callback_url_the_policy_refuses_is_400(backend: Backend) -> None:
    async with live_for(backend, loops=False, allow_private_targets=False) as node:
        answer = await node.request(
            "POST", "/?url=https://example.com/hook&callback=http://127.0.0.1/told"
        )
        assert answer.status == 400 and answer.json["field"] == "callback"
