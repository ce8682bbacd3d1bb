"""Recurring schedules where processes are the point: three ntorque processes
on one PostgreSQL and Redis make one task and one call for every tick of
every schedule, each within a second of its tick, while one of them dies by
kill -9; a cluster stopped for a few seconds makes one task for the latest
tick it missed when a process comes back (catch_up latest); and the embedded
backend (SQLite, one process) ticks on its own."""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import postgres_cluster
from tests.hookserver import Call, HookServer
from tests.server import NtorqueServer

NODES = 3
RUN_S = 11.0  # how long the schedules tick
KILL_AT_S = 5.5  # kill -9 of one process, this long into the run: between two ticks
CALLS_WITHIN_S = 15.0  # every task's call has arrived this long after the schedules end
MADE = re.compile(r"task \d+ enqueued .* schedule=(\d+) tick=(\S+)")  # a node's log line


@pytest.fixture(scope="module")
def nodes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[NtorqueServer]]:
    """Three processes on one PostgreSQL and Redis, shared by this module's tests."""
    with postgres_cluster(request, tmp_path_factory.mktemp("schedules"), NODES) as started:
        yield started


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def running(nodes: list[NtorqueServer]) -> None:
    """Start again the nodes an earlier test stopped or killed."""
    stopped = [node for node in nodes if node.process is None or node.process.poll() is not None]
    for node in stopped:
        node.start(wait=False)
    for node in stopped:
        node.wait_ready()


def create(node: NtorqueServer, hooks: HookServer, **rule: Any) -> tuple[dict[str, Any], str]:
    """A schedule calling a path of its own; its JSON and the path."""
    path = f"/schedules/{uuid.uuid4().hex}"
    body = {**rule, "task": {"url": hooks.url(path), "timeout": 5}}
    answer = node.request("POST", "/schedules", json.dumps(body).encode())
    assert answer.status == 201, answer.body
    return dict(answer.json), path


def made(node: NtorqueServer, schedule_id: int) -> list[dict[str, Any]]:
    """The tasks of a schedule's ticks, in tick order."""
    answer = node.request("GET", f"/tasks?schedule_id={schedule_id}&limit=1000")
    assert answer.status == 200, answer.body
    assert answer.json["next_cursor"] is None
    return sorted(answer.json["tasks"], key=lambda task: at(task["schedule_tick"]))


def ticks_of(tasks: list[dict[str, Any]]) -> list[float]:
    return [at(task["schedule_tick"]) for task in tasks]


def called_ticks(calls: list[Call], schedule_id: int) -> list[float]:
    assert {call.headers["ntorque-schedule-id"] for call in calls} <= {str(schedule_id)}
    return sorted(at(call.headers["ntorque-schedule-tick"]) for call in calls)


def ticks_made_by(node: NtorqueServer, schedule_ids: set[int]) -> list[float]:
    """The ticks of these schedules the node made, as its log tells."""
    found = MADE.finditer(node.log_path.read_text(errors="replace"))
    return [at(match[2]) for match in found if int(match[1]) in schedule_ids]


def wait_for_calls(hooks: HookServer, path: str, count: int) -> list[Call]:
    hooks.wait_for_calls(path, count, timeout_s=CALLS_WITHIN_S)
    time.sleep(0.3)  # a second call of a tick would show by now
    return hooks.calls(path)


def check_once_each(
    tasks: list[dict[str, Any]], calls: list[Call], schedule: dict[str, Any], step_s: float
) -> list[float]:
    """One task and one call for every tick from the first to the last, each
    task made within a second of its tick and called at or after it."""
    ticks = ticks_of(tasks)
    assert ticks[0] == at(schedule["next_tick"])  # its first tick, as created
    assert ticks == [ticks[0] + k * step_s for k in range(len(ticks))], ticks
    assert called_ticks(calls, schedule["id"]) == ticks
    late = [at(task["created"]) - at(task["schedule_tick"]) for task in tasks]
    assert all(0 <= each < 1.0 for each in late), max(late)
    arrived = {at(call.headers["ntorque-schedule-tick"]): call.at for call in calls}
    assert all(arrived[tick] >= tick for tick in ticks)
    return ticks


