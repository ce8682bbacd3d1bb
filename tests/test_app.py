"""The node's HTTP server, in-process: slow clients are cut off within the
configured bounds (headers, body, idle keep-alive) while others are served,
and the access log shows no query value.

One node per backend, with short bounds; raw sockets (asyncio streams) play
the slow clients, in the node's own event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
import pytest_asyncio

from ntorque.handlers import RETRY_AFTER_UNAVAILABLE_S
from tests.conftest import Backend, live_for, make_backend
from tests.hookserver import HookServer
from tests.inprocess import LiveNode
from tests.netfaults import RedisProcess, TcpProxy
from tests.server import Response

IN_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")  # tests sharing a module node

HEADER_S = 0.6
BODY_S = 1.2
IDLE_S = 2.0
SLACK_S = 1.5  # a loaded machine may notice a deadline late, never early
EARLY_S = 0.1  # timers may fire this much before their deadline


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[LiveNode]:
    bounds = {"header_timeout_s": HEADER_S, "body_timeout_s": BODY_S, "idle_timeout_s": IDLE_S}
    async with live_for(module_backend, auth_cache_s=0, **bounds) as running:
        yield running


async def connect(node: LiveNode) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", node.port)


async def closed_after(reader: asyncio.StreamReader, since: float) -> float:
    """Seconds from `since` until the server closed the connection (having sent nothing)."""
    data = await asyncio.wait_for(reader.read(), timeout=30)
    assert data == b"", data[:200]
    return time.monotonic() - since


async def served_meanwhile(node: LiveNode, stalled: Awaitable[float]) -> tuple[float, int]:
    """(what stalled came to, requests other clients got answered while it was pending)."""
    waiting = asyncio.ensure_future(stalled)
    served = 0
    while not waiting.done():
        answer = await node.request("GET", "/", timeout_s=5)
        assert answer.status == 200
        served += 1
        await asyncio.sleep(0.05)
    return await waiting, served


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a Content-Length: (status, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:] if line)
    body = await reader.readexactly(int(fields["Content-Length"]))
    return int(lines[0].split()[1]), body


def in_bound(elapsed: float, bound: float) -> bool:
    return bound - EARLY_S <= elapsed < bound + SLACK_S


@IN_MODULE_LOOP
async def test_half_the_headers_are_cut_off_at_the_header_bound(node: LiveNode) -> None:
    reader, writer = await connect(node)
    try:
        writer.write(b"POST /?url=http://127.0.0.1:9/ HTTP/1.1\r\nHost: x\r\nContent-Le")
        await writer.drain()
        elapsed, served = await served_meanwhile(node, closed_after(reader, time.monotonic()))
    finally:
        writer.close()
    assert in_bound(elapsed, HEADER_S), elapsed
    assert served >= 3


@IN_MODULE_LOOP
async def test_a_connection_that_sends_nothing_is_cut_off_at_the_header_bound(
    node: LiveNode,
) -> None:
    reader, writer = await connect(node)
    try:
        elapsed, served = await served_meanwhile(node, closed_after(reader, time.monotonic()))
    finally:
        writer.close()
    assert in_bound(elapsed, HEADER_S), elapsed
    assert served >= 3


@IN_MODULE_LOOP
async def test_half_the_body_is_cut_off_at_the_body_bound(node: LiveNode) -> None:
    reader, writer = await connect(node)
    head = (
        "POST /?url=http://127.0.0.1:9/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        f"NTORQUE_API_KEY: {node.key}\r\nContent-Length: 100\r\n\r\n"
    )
    try:
        writer.write(head.encode() + b"x" * 50)
        await writer.drain()
        elapsed, served = await served_meanwhile(node, closed_after(reader, time.monotonic()))
    finally:
        writer.close()
    assert in_bound(elapsed, BODY_S), elapsed  # not the header bound: the headers came in time
    assert served >= 3


@IN_MODULE_LOOP
async def test_a_kept_alive_connection_waits_the_idle_bound(node: LiveNode) -> None:
    """Longer than the header bound between requests, then cut off at the idle bound."""
    reader, writer = await connect(node)
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        writer.write(request)
        assert (await read_answer(reader))[0] == 200
        await asyncio.sleep(HEADER_S + 0.4)  # past the header bound: still open
        writer.write(request)
        assert (await read_answer(reader))[0] == 200
        elapsed, served = await served_meanwhile(node, closed_after(reader, time.monotonic()))
    finally:
        writer.close()
    assert in_bound(elapsed, IDLE_S), elapsed
    assert served >= 3


@IN_MODULE_LOOP
async def test_the_access_log_shows_no_query_value(node: LiveNode) -> None:
    secret = "S3CRET-in-the-query"
    answer = await node.request("GET", f"/nowhere?token={secret}&key={secret}")
    assert answer.status == 404
    assert answer.json == {"status": 404, "error": "no such resource"}
    lines = [line for line in node.logged.lines if "tornado.access" in line]
    assert any("WARNING tornado.access 404 GET /nowhere?token=***&key=***" in x for x in lines)
    assert secret not in node.logged.text


# -- from the delivery tests ---------------------------------------------------

POLL_S = 0.05


def uid() -> str:
    return uuid.uuid4().hex[:12]


async def wait_all(node: LiveNode, ids: Iterable[int], timeout_s: float) -> list[dict[str, Any]]:
    """Wait for every task to finish; all within one shared deadline."""
    deadline = time.monotonic() + timeout_s
    done = []
    for task_id in ids:
        left = max(deadline - time.monotonic(), 0.1)
        done.append(await node.wait_for(task_id, timeout_s=left))
    return done


async def post_task(node: LiveNode, url: str) -> Response:
    """POST / without asserting the answer (for outages)."""
    return await node.request("POST", "/?" + urlencode({"url": url}), b"x=1")


def still_running(node: LiveNode) -> bool:
    """The node has not stopped itself, and its consumer loop goes on."""
    running = node.running
    return not running.stopped.is_set() and not running.failed and not running.consuming.done()


@pytest.fixture
def postgres_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A fresh, migrated PostgreSQL database (and the shared Redis, unique channel)."""
    return make_backend(request, "postgres", tmp_path)


