"""Task control across three processes on one PostgreSQL and Redis: one
Idempotency-Key makes exactly one task however the repeats are spread, and
scheduled tasks are called once each, never before their time."""

from __future__ import annotations

import concurrent.futures
import contextlib
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import Backend, make_backend, server_for
from tests.hookserver import HookServer
from tests.server import NtorqueServer

NODES = 3


@pytest.fixture
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request, "postgres", tmp_path)


@contextlib.contextmanager
def three_nodes(shared: Backend, tmp_path: Path) -> Iterator[list[NtorqueServer]]:
    nodes = [server_for(shared, tmp_path / f"node{n}") for n in range(NODES)]
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(nodes[0])  # it makes the default application
        for node in nodes[1:]:
            stack.enter_context(node)
            node.key = first.key
        yield nodes


def test_one_key_makes_one_task_across_three_processes(
    shared: Backend, hooks: HookServer, tmp_path: Path
) -> None:
    path = f"/status/200/{uuid.uuid4().hex}"
    headers = {"Idempotency-Key": f"payment-{uuid.uuid4().hex}"}
    with three_nodes(shared, tmp_path) as nodes:

        def send(n: int) -> tuple[int, int]:
            node = nodes[n % NODES]
            answer = node.request("POST", f"/?url={hooks.url(path)}", b"amount=5", headers)
            return answer.status, answer.json["id"]

        with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
            answers = list(pool.map(send, range(100)))
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200] * 99 + [201]
        (task_id,) = {task_id for _, task_id in answers}
        assert nodes[0].wait_for(task_id)["status"] == "completed"
        listed = nodes[1].request("GET", "/tasks?limit=1000").json["tasks"]
        assert [task["id"] for task in listed] == [task_id]
    assert [call.body for call in hooks.calls(path)] == [b"amount=5"]


def test_scheduled_tasks_are_called_once_and_never_early_across_three_processes(
    shared: Backend, hooks: HookServer, tmp_path: Path
) -> None:
    prefix = f"/status/200/{uuid.uuid4().hex}"
    with three_nodes(shared, tmp_path) as nodes:
        due = {}
        for n in range(60):
            task = nodes[n % NODES].enqueue(hooks.url(f"{prefix}/{n}"), delay=0.5 + n * 0.05)
            due[f"{prefix}/{n}"] = datetime.fromisoformat(task["due"]).timestamp()
        for path in due:
            hooks.wait_for_calls(path, 1, timeout_s=30)
        for path, when in due.items():
            (call,) = hooks.calls(path)  # once
            assert call.at >= when, path
