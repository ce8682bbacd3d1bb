"""Crashes and several nodes: kill -9 in the middle of a run (scenario 1),
and three nodes on one database and Redis channel, one of them killed
(scenario 5).

Each scenario ends with summarise(): nothing acknowledged (201) is lost, and
a task is performed again only when a call of it was in flight at a kill.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import make_backend, server_for
from tests.faults.harness import Ledger, enqueue_all, hold, summarise, wait_settled
from tests.hookserver import Call, HookServer
from tests.netfaults import wait_until
from tests.server import NtorqueServer

POLL_S = 0.05
TIMEOUT_S = 3  # each task's timeout: the lease of a killed call runs out quickly
# A request written to the socket just before the kill may be read (and its
# arrival time taken) by the hook server's thread a moment after it.
DELIVERY_SLACK_S = 0.5
LEADING = "this node now runs requeue and cleanup"
CALLED = re.compile(r" ntorque\.consumer task (\d+) calling attempt=(\d+) ")
# An attempt's answer stored while its task was still held: the queue logs its result.
SETTLED = re.compile(r" ntorque\.queue task (\d+) (?:completed|failed|pending) attempt=(\d+) ")
# An answer that came after its lease ran out (the task was taken again meanwhile).
LATE = re.compile(r" ntorque\.queue task (\d+) attempt=(\d+) answered after its lease")
STARTED = re.compile(r" ntorque\.app consuming with concurrency ")
# The kills land at moments drawn from this seed (NTORQUE_FAULT_SEED overrides it),
# so a failing run can be replayed; the summary line names it.
SEED = int(os.environ.get("NTORQUE_FAULT_SEED", "20261202"))
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.MULTILINE)
FAST_SETTINGS = {
    "NTORQUE_DEFAULT_TIMEOUT": str(TIMEOUT_S),
    # The production margin (the default 2 s) between a call's timeout and its
    # lease: it is what lets 50 answers settle on a busy SQLite before the lease
    # runs out; with 0.5 s, a starved CPU produced duplicates no kill explained.
    "NTORQUE_MIN_DUE_DELAY": "2",
    "NTORQUE_REQUEUE_INTERVAL": "0.5",
}


@dataclass(frozen=True)
class Kill:
    """A kill -9: sent at `sent`, the process gone at `gone` (wall clock)."""

    sent: float
    gone: float

    def in_flight(self, call: Call) -> bool:
        """Could this call have been in flight (called, answer not stored) at the kill?"""
        return self.sent - TIMEOUT_S < call.at <= self.gone + DELIVERY_SLACK_S


def cut_by(call: Call, kills: list[Kill]) -> Kill | None:
    """The kill that cut this call off: the first one after it, if it was in flight then."""
    after = [k for k in kills if call.at <= k.gone + DELIVERY_SLACK_S]
    return after[0] if after and after[0].in_flight(call) else None


def kill(server: NtorqueServer) -> Kill:
    sent = time.time()
    server.kill()
    return Kill(sent, time.time())


def retry_count(call: Call) -> int:
    return int(call.headers["ntorque-task-retry-count"])


def calls_by_task(hooks: HookServer, paths: Iterable[str]) -> dict[int, list[Call]]:
    """Our hook calls, per task id (from the NTorque-Task-Id header), in arrival order."""
    ours = set(paths)
    grouped: dict[int, list[Call]] = defaultdict(list)
    for call in hooks.calls():
        if call.path in ours:
            grouped[int(call.headers["ntorque-task-id"])].append(call)
    return {task_id: sorted(calls, key=lambda c: c.at) for task_id, calls in grouped.items()}


def attempt_numbers(server: NtorqueServer, task_ids: Iterable[int]) -> dict[int, list[int]]:
    """Task id -> the numbers of its recorded attempts (the answers ntorque stored)."""

    def fetch(task_id: int) -> tuple[int, list[int]]:
        answer = server.request("GET", f"/task/{task_id}/attempts")
        assert answer.status == 200, (answer.status, answer.body)
        return task_id, [attempt["number"] for attempt in answer.json["attempts"]]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return dict(pool.map(fetch, sorted(task_ids)))


def in_background(work: Callable[[], None]) -> Callable[[], None]:
    """Run work on a thread now; the returned function joins it (re-raising its error)."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(work)

    def join() -> None:
        try:
            future.result(timeout=100)
        finally:
            pool.shutdown(wait=False)

    return join


