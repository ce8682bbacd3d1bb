"""GET /tasks (filters, keyset pages, an admin's view) and the bulk actions
POST /tasks/cancel and /tasks/retry. Both backends."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote, urlencode

import pytest

from ntorque import queue
from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode


async def listed(node: LiveNode, key: str | None = None, **query: object) -> list[int]:
    """Every task id the listing gives, page after page (pages of `limit`)."""
    ids: list[int] = []
    cursor = ""
    while True:
        path = "/tasks?" + urlencode({**query, "cursor": cursor})
        page = (await node.request("GET", path, key=key)).json
        ids += [task["id"] for task in page["tasks"]]
        if page["next_cursor"] is None:
            return ids
        cursor = page["next_cursor"]


async def test_filters_and_pages(backend: Backend, hooks: HookServer) -> None:
    clock = Clock()
    async with live_for(backend, loops=False, clock=clock) as node:
        base = hooks.url(f"/status/200/{uuid.uuid4().hex}")
        early = [(await node.enqueue(base + f"/a/{n}"))["id"] for n in range(3)]
        clock.advance(100)
        late = [(await node.enqueue(base + f"/b/{n}", delay=60))["id"] for n in range(4)]
        await node.consume()  # the early ones complete; the late ones wait
        everything = list(reversed(early + late))
        assert await listed(node) == everything
        assert await listed(node, limit=2) == everything  # four pages of two
        first = (await node.request("GET", "/tasks?limit=2")).json
        assert len(first["tasks"]) == 2 and isinstance(first["next_cursor"], str)
        assert await listed(node, status="completed") == list(reversed(early))
        assert await listed(node, status="pending") == list(reversed(late))
        assert await listed(node, url_prefix=base + "/b/") == list(reversed(late))
        assert await listed(node, url_prefix=base + "/a/1") == [early[1]]
        assert await listed(node, url_prefix=base + "/c") == []
        middle = clock() - 50
        assert await listed(node, created_after=middle) == list(reversed(late))
        assert await listed(node, created_before=str(middle)) == list(reversed(early))
        assert await listed(node, status="pending", url_prefix=base, created_after=middle) == (
            list(reversed(late))
        )


async def test_bad_filters_are_400_naming_them(backend: Backend) -> None:
    async with live_for(backend, loops=False) as node:
        cases = {
            "status=done": "status", "limit=0": "limit", "limit=1001": "limit",
            "cursor=abc": "cursor", "created_after=yesterday": "created_after",
            "colour=red": "colour", "url_prefix=" + "x" * 2049: "url_prefix",
        }  # fmt: skip
        for query, field in cases.items():
            answer = await node.request("GET", "/tasks?" + query)
            assert answer.status == 400 and answer.json["field"] == field, (query, answer.body)
            bulk = await node.request("POST", "/tasks/cancel?" + query)
            assert bulk.status == 400, query


async def test_an_admin_lists_every_application(backend: Backend, hooks: HookServer) -> None:
    async with live_for(backend, loops=False, auth_cache_s=0) as node:
        _, key_a = await node.create_app()
        _, key_admin = await node.create_app(admin=True)
        url = hooks.url(f"/status/200/{uuid.uuid4().hex}")
        mine = (await node.enqueue(url, key=key_a))["id"]
        other = (await node.enqueue(url))["id"]
        assert await listed(node, key=key_a) == [mine]
        assert await listed(node, key=key_admin) == [other, mine]


async def test_bulk_cancel_and_retry_act_on_what_the_filters_match(
    backend: Backend, hooks: HookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue, "BULK_BATCH", 10)  # batches of 10, as of 500
    async with live_for(backend, loops=False) as node:
        base = hooks.url(f"/status/200/{uuid.uuid4().hex}")
        waiting = [(await node.enqueue(base + "/wait", delay=600))["id"] for _ in range(21)]
        done = (await node.enqueue(base + "/now"))["id"]
        await node.consume()
        prefix = json.dumps({"url_prefix": base}).encode()
        answer = await node.request("POST", "/tasks/cancel", prefix)
        assert answer.status == 200
        assert answer.json == {"matched": 22, "changed": 21}  # three batches; done stays
        assert (await node.task(done))["status"] == "completed"
        assert await listed(node, status="cancelled") == list(reversed(waiting))
        query = "/tasks/retry?url_prefix=" + quote(base + "/wait")
        retried = await node.request("POST", query, json.dumps({"status": "cancelled"}).encode())
        assert retried.json == {"matched": 21, "changed": 21}
        assert await listed(node, status="pending") == list(reversed(waiting))


async def test_bulk_actions_take_filters_only(backend: Backend) -> None:
    async with live_for(backend, loops=False) as node:
        for body in (b"[1]", b'"all"', b"{", json.dumps({"limit": 5}).encode()):
            answer = await node.request("POST", "/tasks/retry", body)
            assert answer.status == 400, body
        # A filter in both the query and the body: which one was meant? (The
        # body's silently won, so ?status=failed could cancel pending tasks.)
        both = await node.request("POST", "/tasks/cancel?status=failed", b'{"status": "pending"}')
        assert (both.status, both.json["field"]) == (400, "status"), both.body