# -- Redis going away ------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.postgres
@pytest.mark.redis
async def test_redis_down_loses_nothing(
    postgres_backend: Backend,
    own_redis: RedisProcess,
    hooks: HookServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ntorque.channel")
    postgres_backend.redis_url = own_redis.url
    run = uid()
    paths: list[str] = []
    settings = {"min_due_delay_s": 0.5, "requeue_interval_s": 0.3, "concurrency": 2}
    async with live_for(postgres_backend, **settings) as node:

        async def enqueue(path: str) -> int:
            paths.append(path)
            return int((await node.enqueue(hooks.url(path), timeout=5))["id"])

        # Two slots: two calls run, the other ids wait in Redis when it dies.
        before = [await enqueue(f"/slow/0.5/{run}-before-{i}") for i in range(6)]
        await hooks.wait_for_calls_async(paths[0], 1)
        await asyncio.to_thread(own_redis.stop)
        during = [await enqueue(f"/status/200/{run}-during-{i}") for i in range(5)]
        done = await wait_all(node, before + during, timeout_s=30)
        assert [task["status"] for task in done] == ["completed"] * len(done), done

        await asyncio.to_thread(own_redis.start)
        after = [await enqueue(f"/status/200/{run}-after-{i}") for i in range(5)]
        done = await wait_all(node, after, timeout_s=20)
        assert [task["status"] for task in done] == ["completed"] * len(done), done
        assert still_running(node), node.logged.text
        assert {path: len(hooks.calls(path)) for path in paths} == dict.fromkeys(paths, 1)
    # It really went away, for the node too, and came back.
    assert "channel redis unavailable" in caplog.text
    assert "channel redis available again" in caplog.text


# -- the database going away --------------------------------------------------------


@pytest.fixture
def database_proxy(postgres_backend: Backend) -> Iterator[TcpProxy]:
    parts = urlsplit(postgres_backend.database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.open()
    user, at, _ = parts.netloc.rpartition("@")
    netloc = f"{user}{at}127.0.0.1:{proxy.port}"
    postgres_backend.database_url = urlunsplit(parts._replace(netloc=netloc))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.mark.postgres
async def test_database_down_answers_503_with_retry_after_then_recovers(
    postgres_backend: Backend, database_proxy: TcpProxy, hooks: HookServer
) -> None:
    assert f":{database_proxy.port}/" in postgres_backend.database_url
    run = uid()
    settings = {"db_timeout_s": 1, "min_due_delay_s": 0.5, "requeue_interval_s": 0.5}
    async with live_for(postgres_backend, **settings) as node:
        quick = [
            (await node.enqueue(hooks.url(f"/status/200/{run}-before-{i}")))["id"] for i in range(3)
        ]
        await wait_all(node, quick, timeout_s=15)
        # These calls are running when the database goes: their outcome cannot be stored.
        slow_paths = [f"/slow/1/{run}-across-{i}" for i in range(2)]
        across = [(await node.enqueue(hooks.url(path), timeout=2))["id"] for path in slow_paths]
        for path in slow_paths:
            await hooks.wait_for_calls_async(path, 1)

        await asyncio.to_thread(database_proxy.close)
        answers = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            answers.append(await post_task(node, hooks.url(f"/status/200/{run}-refused")))
            await asyncio.sleep(0.1)
        assert still_running(node), node.logged.text
        assert {answer.status for answer in answers} == {503}, [
            (answer.status, answer.body) for answer in answers
        ]
        for answer in answers:
            assert answer.headers["Content-Type"].startswith("application/json")
            assert answer.headers["Retry-After"] == str(RETRY_AFTER_UNAVAILABLE_S)
            assert answer.json["status"] == 503
            assert answer.json["error"]
        assert hooks.calls(f"/status/200/{run}-refused") == []

        database_proxy.open()
        first: list[int] = []
        deadline = time.monotonic() + 10
        while not first:  # enqueue answers 201 again once the database is back
            assert time.monotonic() < deadline, "no 201 within 10s of the database coming back"
            answer = await post_task(node, hooks.url(f"/status/200/{run}-after-0"))
            assert answer.status in (201, 503), (answer.status, answer.body)
            if answer.status == 201:
                first.append(answer.json["id"])
            else:
                await asyncio.sleep(POLL_S)
        after = first + [
            (await node.enqueue(hooks.url(f"/status/200/{run}-after-{i}")))["id"]
            for i in range(1, 4)
        ]
        done = await wait_all(node, [*quick, *across, *after], timeout_s=30)
        assert [task["status"] for task in done] == ["completed"] * len(done), done
        assert still_running(node), node.logged.text
        after_paths = [f"/status/200/{run}-after-{i}" for i in range(4)]
        assert [len(hooks.calls(path)) for path in after_paths] == [1] * len(after_paths)
        assert hooks.calls(f"/status/200/{run}-refused") == []
