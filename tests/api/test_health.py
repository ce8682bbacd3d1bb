"""The health probes: /healthz and /readyz without a key, on both backends;
/readyz a quick 503 naming the part that is away (PostgreSQL cut off, Redis
stopped, a database that never answers), and one check for a storm of probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from pathlib import Path

import pytest

from ntorque import health
from ntorque.config import Settings
from ntorque.store import Store
from ntorque.store.engine import make_engine
from tests.conftest import Backend, live_for
from tests.inprocess import Clock, LiveNode
from tests.netfaults import RedisProcess, TcpProxy, database_through
from tests.services import PostgresDatabases

PROBES = ("/healthz", "/readyz")


async def probe(
    node: LiveNode, path: str, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    answer = await node.request(method, path, key="")  # never a key
    return answer.status, answer.headers, answer.body


async def test_both_probes_answer_without_a_key(backend: Backend) -> None:
    async with live_for(backend, loops=False, auth_failure_limit=2) as node:
        status, headers, body = await probe(node, "/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        assert headers["Cache-Control"] == "no-store"
        assert headers["Content-Type"].startswith("application/json")
        status, headers, body = await probe(node, "/readyz")
        parts = {"database": "ok", **({"redis": "ok"} if backend.redis_url else {})}
        assert (status, json.loads(body)) == (200, {"status": "ready", "checks": parts})
        assert headers["Cache-Control"] == "no-store"
        for path in PROBES:
            status, _, body = await probe(node, path, "HEAD")
            assert (status, body) == (200, b"")
            status, _, body = await probe(node, path, "POST")
            assert status == 405 and json.loads(body)["status"] == 405


async def test_probes_are_neither_counted_nor_limited_as_failed_logins(backend: Backend) -> None:
    async with live_for(backend, loops=False, auth_failure_limit=2) as node:
        for _ in range(10):  # probes of an unauthenticated checker count nothing
            assert (await probe(node, "/readyz"))[0] == 200
        assert (await node.request("GET", "/tasks", key="bad")).status == 401
        assert (await node.request("GET", "/tasks", key="bad")).status == 401
        assert (await node.request("GET", "/tasks", key="bad")).status == 429
        for path in PROBES:  # this address is limited: probes answer all the same
            assert (await probe(node, path))[0] == 200


def proxied(database_url: str) -> contextlib.AbstractContextManager[tuple[str, TcpProxy]]:
    """The database's url through a proxy the test can cut."""
    return database_through(database_url, TcpProxy)


async def test_readyz_names_the_database_when_postgresql_is_cut_off(
    postgres_databases: PostgresDatabases, redis_url: str
) -> None:
    url = postgres_databases.new()
    try:
        with proxied(url) as (through, proxy):
            async with LiveNode(through, redis_url, loops=False) as node:
                assert (await probe(node, "/readyz"))[0] == 200
                node.running.readiness.cache_s = 0  # no wait for the kept result to age
                await asyncio.to_thread(proxy.close)
                started = time.monotonic()
                status, headers, body = await probe(node, "/readyz")
                assert time.monotonic() - started < health.TIMEOUT_S + 0.5
                assert status == 503 and headers["Retry-After"] == "5"
                assert json.loads(body) == {
                    "status": 503,
                    "error": "not ready: database unavailable",
                    "checks": {"database": "unavailable", "redis": "ok"},
                }
                assert (await probe(node, "/healthz"))[0] == 200  # the process still answers
                assert "readiness: database unavailable" in node.logged.text
    finally:
        postgres_databases.give_back(url)


async def test_readyz_names_redis_while_it_is_down(
    postgres_databases: PostgresDatabases, tmp_path: Path
) -> None:
    redis = RedisProcess(tmp_path)
    redis.start()
    url = postgres_databases.new()
    try:
        async with LiveNode(url, redis.url, loops=False) as node:
            node.running.readiness.cache_s = 0
            assert (await probe(node, "/readyz"))[0] == 200
            await asyncio.to_thread(redis.stop)
            status, _, body = await probe(node, "/readyz")
            assert status == 503
            assert json.loads(body)["checks"] == {"database": "ok", "redis": "unavailable"}
            assert json.loads(body)["error"] == "not ready: redis unavailable"
            await asyncio.to_thread(redis.start)  # back: ready again, no restart of the node
            assert (await probe(node, "/readyz"))[0] == 200
    finally:
        redis.stop()
        postgres_databases.give_back(url)


async def test_a_database_that_never_answers_is_unavailable_within_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        engine = make_engine(Settings(database_url=f"postgresql://postgres@127.0.0.1:{port}/x"))
        try:
            readiness = health.Readiness({"database": Store(engine).ping}, timeout_s=0.3)
            started = time.monotonic()
            assert await readiness.check() == {"database": "unavailable"}
            assert time.monotonic() - started < 1.0
        finally:
            await engine.dispose()
    assert health.TIMEOUT_S <= 2.0  # the bound a probe sees on a node


async def test_a_storm_of_probes_costs_one_check() -> None:
    calls = 0

    async def slow_check() -> bool:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return True

    clock = Clock(0.0)
    readiness = health.Readiness({"database": slow_check}, clock=clock)
    answers = await asyncio.gather(*(readiness.check() for _ in range(50)))
    assert answers == [{"database": "ok"}] * 50 and calls == 1
    clock.advance(health.CACHE_S / 2)
    await readiness.check()
    assert calls == 1  # still fresh
    clock.advance(health.CACHE_S)
    await readiness.check()
    assert calls == 2


@pytest.mark.parametrize("failure", ["raises", "false"])
async def test_a_failing_check_is_unavailable_never_an_error(failure: str) -> None:
    async def check() -> bool:
        if failure == "raises":
            raise RuntimeError("boom")
        return False

    async def fine() -> None:
        return None  # None is an answer: only False or an error is "unavailable"

    readiness = health.Readiness({"database": check, "redis": fine, "x": check})
    assert await readiness.check() == {"database": "unavailable", "redis": "ok", "x": "unavailable"}
