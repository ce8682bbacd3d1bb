"""At-least-once delivery where a process is the point: kill -9, SIGTERM with
calls in flight, and SIGTERM whose grace runs out; `python -m ntorque` on
both backends, restarted on the same database.

Short settings (small due delays, requeue interval and timeouts) keep each
scenario as short as a process allows; each runs on both backends at once.
Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tests.conftest import Backend, server_for, side_by_side
from tests.hookserver import HookServer
from tests.netfaults import wait_until
from tests.server import NtorqueServer

SHORT = {"NTORQUE_MIN_DUE_DELAY": "0.2", "NTORQUE_REQUEUE_INTERVAL": "0.2"}


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


def wait_all(server: NtorqueServer, ids: Iterable[int], timeout_s: float) -> list[dict[str, Any]]:
    """Wait for every task to finish; all within one shared deadline."""
    deadline = time.monotonic() + timeout_s
    done = []
    for task_id in ids:
        left = max(deadline - time.monotonic(), 0.1)
        done.append(server.wait_for(task_id, timeout_s=left))
    return done


Scenario = Callable[[Backend, HookServer, Path], None]


def on_both(scenario: Scenario, backends: list[Backend], hooks: HookServer, tmp_path: Path) -> None:
    """The scenario on each backend, side by side (each mostly waits on slow hooks)."""
    side_by_side(*(functools.partial(scenario, b, hooks, tmp_path / b.name) for b in backends))


def test_kill_9_loses_nothing(
    both_backends: list[Backend], hooks: HookServer, tmp_path: Path
) -> None:
    on_both(kill_9_loses_nothing, both_backends, hooks, tmp_path)


def kill_9_loses_nothing(backend: Backend, hooks: HookServer, tmp_path: Path) -> None:
    run = uid()
    paths = [f"/slow/1/{run}-{i}" for i in range(20)]
    server = server_for(backend, tmp_path, NTORQUE_CONCURRENCY="10", **SHORT)
    with server:
        # A timeout well over the call, so that only the kill makes a call repeat.
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
    both_backends: list[Backend], hooks: HookServer, tmp_path: Path
) -> None:
    on_both(sigterm_finishes_calls_in_flight_and_starts_none, both_backends, hooks, tmp_path)


def sigterm_finishes_calls_in_flight_and_starts_none(
    backend: Backend, hooks: HookServer, tmp_path: Path
) -> None:
    run = uid()
    paths = [f"/slow/2/{run}-{i}" for i in range(8)]
    server = server_for(backend, tmp_path, NTORQUE_CONCURRENCY="5", **SHORT)
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


def test_calls_cut_off_by_the_shutdown_grace_are_performed_again(
    both_backends: list[Backend], hooks: HookServer, tmp_path: Path
) -> None:
    on_both(calls_cut_off_by_the_grace_are_performed_again, both_backends, hooks, tmp_path)


def calls_cut_off_by_the_grace_are_performed_again(
    backend: Backend, hooks: HookServer, tmp_path: Path
) -> None:
    """SIGTERM while a call outlasts shutdown_grace_s: the process exits 0
    without its answer, and after a restart the task is performed again."""
    path = f"/slow/1/{uid()}"  # longer than the grace, within the timeout
    server = server_for(backend, tmp_path, NTORQUE_SHUTDOWN_GRACE="0.2", **SHORT)
    with server:
        task = server.enqueue(hooks.url(path), timeout=3)
        hooks.wait_for_calls(path, 1)
        assert server.stop() == 0, server.logs()
        assert "stopped with 1 calls unfinished: they will be performed again" in server.logs()
        server.start()
        done = server.wait_for(task["id"], timeout_s=30)
        assert done["status"] == "completed", done
        assert done["retry_count"] == 2, done
        calls = hooks.calls(path)
        assert [call.headers["ntorque-task-retry-count"] for call in calls] == ["0", "1"]
