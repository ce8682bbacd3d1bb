"""The console's websocket and the hub behind it, and the Redis bridge that
carries task changes between nodes: live task changes and counts, tenancy,
origin and login checks, a restart, vanished peers, several nodes.

Every wait for the socket waits for a known message, with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import tornado.httpclient
import tornado.web
import tornado.websocket
from tornado.httpserver import HTTPServer

from ntorque import console, events
from ntorque.auth import Authenticator
from ntorque.channel import LocalChannel
from ntorque.config import Settings
from ntorque.intake import new_task
from ntorque.queue import Queue
from ntorque.store import Store
from ntorque.store import engine as database
from ntorque.targets import Policy
from ntorque.tasks import NewTask, Status, Task
from tests.conftest import Backend, live_for
from tests.console_session import (
    Message,
    Session,
    close,
    connected,
    first_of,
    logged_in,
    login_cookie,
    open_socket,
    read_until,
    retried,
    settled,
    shows,
    task_ids,
    wait_for_task,
)
from tests.hookserver import HookServer
from tests.inprocess import LiveNode, with_settings
from tests.server import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[LiveNode]:
    async with live_for(module_backend, auth_cache_s=0) as running:
        yield running


def hook(hooks: HookServer) -> str:
    return hooks.url(f"/status/200/{uuid.uuid4().hex}")


def counted(times: int) -> Callable[[dict[str, Any]], bool]:
    """True at the message that makes `times` counts messages."""
    seen: list[dict[str, Any]] = []

    def wanted(message: dict[str, Any]) -> bool:
        if message["type"] == "stats":
            seen.append(message)
        return len(seen) == times

    return wanted


# -- one node ---------------------------------------------------------------


async def test_socket_pushes_counts_and_own_task_changes_only(
    node: LiveNode, hooks: HookServer
) -> None:
    _, a = await node.create_app()
    _, b = await node.create_app()
    _, admin = await node.create_app(admin=True)
    a_sock, first = await connected(node, await login_cookie(node, a))
    b_sock, _ = await connected(node, await login_cookie(node, b))
    admin_sock, _ = await connected(node, await login_cookie(node, admin))
    assert {"pending", "failed", "throughput"} <= set(first["stats"])

    task = await node.enqueue(hook(hooks), b"x", key=a)
    seen = await wait_for_task(a_sock, task["id"], "completed")
    assert seen["url"] == task["url"] and seen["retry_count"] == 1
    assert seen["last_status_code"] == 200
    assert (await wait_for_task(admin_sock, task["id"], "completed"))["id"] == task["id"]
    # B's own task, enqueued after A's had completed, reaches B's socket after
    # every change of A's task was sent: by then B would have seen them.
    own = await node.enqueue(hook(hooks), b"y", key=b)
    b_messages = await read_until(b_sock, shows(own["id"], "completed"))
    assert task["id"] not in task_ids(b_messages)
    counts = await read_until(a_sock, counted(2), timeout_s=2.5)  # at least once a second
    assert [m["type"] for m in counts].count("stats") == 2
    for sock in (a_sock, b_sock, admin_sock):
        await close(sock)


async def test_socket_refuses_no_login_and_a_foreign_origin(node: LiveNode) -> None:
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await open_socket(node)
    assert refused.value.code == 403
    cookie = await login_cookie(node, node.key)
    with pytest.raises(tornado.httpclient.HTTPClientError) as foreign:
        await open_socket(node, cookie, origin="http://evil.example")
    assert foreign.value.code == 403
    sock, first = await connected(node, cookie)
    assert first["type"] == "stats"
    await close(sock)


# -- the state as of the subscription -----------------------------------------


def failed_again(task_id: int, retry_count: int) -> Callable[[Message], bool]:
    """A task page's message showing the task failed after that many attempts."""
    return lambda m: bool(
        m["type"] == "task"
        and m["task"]["id"] == task_id
        and m["task"]["status"] == "failed"
        and m["task"]["retry_count"] == retry_count
    )


async def failed_task(node: LiveNode, hooks: HookServer) -> tuple[Session, str, dict[str, Any]]:
    """A new application's console session, its key, and its task that failed
    at once (its hook answers 400, fast)."""
    _, key = await node.create_app()
    session = await logged_in(node, key)
    task = await node.enqueue(hooks.url(f"/status/400/{uuid.uuid4().hex}"), key=key)
    return session, key, await settled(node, task["id"], key)


async def test_a_task_page_socket_starts_with_the_task_as_it_is_now(
    node: LiveNode, hooks: HookServer
) -> None:
    """Issue 10's stale page: "Retry now", and a fast hook answers between the
    page's render and its socket's subscription. The socket's first word on
    the task is its state as of the subscription, attempts included."""
    session, key, task = await failed_task(node, hooks)
    assert (await session.post(f"/console/task/{task['id']}/retry")).status == 303
    page = await session.get(f"/console/task/{task['id']}")  # the page the browser renders
    assert page.status == 200
    now = await settled(node, task["id"], key, retried)
    sock, _ = await connected(node, session.cookie_header, f"task={task['id']}")
    view = await first_of(sock, "task", timeout_s=5)
    shown = view["task"]
    assert (shown["id"], shown["status"], shown["retry_count"]) == (task["id"], "failed", 2)
    assert shown["last_status_code"] == 400 and shown["due"] == now["due"]
    assert [(a["number"], a["status_code"]) for a in view["attempts"]] == [(1, 400), (2, 400)]
    assert "body" not in view["task"] and "headers" not in view["task"]
    await close(sock)