def wait_called(hooks: HookServer, ledger: Ledger, timeout_s: float = 60) -> None:
    """Wait (watching the hook, not polling ntorque) until every acknowledged
    task's hook has been called, so that polling task statuses afterwards
    takes no CPU from the calls still to come. Not an assertion: lost tasks
    are counted by summarise()."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        called = {call.path for call in hooks.calls()}
        if called.issuperset(ledger.acked.values()):
            return
        time.sleep(0.25)


def log_text(server: NtorqueServer) -> str:
    return server.log_path.read_text(errors="replace")


def check_retry_counts(calls: dict[int, list[Call]]) -> None:
    """No task was held twice at once: every call of a task carries a retry
    count of its own, rising in arrival order."""
    for task_id, task_calls in calls.items():
        counts = [retry_count(call) for call in task_calls]
        assert counts == sorted(set(counts)), f"task {task_id} retry counts {counts}"


def check_replays(
    calls: dict[int, list[Call]],
    recorded: dict[int, list[int]],
    kills: list[Kill],
    was_killed: Callable[[int, Call], bool] = lambda task_id, call: True,
) -> None:
    """A task called more than once: every call but its last was in flight
    at a kill (on the killed node) and no answer of it was ever stored; the
    last call's answer is the one stored."""
    for task_id, task_calls in calls.items():
        *earlier, last = task_calls
        seen = f"task {task_id}: calls {describe(task_calls)}, kills {kills}"
        for call in earlier:
            assert cut_by(call, kills) is not None, f"not in flight at a kill; {seen}"
            assert was_killed(task_id, call), f"not on the killed node; {seen}"
        assert recorded[task_id] == [retry_count(last) + 1], f"attempts {recorded[task_id]}; {seen}"


def describe(calls: list[Call]) -> list[tuple[float, int]]:
    """(arrival time, retry count) of each call, for failure messages."""
    return [(round(call.at, 3), retry_count(call)) for call in calls]


# -- scenario 1: crash ------------------------------------------------------------------

CRASH_TASKS = 2000
CRASH_CONCURRENCY = 50
CRASH_KILLS = 5
ENQUEUE_THREADS = 8


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"])
def test_crash(
    request: pytest.FixtureRequest, hooks: HookServer, tmp_path: Path, backend_name: str
) -> None:
    """kill -9 five times while tasks are enqueued and performed, restarting
    each time: nothing acknowledged is lost, and only calls in flight at a
    kill are made again."""
    started = time.monotonic()
    rng = random.Random(f"{SEED}-{backend_name}")
    backend = make_backend(request, backend_name, tmp_path)
    server = server_for(
        backend, tmp_path / "node", NTORQUE_CONCURRENCY=str(CRASH_CONCURRENCY), **FAST_SETTINGS
    )
    uid = uuid.uuid4().hex
    paths = [f"/slow/{rng.uniform(0, 0.2):.3f}/{uid}-{i}" for i in range(CRASH_TASKS)]
    ledger = Ledger()
    kills: list[Kill] = []
    with server:
        join = in_background(
            lambda: enqueue_all(
                [server], hooks, paths, ledger, threads=ENQUEUE_THREADS, timeout_s=90
            )
        )
        wait_until(lambda: len(calls_by_task(hooks, paths)) >= 50, 30, "50 hook calls")
        for _ in range(CRASH_KILLS):
            # Once the node is calling hooks again, at a random moment soon after.
            seen = len(hooks.calls())
            wait_until(lambda n=seen: len(hooks.calls()) >= n + 20, 30, "20 more hook calls")
            hold(server, rng.uniform(0.1, 1.0))
            kills.append(kill(server))
            server.start()
        join()
        wait_called(hooks, ledger)
        statuses = wait_settled(server, ledger, timeout_s=60)
        calls = calls_by_task(hooks, paths)
        replayed = {task_id: c for task_id, c in calls.items() if len(c) > 1}
        recorded = attempt_numbers(server, replayed)
        unsettled = unsettled_at_each_kill(log_text(server))
        late = answered_late(log_text(server))

    cut_calls = "+".join(str(len(cut)) for cut in unsettled)
    name = f"crash {backend_name} seed={SEED} cut-off calls={cut_calls} late answers={len(late)}"
    summary = summarise(name, ledger, statuses, hooks, started)
    assert summary.lost == ()
    assert {statuses[task_id] for task_id in ledger.acked} == {"completed"}
    # A task is called again only because a kill cut a call of it off, or a
    # lease ran out before its answer came: its calls past the first are at
    # most the calls each killed run had started and not settled (its own log
    # says which; a run holds at most its concurrency) plus the answers that
    # came late.
    assert len(unsettled) == CRASH_KILLS
    assert all(len(cut) <= CRASH_CONCURRENCY for cut in unsettled), [len(c) for c in unsettled]
    called_again = sum(len(task_calls) - 1 for task_calls in calls.values())
    assert called_again <= sum(map(len, unsettled)) + len(late), (called_again, unsettled, late)
    # The hook may also see a request twice as two tasks: a client whose
    # answer a kill cut off posts again (one request in flight per enqueuing
    # thread, per kill).
    assert summary.duplicates <= called_again + CRASH_KILLS * ENQUEUE_THREADS, summary
    assert len(replayed) <= CRASH_KILLS * CRASH_CONCURRENCY
    check_retry_counts(calls)
    check_replays(replayed, recorded, kills)
    cut = Counter(cut_by(call, kills) for calls_of in replayed.values() for call in calls_of[:-1])
    assert max(cut.values(), default=0) <= CRASH_CONCURRENCY, cut  # at most all slots, per kill


