"""The console's websocket and the Redis bridge behind it: live task changes
and counts, tenancy, origin and login checks, vanished peers, several nodes."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import tornado.httpclient
import tornado.web
import tornado.websocket
from tornado.httpserver import HTTPServer

from ntorque import console, events
from ntorque.auth import Authenticator
from ntorque.channel import LocalChannel
from ntorque.config import Settings
from ntorque.queue import Queue
from ntorque.store import Store
from ntorque.store import engine as database
from ntorque.tasks import Status, Task
from tests.conftest import Backend, server_for
from tests.console_session import Session, create_app
from tests.hookserver import HookServer
from tests.server import NtorqueServer, free_port

Socket = tornado.websocket.WebSocketClientConnection


async def open_socket(server: NtorqueServer, cookie: str = "", origin: str | None = None) -> Socket:
    headers = {"Cookie": cookie} if cookie else {}
    headers["Origin"] = origin or server.base_url
    request = tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{server.port}/console/socket", headers=headers
    )
    return await tornado.websocket.websocket_connect(request)


async def messages(sock: Socket, seconds: float) -> list[dict[str, Any]]:
    """Everything the server sends within `seconds`."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            text = await asyncio.wait_for(sock.read_message(), left)
        except TimeoutError:
            break
        assert text is not None, "the server closed the socket"
        got.append(json.loads(text))
    return got


async def wait_for_task(
    sock: Socket, task_id: int, status: str, timeout_s: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = await asyncio.wait_for(sock.read_message(), deadline - time.monotonic())
        assert text is not None, "the server closed the socket"
        message = json.loads(text)
        for task in message.get("tasks", []):
            if task["id"] == task_id and task["status"] == status:
                return dict(task)
    raise AssertionError(f"task {task_id} never showed {status}")


async def close(sock: Socket) -> None:
    """Close and wait for the server's answer, so no socket outlives the test."""
    sock.close()
    while await asyncio.wait_for(sock.read_message(), 10) is not None:
        pass


def login_cookie(server: NtorqueServer, key: str) -> str:
    session = Session(server)
    session.login(key)
    return session.cookie_header


# -- one node ---------------------------------------------------------------


async def test_socket_pushes_counts_and_own_task_changes_only(
    backend: Backend, hooks: HookServer, tmp_path: Path
) -> None:
    with server_for(backend, tmp_path, NTORQUE_AUTH_CACHE="0") as server:
        a, b = create_app(server, "a"), create_app(server, "b")
        admin = create_app(server, "root", "--admin")
        a_sock = await open_socket(server, login_cookie(server, a))
        b_sock = await open_socket(server, login_cookie(server, b))
        admin_sock = await open_socket(server, login_cookie(server, admin))
        first = json.loads(str(await a_sock.read_message()))
        assert first["type"] == "stats" and {"pending", "failed", "throughput"} <= set(
            first["stats"]
        )
        task = server.enqueue(hooks.url(f"/status/200/{uuid.uuid4().hex}"), b"x", key=a)
        seen = await wait_for_task(a_sock, task["id"], "completed")
        assert seen["url"] == task["url"] and seen["retry_count"] == 1
        assert seen["last_status_code"] == 200
        assert (await wait_for_task(admin_sock, task["id"], "completed"))["id"] == task["id"]
        for message in await messages(b_sock, 1.5):
            assert task["id"] not in [t["id"] for t in message.get("tasks", [])]
        counts = [m for m in await messages(a_sock, 2.5) if m["type"] == "stats"]
        assert len(counts) >= 2  # at least once a second
        for sock in (a_sock, b_sock, admin_sock):
            await close(sock)


async def test_socket_refuses_no_login_and_a_foreign_origin(
    backend: Backend, tmp_path: Path
) -> None:
    with server_for(backend, tmp_path) as server:
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await open_socket(server)
        assert refused.value.code == 403
        cookie = login_cookie(server, server.key)
        with pytest.raises(tornado.httpclient.HTTPClientError) as foreign:
            await open_socket(server, cookie, origin="http://evil.example")
        assert foreign.value.code == 403
        sock = await open_socket(server, cookie)
        assert json.loads(str(await sock.read_message()))["type"] == "stats"
        await close(sock)


async def test_page_reconnects_after_a_restart(backend: Backend, tmp_path: Path) -> None:
    """The login survives a restart (the cookie secret is kept in the database)."""
    with server_for(backend, tmp_path) as server:
        cookie = login_cookie(server, server.key)
        sock = await open_socket(server, cookie)
        await sock.read_message()
        server.stop()
        while await asyncio.wait_for(sock.read_message(), 10) is not None:
            pass
        assert sock.close_code == 1001  # told goodbye: "going away"
        sock.close()  # the client's side of it
        server.start()
        again = await open_socket(server, cookie)
        assert json.loads(str(await again.read_message()))["type"] == "stats"
        await close(again)


# -- in process: the hub and vanished peers ---------------------------------


@pytest.fixture
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
    await sock.read_message()
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
    await asyncio.sleep(0.05)


def new_spec() -> Any:
    from ntorque.intake import new_task
    from ntorque.targets import Policy

    return new_task(
        app_id=None, query={"url": "http://127.0.0.1:9/x"}, headers={}, body=b"",
        default_timeout_s=5, max_timeout_s=60, policy=Policy(),
    )  # fmt: skip


# -- the Redis bridge ---------------------------------------------------------


def a_task(task_id: int, status: Status = Status.PENDING, app_id: int | None = 1) -> Task:
    return Task(
        id=task_id, app_id=app_id, url="http://127.0.0.1:9/x", method="POST", timeout_s=5,
        body=b"secret body", content_type="text/plain", charset="utf-8",
        headers=(("X-Secret", "v"),), status=status, retry_count=0, due=1.0, created=1.0,
        modified=1.0, last_status_code=None, last_error=None,
    )  # fmt: skip


async def until(check: Any, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


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
        client = aioredis.from_url(redis_url)
        await until(lambda: True)
        for _ in range(100):  # both nodes subscribed
            numsub = await client.pubsub_numsub(channel)
            if numsub[0][1] == 2:
                break
            await asyncio.sleep(0.05)
        await client.aclose()
        two.publish_many([a_task(7), a_task(7, Status.IN_PROGRESS), a_task(8)])
        await until(lambda: {s["id"] for s in seen_one} == {7, 8})
        await asyncio.sleep(0.3)
        assert [s["status"] for s in seen_one if s["id"] == 7] == ["in_progress"]  # latest only
        assert [s["id"] for s in seen_two] == [7, 7, 8]  # its own, locally, once
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
    postgres_databases: Any, redis_url: str, hooks: HookServer, tmp_path: Path
) -> None:
    backend = Backend("postgres", postgres_databases.new(), redis_url)
    with server_for(backend, tmp_path / "one", ("--role", "web")) as one:
        with server_for(backend, tmp_path / "two") as two:
            sock = await open_socket(one, login_cookie(one, one.key))
            await sock.read_message()
            await asyncio.sleep(0.5)  # node one subscribes once it has a watcher
            task = two.enqueue(hooks.url(f"/status/200/{uuid.uuid4().hex}"), key=one.key)
            seen = await wait_for_task(sock, task["id"], "completed")
            assert seen["last_status_code"] == 200
            await close(sock)
