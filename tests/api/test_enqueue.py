"""Enqueue with control: delay and eta, per-task retries and backoff,
Idempotency-Key, and batches. In process, on both backends."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio

from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode
from tests.server import Response

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETTINGS = {"auth_cache_s": 0, "max_retries": 5, "max_schedule_ahead_s": 3600}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(module_backend: Backend) -> AsyncIterator[LiveNode]:
    async with live_for(module_backend, **SETTINGS) as running:
        yield running


def hook(hooks: HookServer, prefix: str = "/status/200") -> tuple[str, str]:
    path = f"{prefix}/{uuid.uuid4().hex}"
    return path, hooks.url(path)


async def post(
    server: LiveNode,
    query: dict[str, Any],
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> Response:
    return await server.request("POST", "/?" + urlencode(query), body, headers)


def error(response: Response, status: int, field: str | None = None) -> str:
    assert response.status == status, (response.status, response.body)
    data = response.json
    assert data["status"] == status and data["error"]
    if field is not None:
        assert data.get("field") == field, data
    return str(data["error"])


async def count_tasks(server: LiveNode) -> int:
    """Every task of the caller, page after page."""
    count, cursor = 0, ""
    while True:
        page = (await server.request("GET", f"/tasks?limit=1000&cursor={cursor}")).json
        count += len(page["tasks"])
        if page["next_cursor"] is None:
            return count
        cursor = page["next_cursor"]


# -- delay and eta ---------------------------------------------------------------


async def test_a_delayed_task_is_due_later_and_called_after_its_time(
    server: LiveNode, hooks: HookServer
) -> None:
    path, url = hook(hooks)
    before = time.time()
    task = (await post(server, {"url": url, "delay": "1.5"})).json
    due = datetime.fromisoformat(task["due"]).timestamp()
    assert before + 1.5 <= due <= time.time() + 1.5
    assert task["status"] == "pending"
    (call,) = await hooks.wait_for_calls_async(path, 1, timeout_s=10)
    assert call.at >= due  # never before its time
    assert (await server.wait_for(task["id"]))["status"] == "completed"


async def test_eta_takes_iso_with_offset_and_epoch_seconds(
    server: LiveNode, hooks: HookServer
) -> None:
    _, url = hook(hooks)
    when = datetime.now(UTC) + timedelta(minutes=10)
    for eta in (when.isoformat(), when.astimezone().isoformat(), str(when.timestamp())):
        task = (await post(server, {"url": url, "eta": eta})).json
        assert abs(datetime.fromisoformat(task["due"]).timestamp() - when.timestamp()) < 0.01
        assert (await server.request("POST", f"/tasks/{task['id']}/cancel")).status == 200


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"delay": "5", "eta": "2030-01-01T00:00:00Z"}, "eta", "not both"),
        ({"eta": "2001-01-01T00:00:00+00:00"}, "eta", "past"),
        ({"eta": "2030-01-01T00:00:00"}, "eta", "offset"),
        ({"eta": "tomorrow"}, "eta", "ISO 8601"),
        ({"delay": "3601"}, "delay", "between 0 and 3600"),
        ({"delay": "-1"}, "delay", "between 0"),
        ({"delay": "nan"}, "delay", "out of range"),
        ({"delay": "soon"}, "delay", "number"),
        ({"retries": "0"}, "retries", "between 1 and 5"),
        ({"retries": "6"}, "retries", "between 1 and 5"),
        ({"retries": "two"}, "retries", "whole number"),
        ({"backoff": "fibonacci"}, "backoff", "linear, exponential"),
        ({"callback": "ftp://example.com/x"}, "callback", "callback"),
    ],
)
async def test_bad_controls_are_400_naming_the_field_and_store_nothing(
    server: LiveNode, hooks: HookServer, query: dict[str, str], field: str, words: str
) -> None:
    _, url = hook(hooks)
    before = await count_tasks(server)
    assert words in error(await post(server, {"url": url, **query}), 400, field)
    assert await count_tasks(server) == before


async def test_an_eta_far_ahead_is_refused(server: LiveNode, hooks: HookServer) -> None:
    _, url = hook(hooks)
    eta = (datetime.now(UTC) + timedelta(seconds=3700)).isoformat()
    assert "ahead" in error(await post(server, {"url": url, "eta": eta}), 400, "eta")


async def test_an_eta_a_moment_ago_runs_now(server: LiveNode, hooks: HookServer) -> None:
    _, url = hook(hooks)
    eta = (datetime.now(UTC) - timedelta(seconds=2)).isoformat()
    task = (await post(server, {"url": url, "eta": eta})).json
    assert (await server.wait_for(task["id"]))["status"] == "completed"


# -- per-task policy ---------------------------------------------------------------


async def test_per_task_retries_and_backoff_are_kept_and_obeyed(
    backend: Backend, hooks: HookServer
) -> None:
    clock = Clock()
    async with live_for(backend, loops=False, clock=clock, max_retries=5) as node:
        path, url = hook(hooks, "/status/503")
        task = await node.enqueue(url, retries=2, backoff="linear")
        assert (task["retries"], task["backoff"]) == (2, "linear")
        await node.consume()
        first = await node.task(task["id"])
        # linear: min_due_delay_s * 1 (2 s) after the first attempt
        assert first["status"] == "pending"
        assert datetime.fromisoformat(first["due"]).timestamp() == pytest.approx(clock() + 2)
        clock.advance(2)
        await node.requeue()
        await node.consume()
        done = await node.task(task["id"])
        assert (done["status"], done["retry_count"]) == ("failed", 2)  # its own 2, not 5
        assert len(hooks.calls(path)) == 2


# -- idempotency ---------------------------------------------------------------


async def test_a_repeat_answers_200_with_the_first_task_and_creates_nothing(
    server: LiveNode, hooks: HookServer
) -> None:
    path, url = hook(hooks)
    key = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}
    first = await post(server, {"url": url}, b"a=1", key)
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    again = await post(server, {"url": url}, b"a=1", key)
    assert again.status == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert again.json["id"] == first.json["id"]
    await server.wait_for(first.json["id"])
    await asyncio.sleep(0.2)
    assert len(hooks.calls(path)) == 1


@pytest.mark.parametrize("change", ["url", "method", "body"])
async def test_the_same_key_for_another_request_is_422(
    server: LiveNode, hooks: HookServer, change: str
) -> None:
    _, url = hook(hooks)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert (await post(server, {"url": url}, b"a=1", key)).status == 201
    query, body = {"url": url}, b"a=1"
    if change == "url":
        query["url"] = url + "-other"
    elif change == "method":
        query["method"] = "PUT"
    else:
        body = b"a=2"
    before = await count_tasks(server)
    assert "Idempotency-Key" in error(await post(server, query, body, key), 422, "idempotency_key")
    assert await count_tasks(server) == before


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_bad_keys_are_400(server: LiveNode, hooks: HookServer, key: str) -> None:
    _, url = hook(hooks)
    headers = {"Idempotency-Key": key}
    if not key.isascii():  # HTTP headers are latin-1 on the wire
        headers = {"Idempotency-Key": key.encode().decode("latin-1")}
    error(await post(server, {"url": url}, b"", headers), 400, "idempotency_key")


async def test_a_key_at_the_bound_is_accepted(server: LiveNode, hooks: HookServer) -> None:
    _, url = hook(hooks)
    assert (await post(server, {"url": url}, b"", {"Idempotency-Key": "k" * 255})).status == 201


async def test_a_key_is_forgotten_after_its_window(backend: Backend, hooks: HookServer) -> None:
    clock = Clock()
    async with live_for(backend, loops=False, clock=clock, idempotency_window_s=60) as node:
        _, url = hook(hooks)
        key = {"Idempotency-Key": "daily-report"}
        first = await node.request("POST", "/?" + urlencode({"url": url}), b"", key)
        clock.advance(59)
        assert (await node.request("POST", "/?" + urlencode({"url": url}), b"", key)).status == 200
        clock.advance(2)
        later = await node.request("POST", "/?" + urlencode({"url": url}), b"", key)
        assert later.status == 201 and later.json["id"] != first.json["id"]


async def test_concurrent_repeats_make_one_task(server: LiveNode, hooks: HookServer) -> None:
    _, url = hook(hooks)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    answers = await asyncio.gather(*(post(server, {"url": url}, b"x", key) for _ in range(30)))
    assert sorted(answer.status for answer in answers) == [200] * 29 + [201]
    assert len({answer.json["id"] for answer in answers}) == 1


# -- batches -------------------------------------------------------------------


async def test_a_batch_stores_every_item_as_a_single_enqueue_would(
    server: LiveNode, hooks: HookServer
) -> None:
    text_path, text_url = hook(hooks)
    binary_path, binary_url = hook(hooks)
    items = [
        {"url": text_url, "body": "caf\u00e9", "content_type": "text/plain", "method": "PUT",
         "headers": {"X-Trace": "t1"}, "retries": 3, "backoff": "linear", "timeout": 7},
        {"url": binary_url, "body_base64": base64.b64encode(b"\x00\xff").decode(),
         "content_type": "application/octet-stream", "delay": 0.2},
    ]  # fmt: skip
    answer = await server.request("POST", "/tasks", json.dumps(items).encode())
    assert answer.status == 201, answer.body
    first, second = answer.json["tasks"]
    assert (first["method"], first["retries"], first["backoff"], first["timeout"]) == (
        "PUT", 3, "linear", 7,
    )  # fmt: skip
    assert (first["content_type"], first["charset"], first["headers"]) == (
        "text/plain", "utf-8", {"X-Trace": "t1"},
    )  # fmt: skip
    assert second["charset"] is None and second["body_size"] == 2
    (text_call,) = await hooks.wait_for_calls_async(text_path, 1)
    (binary_call,) = await hooks.wait_for_calls_async(binary_path, 1)
    assert text_call.body == "caf\u00e9".encode() and text_call.headers["x-trace"] == "t1"
    assert binary_call.body == b"\x00\xff"


async def test_a_batch_with_bad_items_names_each_and_stores_nothing(
    server: LiveNode, hooks: HookServer
) -> None:
    _, url = hook(hooks)
    items: list[Any] = [
        {"url": url},
        {"url": "not a url"},
        {"url": url, "retries": 99},
        "not an object",
        {"url": url, "body": "a", "body_base64": "YQ=="},
        {"url": url, "colour": "red"},
        {"url": url, "idempotency_key": "k1"},
        {"url": url, "idempotency_key": "k1"},
    ]
    before = await count_tasks(server)
    answer = await server.request("POST", "/tasks", json.dumps(items).encode())
    error(answer, 400)
    named = {(each["index"], each["field"]) for each in answer.json["errors"]}
    assert named == {
        (1, "url"), (2, "retries"), (3, None), (4, "body_base64"), (5, "colour"),
        (7, "idempotency_key"),
    }  # fmt: skip
    assert await count_tasks(server) == before


@pytest.mark.parametrize(
    "body", [b"", b"{}", b"[]", b"[1", json.dumps([{"url": "http://x.example"}] * 1001).encode()]
)
async def test_a_batch_that_is_no_array_of_tasks_is_400(server: LiveNode, body: bytes) -> None:
    before = await count_tasks(server)
    error(await server.request("POST", "/tasks", body), 400)
    assert await count_tasks(server) == before


async def test_a_batch_of_1000_is_one_commit(server: LiveNode, hooks: HookServer) -> None:
    _, url = hook(hooks)
    items = [{"url": url, "body": f"n={n}", "delay": 3000} for n in range(1000)]
    answer = await server.request("POST", "/tasks", json.dumps(items).encode())
    assert answer.status == 201
    ids = [task["id"] for task in answer.json["tasks"]]
    assert len(ids) == 1000 and ids == sorted(ids)
    bulk = await server.request("POST", "/tasks/cancel", json.dumps({"status": "pending"}).encode())
    assert bulk.json["changed"] >= 1000


async def test_a_batch_replays_keyed_items_and_refuses_a_reused_key(
    server: LiveNode, hooks: HookServer
) -> None:
    _, url = hook(hooks)
    key = uuid.uuid4().hex
    single = await post(server, {"url": url}, b"one", {"Idempotency-Key": key})
    items = [{"url": url, "body": "two"}, {"url": url, "body": "one", "idempotency_key": key}]
    answer = await server.request("POST", "/tasks", json.dumps(items).encode())
    assert answer.status == 201
    assert answer.json["tasks"][1]["id"] == single.json["id"]
    items[1]["body"] = "changed"
    before = await count_tasks(server)
    message = error(await server.request("POST", "/tasks", json.dumps(items).encode()), 422)
    assert message.startswith("task 1 of the batch")
    assert await count_tasks(server) == before