def unsettled_at_each_kill(log: str) -> list[set[tuple[int, int]]]:
    """For each run of the process that was killed (every run but the last),
    the (task id, attempt) calls it started and never settled."""
    runs = STARTED.split(log)[1:]
    cut = []
    for run in runs[:-1]:
        ended = {*SETTLED.findall(run), *LATE.findall(run)}
        cut.append(set(CALLED.findall(run)) - ended)
    return [{(int(t), int(n)) for t, n in calls} for calls in cut]


def answered_late(log: str) -> set[tuple[int, int]]:
    """(task id, attempt) of every answer that came after its lease ran out:
    the task had been taken again, so its hook was called once more. A lease
    runs out only when a starved CPU or database delays a call past its margin."""
    return {(int(t), int(n)) for t, n in LATE.findall(log)}


# -- scenario 5: several nodes ----------------------------------------------------------

NODES_TASKS = 5000
NODE_CONCURRENCY = 25
HOOK_S = 0.02


def leading_since(server: NtorqueServer) -> list[float]:
    """When (wall clock, from the log) this node took the requeue lead."""
    moments = []
    for line in log_text(server).splitlines():
        if line.endswith(LEADING) and (match := LOG_TIME.match(line)):
            moments.append(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return moments


def called_on(server: NtorqueServer) -> set[tuple[int, int]]:
    """(task id, attempt number) of every call this node started."""
    return {(int(t), int(n)) for t, n in CALLED.findall(log_text(server))}


def test_several_nodes(request: pytest.FixtureRequest, hooks: HookServer, tmp_path: Path) -> None:
    """Three nodes share one PostgreSQL database and Redis channel; the
    requeue leader is killed mid-run and stays down: nothing acknowledged is
    lost, no task is held by two nodes at once, only the killed node's calls
    in flight are made again, and another node takes the requeue lead."""
    started = time.monotonic()
    backend = make_backend(request, "postgres", tmp_path)
    settings = {"NTORQUE_CONCURRENCY": str(NODE_CONCURRENCY), **FAST_SETTINGS}
    nodes = [server_for(backend, tmp_path / f"node{i}", **settings) for i in range(3)]
    uid = uuid.uuid4().hex
    paths = [f"/slow/{HOOK_S}/{uid}-{i}" for i in range(NODES_TASKS)]
    ledger = Ledger()
    with contextlib.ExitStack() as stack:
        for node in nodes:
            stack.enter_context(node)
            node.key = nodes[0].key  # the first start created the default app
        assert nodes[0].key
        join = in_background(lambda: enqueue_all(nodes, hooks, paths, ledger, timeout_s=90))
        wait_until(lambda: len(ledger.acked) >= NODES_TASKS // 3, 60, "a third acknowledged")
        leaders = [node for node in nodes if leading_since(node)]
        assert len(leaders) == 1, [leading_since(node) for node in nodes]
        (leader,) = leaders
        assert len(leading_since(leader)) == 1
        killed = kill(leader)
        survivors = [node for node in nodes if node is not leader]
        join()
        wait_called(hooks, ledger)
        statuses = wait_settled(survivors[0], ledger, timeout_s=60)
        wait_until(lambda: any(leading_since(n) for n in survivors), 10, "a new leader")
        takeovers = [moment for node in survivors for moment in leading_since(node)]
        calls = calls_by_task(hooks, paths)
        replayed = {task_id: c for task_id, c in calls.items() if len(c) > 1}
        recorded = attempt_numbers(survivors[0], replayed)
        on_killed = called_on(leader)
        per_node = [len(called_on(node)) for node in nodes]

    summary = summarise("several nodes", ledger, statuses, hooks, started)
    assert summary.lost == ()
    assert {statuses[task_id] for task_id in ledger.acked} == {"completed"}
    assert min(per_node) > 0, per_node  # every node performed tasks
    assert len(replayed) <= NODE_CONCURRENCY
    assert summary.duplicates <= NODE_CONCURRENCY
    check_retry_counts(calls)

    def was_killed(task_id: int, call: Call) -> bool:
        return (task_id, retry_count(call) + 1) in on_killed

    check_replays(replayed, recorded, [killed], was_killed)
    for task_id, task_calls in calls.items():  # one at a time, but for the killed node's
        for earlier, later in itertools.pairwise(task_calls):
            overlap = later.at < earlier.at + HOOK_S
            assert not overlap or (was_killed(task_id, earlier) and killed.in_flight(earlier))
    # Exactly one node leads after the kill, within a few requeue intervals.
    assert len(takeovers) == 1, takeovers
    assert killed.sent < takeovers[0] < killed.gone + 5, (killed, takeovers)
