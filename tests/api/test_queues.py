"""Named queues through the API, in one process on both backends: settings
(PUT, PATCH, GET, DELETE), pause and resume, defaults for tasks, figures,
and the limits obeyed by a live node (the embedded backend included)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import LiveNode


def hook(hooks: HookServer, prefix: str) -> tuple[str, str]:
    path = f"{prefix}/{uuid.uuid4().hex}"
    return path, hooks.url(path)


async def put(node: LiveNode, name: str, **settings: Any) -> dict[str, Any]:
    answer = await node.request("PUT", f"/queues/{name}", json.dumps(settings).encode())
    assert answer.status == 200, answer.body
    return dict(answer.json)


async def test_put_get_patch_and_delete_a_queue(backend: Backend, hooks: HookServer) -> None:
    async with live_for(backend, loops=False) as node:
        made = await put(node, "mail", max_concurrency=5, rate_per_s=20, burst=5, retries=3)
        assert {k: made[k] for k in ("name", "paused", "max_concurrency", "rate_per_s")} == {
            "name": "mail", "paused": False, "max_concurrency": 5, "rate_per_s": 20.0,
        }  # fmt: skip
        assert (made["burst"], made["retries"], made["backoff"], made["timeout"]) == (
            5,
            3,
            None,
            None,
        )
        assert made["figures"] == {
            "pending": 0, "due_now": 0, "in_flight": 0, "completed_5m": 0, "failed_5m": 0,
            "oldest_due_age_s": None,
        }  # fmt: skip
        patched = await node.request("PATCH", "/queues/mail", b'{"timeout": 9}')
        assert patched.status == 200
        assert (patched.json["timeout"], patched.json["max_concurrency"]) == (9, 5)
        replaced = await put(node, "mail", rate_per_s=2.5)
        assert (replaced["max_concurrency"], replaced["burst"], replaced["timeout"]) == (
            None,
            3,
            None,
        )
        got = await node.request("GET", "/queues/mail")
        assert got.json == replaced
        listed = await node.request("GET", "/queues")
        assert [q["name"] for q in listed.json["queues"]] == ["default", "mail"]
        assert listed.json["next_cursor"] is None
        gone = await node.request("DELETE", "/queues/mail")
        assert (gone.status, gone.body) == (204, b"")
        assert (await node.request("GET", "/queues/mail")).status == 404
        assert (await node.request("DELETE", "/queues/mail")).status == 404


async def test_a_queue_with_unfinished_tasks_cannot_be_deleted(
    backend: Backend, hooks: HookServer
) -> None:
    async with live_for(backend, loops=False) as node:
        _, url = hook(hooks, "/status/200")
        task = await node.enqueue(url, queue="reports")
        assert task["queue"] == "reports"
        answer = await node.request("DELETE", "/queues/reports")
        assert answer.status == 409
        assert "unfinished" in answer.json["error"]
        await node.consume()
        assert (await node.request("DELETE", "/queues/reports")).status == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"max_concurrency": 0}', "max_concurrency"),
        (b'{"max_concurrency": 2.5}', "max_concurrency"),
        (b'{"max_concurrency": true}', "max_concurrency"),
        (b'{"rate_per_s": -1}', "rate_per_s"),
        (b'{"rate_per_s": "fast"}', "rate_per_s"),
        (b'{"rate_per_s": 1e-310}', "rate_per_s"),  # PostgreSQL's acquire overflowed on it
        (b'{"rate_per_s": 5e-324}', "rate_per_s"),  # and underflowed on this one
        (b'{"rate_per_s": 0.0000099}', "rate_per_s"),
        (b'{"rate_per_s": 1' + b"0" * 400 + b"}", "rate_per_s"),  # no float holds it: was a 500
        (b'{"burst": 3}', "burst"),
        (b'{"paused": "yes"}', "paused"),
        (b'{"retries": 0}', "retries"),
        (b'{"backoff": "random"}', "backoff"),
        (b'{"timeout": 999999}', "timeout"),
        (b'{"concurrency": 3}', "concurrency"),
        (b"[1]", None),
        (b"{", None),
    ],
)
async def test_bad_settings_are_400_naming_the_field_and_change_nothing(
    backend: Backend, body: bytes, field: str | None
) -> None:
    async with live_for(backend, loops=False) as node:
        before = await put(node, "mail", max_concurrency=2)
        answer = await node.request("PUT", "/queues/mail", body)
        assert answer.status == 400, answer.body
        assert answer.json.get("field") == field
        assert (await node.request("GET", "/queues/mail")).json == before


@pytest.mark.parametrize("name", ["a" * 65, "sp ace", "ünï", "semi;colon"])
async def test_bad_queue_names_are_400(backend: Backend, hooks: HookServer, name: str) -> None:
    async with live_for(backend, loops=False) as node:
        answer = await node.request("PUT", "/queues/" + name.replace(" ", "%20"), b"{}")
        assert (answer.status, answer.json["field"]) == (400, "queue")
        query = urlencode({"url": hooks.url("/status/200"), "queue": name})
        enqueued = await node.request("POST", "/?" + query)
        assert (enqueued.status, enqueued.json["field"]) == (400, "queue")


async def test_queue_defaults_apply_to_tasks_that_leave_them_out(
    backend: Backend, hooks: HookServer
) -> None:
    async with live_for(backend, loops=False) as node:
        await put(node, "slow", timeout=7, retries=2, backoff="linear")
        _, url = hook(hooks, "/status/200")
        bare = await node.enqueue(url, queue="slow")
        own = await node.enqueue(url, queue="slow", timeout=30, retries=5)
        assert (bare["timeout"], bare["retries"], bare["backoff"]) == (7, 2, "linear")
        assert (own["timeout"], own["retries"], own["backoff"]) == (30, 5, "linear")


async def test_a_paused_queue_stores_tasks_and_starts_them_on_resume(
    backend: Backend, hooks: HookServer
) -> None:
    async with live_for(backend, loops=False) as node:
        paused = await node.request("POST", "/queues/mail/pause")
        assert (paused.status, paused.json["paused"]) == (200, True)
        path, url = hook(hooks, "/status/200")
        task = await node.enqueue(url, queue="mail")
        other_path, other_url = hook(hooks, "/status/200")
        await node.enqueue(other_url)
        await node.consume()
        await node.requeue()
        await node.consume()
        assert hooks.calls(path) == [] and len(hooks.calls(other_path)) == 1
        figures = (await node.request("GET", "/queues/mail")).json["figures"]
        assert (figures["pending"], figures["due_now"]) == (1, 1)
        resumed = await node.request("POST", "/queues/mail/resume")
        assert resumed.json["paused"] is False
        await asyncio.sleep(0.1)  # the resume's wake-up notifies in the background
        await node.consume()
        assert (await node.task(task["id"]))["status"] == "completed"
        assert len(hooks.calls(path)) == 1


async def test_the_listing_filters_by_queue(backend: Backend, hooks: HookServer) -> None:
    async with live_for(backend, loops=False) as node:
        _, url = hook(hooks, "/status/200")
        mine = [(await node.enqueue(url, queue="a"))["id"] for _ in range(2)]
        await node.enqueue(url, queue="b")
        listed = await node.request("GET", "/tasks?queue=a")
        assert [t["id"] for t in listed.json["tasks"]] == sorted(mine, reverse=True)
        bad = await node.request("GET", "/tasks?queue=no%20way")
        assert (bad.status, bad.json["field"]) == (400, "queue")


async def test_a_batch_item_names_its_queue(backend: Backend, hooks: HookServer) -> None:
    async with live_for(backend, loops=False) as node:
        _, url = hook(hooks, "/status/200")
        items = [{"url": url, "queue": "q1"}, {"url": url}]
        answer = await node.request("POST", "/tasks", json.dumps(items).encode())
        assert answer.status == 201, answer.body
        assert [t["queue"] for t in answer.json["tasks"]] == ["q1", "default"]
        bad = await node.request("POST", "/tasks", json.dumps([{"url": url, "queue": ""}]).encode())
        assert bad.status == 400
        assert bad.json["errors"][0]["field"] == "queue"


# -- limits obeyed by a live node ---------------------------------------------------


async def test_the_slowest_rate_holds_its_queue_and_no_other(
    backend: Backend, hooks: HookServer
) -> None:
    """A queue at the smallest rate starts one call (its burst), then waits;
    the acquire that meets it still leases every other task it was given
    (a denormal rate once made PostgreSQL's acquire raise for all of them)."""
    async with live_for(backend, loops=False) as node:
        slowest = await put(node, "slowest", rate_per_s=0.00001)
        assert (slowest["rate_per_s"], slowest["burst"]) == (0.00001, 1)
        _, url = hook(hooks, "/status/200")
        first, second = [(await node.enqueue(url, queue="slowest"))["id"] for _ in range(2)]
        other = (await node.enqueue(url))["id"]
        await node.consume()
        assert (await node.task(first))["status"] == "completed"
        assert (await node.task(other))["status"] == "completed"
        await node.requeue()
        await node.consume()
        assert (await node.task(second))["status"] == "pending"
        assert "Traceback" not in node.logged.text


async def drain(node: LiveNode, ids: list[int], timeout_s: float = 60) -> None:
    for task_id in ids:
        await node.wait_for(task_id, timeout_s=timeout_s)


async def test_one_node_never_exceeds_a_queues_concurrency(
    backend: Backend, hooks: HookServer
) -> None:
    async with live_for(backend, concurrency=20) as node:
        await put(node, "narrow", max_concurrency=3)
        path, url = hook(hooks, "/slow/0.2")
        ids = [(await node.enqueue(url, queue="narrow"))["id"] for _ in range(15)]
        other_path, other_url = hook(hooks, "/slow/0.2")
        others = [(await node.enqueue(other_url))["id"] for _ in range(10)]
        await drain(node, others)
        await drain(node, ids)
        assert len(hooks.calls(path)) == 15
        assert hooks.most_at_once(path) == 3
        assert hooks.most_at_once(other_path) == 10  # the default queue is not held back


async def test_one_node_keeps_to_a_queues_rate(backend: Backend, hooks: HookServer) -> None:
    async with live_for(backend, concurrency=20) as node:
        await put(node, "paced", rate_per_s=10, burst=2)
        path, url = hook(hooks, "/status/200")
        started = time.time()
        ids = [(await node.enqueue(url, queue="paced"))["id"] for _ in range(22)]
        await drain(node, ids)
        times = sorted(call.at for call in hooks.calls(path))
        assert len(times) == 22
        # 2 at once, then one every 0.1 s: 20 more need at least 2 s.
        assert times[-1] - started >= 1.9
        for first in range(len(times)):
            in_window = [t for t in times[first:] if t < times[first] + 1.0]
            assert len(in_window) <= 12  # rate x 1 s + burst