async def test_a_task_page_socket_follows_its_task_and_attempts_only(
    node: LiveNode, hooks: HookServer
) -> None:
    session, key, task = await failed_task(node, hooks)
    sock, _ = await connected(node, session.cookie_header, f"task={task['id']}")
    first = await first_of(sock, "task")
    assert first["task"]["status"] == "failed" and len(first["attempts"]) == 1
    other = await node.enqueue(hook(hooks), key=key)  # the same application's, changed first
    assert (await session.post(f"/console/task/{task['id']}/retry")).status == 303
    messages = await read_until(sock, failed_again(task["id"], 2))
    assert [a["number"] for a in messages[-1]["attempts"]] == [1, 2]
    assert messages[-1]["attempts"][1]["status_code"] == 400
    # Every change is pushed in order, the other task's first: a task page
    # that heard of it would have by now.
    assert other["id"] not in task_ids(messages)
    assert {m["type"] for m in messages} <= {"stats", "task"}
    await close(sock)


async def test_a_dashboard_socket_starts_with_the_page_as_it_is_now(
    node: LiveNode, hooks: HookServer
) -> None:
    _, key = await node.create_app()
    session = await logged_in(node, key)
    marker = uuid.uuid4().hex
    failed = await node.enqueue(hooks.url(f"/status/400/{marker}-f"), key=key)
    done = await node.enqueue(hooks.url(f"/status/200/{marker}-c"), key=key)
    assert (await session.get("/console")).status == 200  # rendered before they finish
    for task in (failed, done):
        await settled(node, task["id"], key)
    cookie = session.cookie_header
    sock, _ = await connected(node, cookie)  # the newest page, no filter
    page = await first_of(sock, "page", timeout_s=5)
    shown = {t["id"]: t["status"] for t in page["tasks"]}
    assert shown == {done["id"]: "completed", failed["id"]: "failed"}
    assert [t["id"] for t in page["tasks"]] == [done["id"], failed["id"]]  # newest first
    await close(sock)
    for watch, expected in (
        (f"status=failed&q={marker}", [failed["id"]]),
        (f"q={marker}-c", [done["id"]]),
        (f"q={failed['id']}", [failed["id"]]),
        (f"q={marker}&before={done['id']}", [failed["id"]]),
        (f"status=pending&q={marker}", []),
    ):
        sock, _ = await connected(node, cookie, watch)
        page = await first_of(sock, "page", timeout_s=5)
        assert [t["id"] for t in page["tasks"]] == expected, watch
        await close(sock)


async def test_a_socket_refuses_what_its_page_would(node: LiveNode) -> None:
    """A task that is not there is a 404, like its page; a query the
    dashboard refuses is a 400. (Another application's task: tests/test_tenancy.py.)"""
    cookie = await login_cookie(node, node.key)
    for watch, code in (
        ("task=999999999999", 404),
        ("task=abc", 400),
        ("status=nonsense", 400),
    ):
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await open_socket(node, cookie, watch=watch)
        assert refused.value.code == code, watch


async def test_page_reconnects_after_a_restart(backend: Backend) -> None:
    """The login survives a restart (the cookie secret is kept in the database)."""
    async with live_for(backend) as first:
        cookie = await login_cookie(first, first.key)
        sock, _ = await connected(first, cookie)
        await first.stop()
        while await asyncio.wait_for(sock.read_message(), 10) is not None:
            pass
        assert sock.close_code == 1001  # told goodbye: "going away"
        sock.close()  # the client's side of it
        restarted = live_for(backend)
        restarted.settings = with_settings(first)  # the same port
        async with restarted:
            again, message = await connected(restarted, cookie)
            assert message["type"] == "stats"
            await close(again)


# -- in process: the hub and vanished peers ---------------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def open_console(tmp_path: Path) -> AsyncIterator[tuple[console.Console, int, Queue]]:
    """The console alone, authentication off, on a fresh SQLite file."""
    url = f"sqlite:///{tmp_path / 'console.db'}"
    await asyncio.to_thread(database.upgrade, url)
    engine = database.make_engine(Settings(database_url=url))
    store, bus = Store(engine), events.Events()
    queue = Queue(
        store.tasks, LocalChannel(), bus, min_due_delay_s=1, max_due_delay_s=60,
        max_retries=3, backoff_kind="linear",
    )  # fmt: skip
    made = console.make_console(
        queue=queue, reads=store.console, apps=store.apps, events=bus,
        authenticator=Authenticator(store.apps, cache_s=0),
        authenticate=False, cookie_secret="x" * 32,
    )  # fmt: skip
    port = free_port()
    server = HTTPServer(tornado.web.Application(console.routes(made)))
    server.listen(port, "127.0.0.1")
    try:
        yield made, port, queue
    finally:
        made.hub.close()
        server.stop()
        await engine.dispose()


