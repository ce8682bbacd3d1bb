"""The node's HTTP server, in-process: slow clients are cut off within the
configured bounds (headers, body, idle keep-alive) while others are served,
and the access log shows no query value.

One node per backend, with short bounds; raw sockets (asyncio streams) play
the slow clients, in the node's own event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable

import pytest
import pytest_asyncio

from tests.conftest import Backend, live_for
from tests.inprocess import LiveNode

pytestmark = pytest.mark.asyncio(loop_scope="module")

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


async def test_the_access_log_shows_no_query_value(node: LiveNode) -> None:
    secret = "S3CRET-in-the-query"
    answer = await node.request("GET", f"/nowhere?token={secret}&key={secret}")
    assert answer.status == 404
    assert answer.json == {"status": 404, "error": "no such resource"}
    lines = [line for line in node.logged.lines if "tornado.access" in line]
    assert any("WARNING tornado.access 404 GET /nowhere?token=***&key=***" in x for x in lines)
    assert secret not in node.logged.text
