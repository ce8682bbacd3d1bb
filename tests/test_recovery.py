"""At-least-once delivery with real processes: slow hooks, kill -9, SIGTERM,
Redis going away, the database going away, duplicate notifications.

Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

from tests.conftest import Backend, make_backend, server_for
from tests.hookserver import HookServer
from tests.netfaults import RedisProcess, TcpProxy, wait_until
from tests.server import NtorqueServer, Response

POLL_S = 0.05


# -- helpers -----------------------------------------------------------------


def uid() -> str:
    return uuid.uuid4().hex[:12]


def call_counts(hooks: HookServer, paths: Iterable[str]) -> dict[str, int]:
    wanted = set(paths)
    counts = dict.fromkeys(wanted, 0)
    for call in hooks.calls():
        if call.path in wanted:
            counts[call.path] += 1
    return counts


def called(hooks: HookServer, paths: Iterable[str]) -> set[str]:
    return {path for path, count in call_counts(hooks, paths).items() if count}


def watch_calls(hooks: HookServer, expected: dict[str, int], for_s: float) -> None:
    """For for_s seconds, fail at once if any path gets more calls than expected."""
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        counts = call_counts(hooks, expected)
        extra = {path: n for path, n in counts.items() if n > expected[path]}
        assert not extra, f"hooks called again: {extra} (expected {expected})"
        time.sleep(POLL_S)
    assert call_counts(hooks, expected) == expected


def wait_all(server: NtorqueServer, ids: Iterable[int], timeout_s: float) -> list[dict[str, Any]]:
    """Wait for every task to finish; all within one shared deadline."""
    deadline = time.monotonic() + timeout_s
    done = []
    for task_id in ids:
        left = max(deadline - time.monotonic(), 0.1)
        done.append(server.wait_for(task_id, timeout_s=left))
    return done


def post_task(server: NtorqueServer, url: str, **query: Any) -> Response:
    """POST / without asserting the answer (for outages)."""
    return server.request("POST", "/?" + urlencode({"url": url, **query}), b"x=1")


# -- shared server (settings that need no restart) ---------------------------


@pytest.fixture(scope="module")
def quick(
    module_backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NtorqueServer]:
    workdir = tmp_path_factory.mktemp(f"quick-{module_backend.name}")
    with server_for(
        module_backend, workdir, NTORQUE_REQUEUE_INTERVAL="1", NTORQUE_MIN_DUE_DELAY="1"
    ) as server:
        yield server


def test_long_hook_is_called_once(quick: NtorqueServer, hooks: HookServer) -> None:
    """A call longer than the requeue interval but within its timeout is not repeated."""
    path = f"/slow/3/{uid()}"
    task = quick.enqueue(hooks.url(path), timeout=10)
    done = quick.wait_for(task["id"], timeout_s=20)
    assert done["status"] == "completed"
    assert done["retry_count"] == 1
    assert done["last_status_code"] == 200
    # Two more requeue rounds: nobody calls the hook again.
    watch_calls(hooks, {path: 1}, for_s=2.5)
    assert quick.task(task["id"])["status"] == "completed"


def test_duplicate_pushes_call_the_hook_once(quick: NtorqueServer, hooks: HookServer) -> None:
    path = f"/slow/2/{uid()}"
    task = quick.enqueue(hooks.url(path), timeout=10)
    hooks.wait_for_calls(path, 1, timeout_s=10)
    for _ in range(5):
        pushed = quick.request("POST", f"/task/{task['id']}/push")
        assert pushed.status == 201, (pushed.status, pushed.body)
        assert pushed.json["id"] == task["id"]
    done = quick.wait_for(task["id"], timeout_s=15)
    assert done["status"] == "completed"
    assert done["retry_count"] == 1
    for _ in range(5):  # and once it is done, pushes change nothing either
        assert quick.request("POST", f"/task/{task['id']}/push").status == 201
    watch_calls(hooks, {path: 1}, for_s=2.5)
    assert quick.task(task["id"])["status"] == "completed"


# -- kill -9 and SIGTERM -------------------------------------------------------


def test_kill_9_loses_nothing(backend: Backend, hooks: HookServer, tmp_path: Path) -> None:
    run = uid()
    paths = [f"/slow/2/{run}-{i}" for i in range(30)]
    server = server_for(
        backend,
        tmp_path,
        NTORQUE_MIN_DUE_DELAY="0.5",
        NTORQUE_REQUEUE_INTERVAL="0.5",
        NTORQUE_CONCURRENCY="10",
    )
    with server:
        ids = [server.enqueue(hooks.url(path), timeout=3)["id"] for path in paths]
        wait_until(lambda: len(called(hooks, paths)) >= 3, 15, "hook calls started")
        server.kill()
        # Requests already written by the dead process reach the hook server.
        time.sleep(0.3)
        in_flight = called(hooks, paths)
        assert in_flight, "no call was in flight at the kill"
        server.start()
        done = wait_all(server, ids, timeout_s=40)
        assert [task["status"] for task in done] == ["completed"] * len(ids), done
        counts = call_counts(hooks, paths)
        assert all(counts[path] >= 1 for path in paths), counts
        for path in paths:
            allowed = 2 if path in in_flight else 1
            assert counts[path] <= allowed, (path, counts[path], sorted(in_flight))


def test_sigterm_finishes_calls_in_flight_and_starts_none(
    backend: Backend, hooks: HookServer, tmp_path: Path
) -> None:
    run = uid()
    paths = [f"/slow/2/{run}-{i}" for i in range(12)]
    server = server_for(
        backend,
        tmp_path,
        NTORQUE_MIN_DUE_DELAY="0.5",
        NTORQUE_REQUEUE_INTERVAL="0.5",
        NTORQUE_CONCURRENCY="5",
    )
    with server:
        ids = dict(
            zip(paths, (server.enqueue(hooks.url(p), timeout=10)["id"] for p in paths), strict=True)
        )
        wait_until(lambda: len(called(hooks, paths)) >= 5, 15, "five hook calls started")
        started = called(hooks, paths)  # the five slots are busy for 2 s: no sixth yet
        assert len(started) == 5, sorted(started)
        assert server.stop() == 0, server.logs()
        counts = call_counts(hooks, paths)
        assert {path for path, n in counts.items() if n} == started, "a call started after SIGTERM"
        assert all(counts[path] == 1 for path in started), counts

        server.start()
        for path in started:  # settled before the exit, not left to the lease
            task = server.task(ids[path])
            assert task["status"] == "completed", task
            assert task["retry_count"] == 1, task
        done = wait_all(server, ids.values(), timeout_s=30)
        assert [task["status"] for task in done] == ["completed"] * len(paths), done
        assert call_counts(hooks, paths) == dict.fromkeys(paths, 1)


# -- Redis going away (PostgreSQL backend) -----------------------------------------


@pytest.fixture
def postgres_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A fresh, migrated PostgreSQL database (and the shared Redis, unique channel)."""
    return make_backend(request, "postgres", tmp_path)


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
def test_redis_down_loses_nothing(
    postgres_backend: Backend, own_redis: RedisProcess, hooks: HookServer, tmp_path: Path
) -> None:
    postgres_backend.redis_url = own_redis.url
    run = uid()
    server = server_for(
        postgres_backend,
        tmp_path / "ntorque",
        NTORQUE_MIN_DUE_DELAY="0.5",
        NTORQUE_REQUEUE_INTERVAL="0.5",
        NTORQUE_CONCURRENCY="2",
    )
    paths: list[str] = []
    ids: list[int] = []

    def enqueue(path: str) -> int:
        paths.append(path)
        ids.append(server.enqueue(hooks.url(path), timeout=5)["id"])
        return ids[-1]

    with server:
        # Two slots: two calls run, the other ids wait in Redis when it dies.
        before = [enqueue(f"/slow/1/{run}-before-{i}") for i in range(6)]
        hooks.wait_for_calls(paths[0], 1, timeout_s=10)
        own_redis.stop()
        during = [enqueue(f"/status/200/{run}-during-{i}") for i in range(5)]
        done = wait_all(server, before + during, timeout_s=30)
        assert [task["status"] for task in done] == ["completed"] * len(done), done

        own_redis.start()
        after = [enqueue(f"/status/200/{run}-after-{i}") for i in range(5)]
        done = wait_all(server, after, timeout_s=20)
        assert [task["status"] for task in done] == ["completed"] * len(done), done
        assert server.process is not None and server.process.poll() is None
        assert call_counts(hooks, paths) == dict.fromkeys(paths, 1)
    log = server.log_path.read_text()
    assert "channel redis unavailable" in log  # it really went away, for ntorque too
    assert "channel redis available again" in log