async def test_a_vanished_peer_leaves_the_hub(
    open_console: tuple[console.Console, int, Queue],
) -> None:
    made, port, queue = open_console
    request = tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{port}/console/socket", headers={"Origin": f"http://127.0.0.1:{port}"}
    )
    sock = await tornado.websocket.websocket_connect(request)
    assert await asyncio.wait_for(sock.read_message(), 10) is not None
    assert len(made.hub.peers) == 1
    raw = sock.protocol.stream if sock.protocol else None
    assert raw is not None
    linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # on, 0 s: close sends a reset
    raw.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    raw.close()  # a reset, no closing handshake: the peer just vanished
    deadline = time.monotonic() + 10
    while made.hub.peers:
        assert time.monotonic() < deadline, "the hub kept a vanished peer"
        await queue.enqueue(new_spec())  # changes to push, so a write fails
        await asyncio.sleep(0.3)
    assert not made.hub.events.watched  # nobody watches: summaries are no longer built
    sock.close()


def new_spec() -> NewTask:
    return new_task(
        app_id=None, query={"url": "http://127.0.0.1:9/x"}, headers={}, body=b"",
 max_timeout_s=60, policy=Policy(),
    )  # fmt: skip


# -- the Redis bridge ---------------------------------------------------------


def a_task(task_id: int, status: Status = Status.PENDING, app_id: int | None = 1) -> Task:
    return Task(
        id=task_id, app_id=app_id, url="http://127.0.0.1:9/x", method="POST", timeout_s=5,
        body=b"secret body", content_type="text/plain", charset="utf-8",
        headers=(("X-Secret", "v"),), status=status, retry_count=0, due=1.0, created=1.0,
        modified=1.0, last_status_code=None, last_error=None,
    )  # fmt: skip


async def until(check: Callable[[], bool], what: str, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def subscribed(redis_url: str, channel: str, count: int, timeout_s: float = 5) -> None:
    """Wait until `count` clients listen on the channel."""
    client = aioredis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout_s
        while (await client.pubsub_numsub(channel))[0][1] != count:
            assert time.monotonic() < deadline, f"{count} subscribers never on {channel}"
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_bridge_carries_changes_between_nodes_once(redis_url: str) -> None:
    channel = f"events_{uuid.uuid4().hex}"
    one, two = events.Events(), events.Events()
    bridges = [events.RedisBridge(bus, redis_url, channel) for bus in (one, two)]
    seen_one: list[events.Summary] = []
    seen_two: list[events.Summary] = []
    one.watch(seen_one.extend)
    two.watch(seen_two.extend)
    for bridge in bridges:
        bridge.start()
    try:
        await subscribed(redis_url, channel, 2)  # both nodes listen
        two.publish_many([a_task(7), a_task(7, Status.IN_PROGRESS), a_task(8)])
        await until(lambda: {s["id"] for s in seen_one} >= {7, 8}, "one never saw 7 and 8")
        # Redis keeps the order of messages: once a later one has arrived on
        # each side, nothing more of the first batch is on its way.
        one.publish(a_task(10))
        await until(lambda: 10 in [s["id"] for s in seen_two], "two never saw 10")
        two.publish(a_task(9))
        await until(lambda: 9 in [s["id"] for s in seen_one], "one never saw 9")
        assert [s["status"] for s in seen_one if s["id"] == 7] == ["in_progress"]  # latest only
        assert [s["id"] for s in seen_one] == [7, 8, 10, 9]
        assert [s["id"] for s in seen_two] == [7, 7, 8, 10, 9]  # its own locally, once
        assert "headers" not in seen_one[0] and "body" not in json.dumps(seen_one)
        assert seen_one[0]["app_id"] == 1
    finally:
        for bridge in bridges:
            await bridge.close()


async def test_local_events_go_on_when_redis_is_down() -> None:
    bus = events.Events()
    bridge = events.RedisBridge(bus, f"redis://127.0.0.1:{free_port()}/0", "events_down")
    seen: list[events.Summary] = []
    bus.watch(seen.extend)
    bridge.start()
    try:
        bus.publish(a_task(1))
        await bridge.flush()  # fails quietly
        bus.publish(a_task(2))
        assert [s["id"] for s in seen] == [1, 2]
    finally:
        await bridge.close()


@pytest.mark.redis
async def test_a_console_on_one_node_sees_changes_made_by_another(
    postgres_databases: Any, redis_url: str, hooks: HookServer
) -> None:
    backend = Backend("postgres", postgres_databases.new(), redis_url)
    async with live_for(backend, loops=False) as one, live_for(backend) as two:  # one: web only
        sock, _ = await connected(one, await login_cookie(one, one.key))
        # With a console open, node one subscribes; two has none and does not.
        await subscribed(redis_url, f"{one.settings.redis_channel}:events", 1)
        task = await two.enqueue(hook(hooks), key=one.key)
        seen = await wait_for_task(sock, task["id"], "completed")
        assert seen["last_status_code"] == 200
        await close(sock)
