"""A whole node, with its loops running, while its services go away and come
back (PostgreSQL backend): Redis killed (its waiting notifications with it),
the database cut off behind a TCP proxy. Nothing acknowledged is lost, the
node stays up, and it recovers by itself.

The node runs in the test's own event loop; everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

from ntorque.handlers import RETRY_AFTER_UNAVAILABLE_S
from tests.conftest import Backend, live_for, make_backend
from tests.hookserver import HookServer
from tests.inprocess import LiveNode
from tests.netfaults import RedisProcess, TcpProxy
from tests.server import Response

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
