"""The clients against a node in the test's own event loop, on both backends.
Every case runs with both clients: AsyncClient awaited on the node's loop, and
the blocking Client in a thread, off the node's loop (`Awaited`).
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from ntorque.client import AsyncClient, Client, ClientError
from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import LiveNode

in_node_loop = pytest.mark.asyncio(loop_scope="module")  # the module's shared node
pytestmark = in_node_loop
ENDED = ("completed", "failed", "cancelled")


class Awaited:
    """The blocking Client, each method awaited in a thread: one test drives both clients."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call


Clients = AsyncClient | Awaited


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[LiveNode]:
    async with live_for(module_backend) as running:
        yield running


@pytest.fixture(params=["async", "sync"])
def api(request: pytest.FixtureRequest, node: LiveNode) -> Clients:
    if request.param == "async":
        return AsyncClient(node.base_url, node.key)
    return Awaited(Client(node.base_url, node.key))


def client_for(api: Clients, base_url: str, key: str | None, timeout_s: float = 10) -> Clients:
    """Another client of the same kind as `api`."""
    if isinstance(api, AsyncClient):
        return AsyncClient(base_url, key, timeout_s)
    return Awaited(Client(base_url, key, timeout_s))


async def every_task(api: Clients, **filters: Any) -> list[dict[str, Any]]:
    if isinstance(api, AsyncClient):
        return [task async for task in api.iter_tasks(**filters)]
    return await asyncio.to_thread(lambda: list(api.client.iter_tasks(**filters)))


def path(kind: str, status: int = 200) -> str:
    return f"/status/{status}/client-{kind}-{uuid.uuid4().hex}"


async def test_a_task_enqueued_is_performed_and_its_attempts_read(
    api: Clients, node: LiveNode, hooks: HookServer
) -> None:
    hook = path("plain")
    task = await api.enqueue(hooks.url(hook), "user_id=1", headers={"X-Trace": "t1"}, timeout=9)
    assert (task["status"], task["timeout"], task.replayed) == ("pending", 9, False)
    assert (await api.task(task["id"]))["id"] == task["id"]
    (call,) = await hooks.wait_for_calls_async(hook, 1)
    assert call.body == b"user_id=1"
    assert call.headers["x-trace"] == "t1"
    assert (await node.wait_for(task["id"]))["status"] == "completed"
    (attempt,) = await api.attempts(task["id"])
    assert attempt["status_code"] == 200
    assert (await api.push(task["id"]))["id"] == task["id"]


async def test_the_servers_error_is_raised(api: Clients, node: LiveNode) -> None:
    with pytest.raises(ClientError) as raised:
        await api.enqueue("not a url")
    assert raised.value.status == 400
    assert "url" in raised.value.message
    with pytest.raises(ClientError) as raised:
        await client_for(api, node.base_url, "wrong-key").task(1)
    assert raised.value.status == 401


async def test_no_answer_raises_an_os_error(api: Clients) -> None:
    with pytest.raises(OSError):
        await client_for(api, "http://127.0.0.1:9", None).task(1)  # refused
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        base_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(OSError):
            await client_for(api, base_url, None, timeout_s=0.2).task(1)


async def test_schedule_and_policy_options_reach_the_task(api: Clients, hooks: HookServer) -> None:
    hook, callback = hooks.url(path("options")), hooks.url(path("callback"))
    eta = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    task = await api.enqueue(hook, eta=eta, retries=2, backoff="linear", callback=callback)
    assert datetime.fromisoformat(task["due"]) == eta
    assert (task["retries"], task["backoff"], task["callback_url"]) == (2, "linear", callback)


async def test_delay_and_eta_together_are_refused(api: Clients, hooks: HookServer) -> None:
    with pytest.raises(ClientError) as raised:
        await api.enqueue(hooks.url(path("both")), delay=600, eta=datetime.now(UTC))
    assert raised.value.status == 400


