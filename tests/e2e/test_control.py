"""Task control across three processes on one PostgreSQL and Redis: one
Idempotency-Key makes exactly one task however the repeats are spread, and
scheduled tasks are called once each, never before their time."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import urlencode

import pytest

from tests.conftest import postgres_cluster
from tests.hookserver import HookServer
from tests.server import NtorqueServer

NODES = 3


@pytest.fixture(scope="module")
def nodes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[NtorqueServer]]:
    """Three processes on one PostgreSQL and Redis, shared by this module's tests."""
    directory = tmp_path_factory.mktemp("control")
    with postgres_cluster(request, directory, NODES) as started:
        yield started


def test_one_key_makes_one_task_across_three_processes(
    nodes: list[NtorqueServer], hooks: HookServer
) -> None:
    path = f"/status/200/{uuid.uuid4().hex}"
    headers = {"Idempotency-Key": f"payment-{uuid.uuid4().hex}"}

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
    prefix = urlencode({"url_prefix": hooks.url(path)})
    listed = nodes[1].request("GET", f"/tasks?{prefix}").json["tasks"]
    assert [task["id"] for task in listed] == [task_id]
    assert [call.body for call in hooks.calls(path)] == [b"amount=5"]


def test_scheduled_tasks_are_called_once_and_never_early_across_three_processes(
    nodes: list[NtorqueServer], hooks: HookServer
) -> None:
    prefix = f"/status/200/{uuid.uuid4().hex}"
    due = {}
    for n in range(60):
        task = nodes[n % NODES].enqueue(hooks.url(f"{prefix}/{n}"), delay=0.5 + n * 0.05)
        due[f"{prefix}/{n}"] = datetime.fromisoformat(task["due"]).timestamp()
    for path in due:
        hooks.wait_for_calls(path, 1, timeout_s=30)
    for path, when in due.items():
        (call,) = hooks.calls(path)  # once
        assert call.at >= when, path