def test_three_processes_make_every_tick_once_on_time_while_one_is_killed(
    nodes: list[NtorqueServer], hooks: HookServer
) -> None:
    running(nodes)
    rules = [{"every_s": 1}] * 5 + [{"cron": "*/2 * * * * *"}]  # seconds first: every 2 s
    made_by = [create(nodes[n % NODES], hooks, **rule) for n, rule in enumerate(rules)]
    ids = {schedule["id"] for schedule, _ in made_by}
    started = time.time()
    time.sleep(max(0.0, round(started + KILL_AT_S) + 0.5 - time.time()))  # mid-second
    # The process that made the latest tick (a round's ticks mostly go to one).
    killed = max(nodes, key=lambda node: max(ticks_made_by(node, ids), default=0.0))
    killed.kill()
    killed_at = time.time()
    alive = [node for node in nodes if node is not killed]
    time.sleep(max(0.0, started + RUN_S - time.time()))
    for n, (schedule, _) in enumerate(made_by):
        answer = alive[n % len(alive)].request("DELETE", f"/schedules/{schedule['id']}")
        assert answer.status == 204, answer.body
    stopped = time.time()
    for (schedule, path), rule in zip(made_by, rules, strict=True):
        step_s = 2.0 if "cron" in rule else 1.0
        tasks = made(alive[0], schedule["id"])
        calls = wait_for_calls(hooks, path, len(tasks))
        ticks = check_once_each(tasks, calls, schedule, step_s)
        assert ticks[-1] > stopped - 1.0 - step_s  # ticking until the end
        assert sum(tick < killed_at for tick in ticks) >= 2  # before the kill, and after it
        assert sum(tick > killed_at for tick in ticks) >= 2
    by_killed = ticks_made_by(killed, ids)
    assert by_killed and max(by_killed) > killed_at - 2.0  # it was firing until it died


def test_a_stopped_cluster_makes_the_latest_missed_tick_when_one_process_restarts(
    nodes: list[NtorqueServer], hooks: HookServer
) -> None:
    alive = [node for node in nodes if node.process and node.process.poll() is None]
    schedule, path = create(alive[0], hooks, every_s=1)  # catch_up latest, by default
    wait_for_calls(hooks, path, 2)
    for node in nodes:
        node.stop()
    gap_from = time.time()
    time.sleep(3.0)
    restarted = time.time()
    nodes[2].start()
    wait_for_calls(hooks, path, len(made(nodes[2], schedule["id"])) + 2)  # two after the gap
    assert nodes[2].request("DELETE", f"/schedules/{schedule['id']}").status == 204
    tasks = made(nodes[2], schedule["id"])
    calls = wait_for_calls(hooks, path, len(tasks))
    ticks = ticks_of(tasks)
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b - a != 1.0]
    assert len(gaps) == 1, ticks
    before, after = gaps[0]
    assert before < gap_from and after - before >= 3.0  # the ticks missed: none made
    assert after > restarted - 1.0  # the one made: the latest when a process came back
    assert called_ticks(calls, schedule["id"]) == ticks
    late = {
        at(task["schedule_tick"]): at(task["created"]) - at(task["schedule_tick"]) for task in tasks
    }
    caught_up = late.pop(after)
    assert all(0 <= each < 1.0 for each in late.values()), late  # the ticks on time
    # The missed tick made on recovery is the latest when the ticker first
    # looked, so at most one interval (1 s) old then, plus that firing's own
    # few milliseconds: it is not on time, it stands for the ticks missed.
    assert 0 <= caught_up < 1.0 + 0.25, caught_up


def test_the_embedded_backend_ticks_in_one_process(hooks: HookServer, tmp_path: Path) -> None:
    """No DATABASE_URL nor REDIS_URL: SQLite in the work directory."""
    with NtorqueServer(tmp_path, {}) as server:
        every, every_path = create(server, hooks, every_s=1)
        cron, cron_path = create(server, hooks, cron="*/2 * * * * *")
        wait_for_calls(hooks, every_path, 4)
        for schedule in (every, cron):
            assert server.request("DELETE", f"/schedules/{schedule['id']}").status == 204
        for schedule, path, step_s in ((every, every_path, 1.0), (cron, cron_path, 2.0)):
            tasks = made(server, schedule["id"])
            assert len(tasks) >= 4 / step_s
            check_once_each(tasks, wait_for_calls(hooks, path, len(tasks)), schedule, step_s)
