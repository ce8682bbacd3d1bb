"""Queue limits across three processes on one PostgreSQL and Redis, with a
receiver that records every call: max_concurrency and rate_per_s hold for
the whole cluster, and a paused or slow queue holds no one else back."""

from __future__ import annotations

import concurrent.futures
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import postgres_cluster
from tests.hookserver import HookServer
from tests.server import NtorqueServer

NODES = 3
CONCURRENCY = 8  # consumer slots per node: 24 in the cluster


@pytest.fixture(scope="module")
def nodes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[NtorqueServer]]:
    """Three processes on one PostgreSQL and Redis, shared by this module's tests."""
    directory = tmp_path_factory.mktemp("queues")
    with postgres_cluster(
        request, directory, NODES, NTORQUE_CONCURRENCY=str(CONCURRENCY)
    ) as started:
        yield started


def configure(node: NtorqueServer, name: str, **settings: Any) -> dict[str, Any]:
    answer = node.request("PUT", f"/queues/{name}", json.dumps(settings).encode())
    assert answer.status == 200, answer.body
    return dict(answer.json)


def enqueue_spread(nodes: list[NtorqueServer], url: str, queue: str, count: int) -> list[int]:
    """count tasks in batches of 50, each batch through the next node."""
    ids: list[int] = []
    for start in range(0, count, 50):
        items = [{"url": url, "queue": queue} for _ in range(min(50, count - start))]
        node = nodes[(start // 50) % NODES]
        answer = node.request("POST", "/tasks", json.dumps(items).encode())
        assert answer.status == 201, answer.body
        ids += [task["id"] for task in answer.json["tasks"]]
    return ids


def wait_all(nodes: list[NtorqueServer], ids: list[int], timeout_s: float = 120) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        done = pool.map(lambda n: nodes[n % NODES].wait_for(ids[n], timeout_s=timeout_s),
                        range(len(ids)))  # fmt: skip
        assert {task["status"] for task in done} == {"completed"}


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


def test_max_concurrency_holds_across_three_processes_while_a_backlog_waits(
    nodes: list[NtorqueServer], hooks: HookServer
) -> None:
    configure(nodes[0], "mail", max_concurrency=5)
    path = unique("/slow/0.02")
    ids = enqueue_spread(nodes, hooks.url(path), "mail", 500)
    wait_all(nodes, ids)
    assert len(hooks.calls(path)) == 500
    assert hooks.most_at_once(path) == 5
    figures = nodes[2].request("GET", "/queues/mail").json["figures"]
    assert (figures["pending"], figures["in_flight"], figures["completed_5m"]) == (0, 0, 500)


def test_rate_per_s_holds_across_three_processes_and_is_sustained(
    nodes: list[NtorqueServer], hooks: HookServer
) -> None:
    configure(nodes[1], "payments", rate_per_s=20, burst=5)
    path = unique("/status/200")
    ids = enqueue_spread(nodes, hooks.url(path), "payments", 85)
    wait_all(nodes, ids)
    times = sorted(call.at for call in hooks.calls(path))
    assert len(times) == 85
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= 25  # 20 a second, plus a burst of 5
    # The bucket's 5, then one call every 50 ms: at least 90 % of 20 a second.
    sustained = (len(times) - 5) / (times[-1] - times[0])
    assert sustained >= 18, sustained


def test_a_paused_queue_holds_its_tasks_and_no_one_else(
    nodes: list[NtorqueServer], hooks: HookServer
) -> None:
    assert nodes[2].request("POST", "/queues/held/pause").json["paused"] is True
    held_path = unique("/status/200")
    held = enqueue_spread(nodes, hooks.url(held_path), "held", 1000)
    free_path = unique("/status/200")
    free = enqueue_spread(nodes, hooks.url(free_path), "free", 200)
    wait_all(nodes, free)
    assert hooks.calls(held_path) == []
    figures = nodes[0].request("GET", "/queues/held").json["figures"]
    assert (figures["pending"], figures["due_now"], figures["in_flight"]) == (1000, 1000, 0)
    assert figures["oldest_due_age_s"] > 0
    nodes[1].request("POST", "/queues/held/resume")
    wait_all(nodes, held)
    assert len({call.path for call in hooks.calls(held_path)}) == 1
    assert len(hooks.calls(held_path)) == 1000


def test_a_slow_limited_queue_holds_at_most_its_limit_of_consumer_slots(
    nodes: list[NtorqueServer], hooks: HookServer
) -> None:
    configure(nodes[0], "slow", max_concurrency=5)
    slow_path = unique("/slow/2")
    enqueue_spread(nodes, hooks.url(slow_path), "slow", 30)  # 12 s of calls, 5 at a time
    hooks.wait_for_calls(slow_path, 5)
    # 24 slots in the cluster: the slow queue's 25 waiting tasks hold none of
    # them, its 5 calls hold at most 5, and the other 19 serve the default
    # queue (more when the slow queue is between calls).
    fast_path = unique("/slow/1")
    fast = enqueue_spread(nodes, hooks.url(fast_path), "default", 57)
    wait_all(nodes, fast)
    assert hooks.most_at_once(slow_path) == 5
    assert hooks.most_at_once(fast_path) >= NODES * CONCURRENCY - 5
    cancelled = nodes[0].request("POST", "/tasks/cancel?queue=slow").json
    assert cancelled["changed"] > 0