async def test_an_idempotent_enqueue_is_replayed_once_stored(
    api: Clients, hooks: HookServer
) -> None:
    key, hook = f"order-{uuid.uuid4().hex}", hooks.url(path("idempotent"))
    first = await api.enqueue(hook, b"one", idempotency_key=key, delay=600)
    again = await api.enqueue(hook, b"one", idempotency_key=key, delay=600)
    assert (first.replayed, again.replayed, again["id"]) == (False, True, first["id"])
    with pytest.raises(ClientError) as raised:
        await api.enqueue(hook, b"another body", idempotency_key=key)
    assert raised.value.status == 422


async def test_cancel_then_retry(api: Clients, node: LiveNode, hooks: HookServer) -> None:
    task = await api.enqueue(hooks.url(path("cancel")), delay=600)
    assert (await api.cancel(task["id"]))["status"] == "cancelled"
    with pytest.raises(ClientError) as raised:
        await api.cancel(task["id"])
    assert (raised.value.status, "cancelled" in raised.value.message) == (409, True)
    assert (await api.retry(task["id"]))["status"] == "pending"
    assert (await node.wait_for(task["id"], ENDED))["status"] == "completed"
    with pytest.raises(ClientError) as raised:
        await api.retry(task["id"])
    assert raised.value.status == 409


async def test_listing_pages_and_filters(api: Clients, hooks: HookServer) -> None:
    prefix = hooks.url(path("list"))
    made = [await api.enqueue(f"{prefix}/{n}", delay=600) for n in range(5)]
    newest_first = [task["id"] for task in reversed(made)]
    page = await api.tasks(url_prefix=prefix, limit=2)
    assert [task["id"] for task in page["tasks"]] == newest_first[:2]
    rest = await api.tasks(url_prefix=prefix, limit=10, cursor=page["next_cursor"])
    assert ([task["id"] for task in rest["tasks"]], rest["next_cursor"]) == (newest_first[2:], None)
    found = await every_task(api, url_prefix=prefix, status="pending", page_size=2)
    assert [task["id"] for task in found] == newest_first
    assert await every_task(api, url_prefix=prefix, status="failed") == []
    after = datetime.fromisoformat(made[0]["created"]) - timedelta(seconds=1)
    assert len(await every_task(api, url_prefix=prefix, created_after=after)) == 5
    assert await every_task(api, url_prefix=prefix, created_before=after.timestamp()) == []


async def test_bulk_cancel_and_retry(api: Clients, node: LiveNode, hooks: HookServer) -> None:
    prefix = hooks.url(path("bulk"))
    made = [await api.enqueue(f"{prefix}/{n}", delay=600) for n in range(3)]
    assert await api.cancel_many(url_prefix=prefix) == {"matched": 3, "changed": 3}
    assert await api.cancel_many(url_prefix=prefix, status="pending") == {
        "matched": 0,
        "changed": 0,
    }
    assert await api.retry_many(url_prefix=prefix, status="cancelled") == {
        "matched": 3,
        "changed": 3,
    }
    for task in made:
        assert (await node.wait_for(task["id"], ENDED))["status"] == "completed"


async def test_a_batch_is_enqueued_in_order(api: Clients, hooks: HookServer) -> None:
    binary, text = path("batch-bytes"), path("batch-text")
    tasks = await api.enqueue_batch(
        [
            {"url": hooks.url(binary), "body": b"\x00\xff", "content_type": "image/png"},
            {"url": hooks.url(text), "body": "caf\u00e9", "headers": {"X-Trace": "b"}},
        ]
    )
    assert [task["url"] for task in tasks] == [hooks.url(binary), hooks.url(text)]
    (call,) = await hooks.wait_for_calls_async(binary, 1)
    assert call.body == b"\x00\xff"
    (call,) = await hooks.wait_for_calls_async(text, 1)
    assert (call.body, call.headers["x-trace"]) == ("caf\u00e9".encode(), "b")


async def test_a_batch_with_a_bad_item_stores_nothing(api: Clients, hooks: HookServer) -> None:
    prefix = hooks.url(path("bad-batch"))
    with pytest.raises(ClientError) as raised:
        await api.enqueue_batch([{"url": f"{prefix}/ok"}, {"url": "ftp://nowhere"}])
    assert raised.value.status == 400
    assert [(error["index"], error["field"]) for error in raised.value.errors] == [(1, "url")]
    assert await every_task(api, url_prefix=prefix) == []