# -- the database going away (PostgreSQL backend) -----------------------------------


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
def test_database_down_answers_503_then_recovers(
    postgres_backend: Backend, database_proxy: TcpProxy, hooks: HookServer, tmp_path: Path
) -> None:
    assert f":{database_proxy.port}/" in postgres_backend.database_url
    run = uid()
    server = server_for(
        postgres_backend,
        tmp_path / "ntorque",
        NTORQUE_DB_TIMEOUT="1",
        NTORQUE_MIN_DUE_DELAY="0.5",
        NTORQUE_REQUEUE_INTERVAL="0.5",
    )
    with server:
        quick = [server.enqueue(hooks.url(f"/status/200/{run}-before-{i}"))["id"] for i in range(3)]
        wait_all(server, quick, timeout_s=15)
        # These calls are running when the database goes: their outcome cannot be stored.
        slow_paths = [f"/slow/1/{run}-across-{i}" for i in range(2)]
        across = [server.enqueue(hooks.url(path), timeout=2)["id"] for path in slow_paths]
        for path in slow_paths:
            hooks.wait_for_calls(path, 1, timeout_s=10)

        database_proxy.close()
        answers = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            answers.append(post_task(server, hooks.url(f"/status/200/{run}-refused")))
            time.sleep(0.1)
        assert server.process is not None and server.process.poll() is None, server.logs()
        assert {answer.status for answer in answers} == {503}, [
            (answer.status, answer.body) for answer in answers
        ]
        for answer in answers:
            assert answer.headers["Content-Type"].startswith("application/json")
            assert answer.json["status"] == 503
            assert answer.json["error"]
        assert hooks.calls(f"/status/200/{run}-refused") == []

        database_proxy.open()
        first: list[int] = []

        def accepted() -> bool:
            answer = post_task(server, hooks.url(f"/status/200/{run}-after-0"))
            assert answer.status in (201, 503), (answer.status, answer.body)
            if answer.status == 201:
                first.append(answer.json["id"])
            return bool(first)

        wait_until(accepted, 10, "enqueue answering 201 after the database came back")
        after = first + [
            server.enqueue(hooks.url(f"/status/200/{run}-after-{i}"))["id"] for i in range(1, 4)
        ]
        done = wait_all(server, [*quick, *across, *after], timeout_s=30)
        assert [task["status"] for task in done] == ["completed"] * len(done), done
        assert server.process.poll() is None
        counts = call_counts(hooks, [f"/status/200/{run}-after-{i}" for i in range(4)])
        assert counts == {path: 1 for path in counts}
        assert hooks.calls(f"/status/200/{run}-refused") == []
