"""Outages and stops: Redis goes away (scenario 3), PostgreSQL goes away
(scenario 4), and a graceful stop in the middle of a run (scenario 7).

Each scenario runs a real ntorque process against real services, counts
what was acknowledged (201) and ends with summarise(): nothing acknowledged
is lost, and the duplicates stay within the scenario's bound.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from tests import services
from tests.conftest import Backend, make_backend, server_for, side_by_side
from tests.faults.harness import (
    Ledger,
    enqueue_all,
    hold,
    summarise,
    wait_settled,
)
from tests.faults.test_hooks_misbehaving import long_hook_called_once
from tests.hookserver import HookServer
from tests.netfaults import RedisProcess, TcpProxy, wait_until
from tests.server import NtorqueServer

POLL_S = 0.05
STAGGER_S = 1.5  # between the starts of the scenarios that wait
CALLING = re.compile(r" ntorque\.consumer task (\d+) calling ")
STOPPING = re.compile(r" ntorque\.app stopping$")
STOPPED = re.compile(r" ntorque\.app stopped$")


@dataclass(frozen=True)
class Answer:
    """One POST / of a paced run: what came back, and when (wall clock)."""

    path: str
    sent: float
    answered: float
    status: int | None  # None: no HTTP answer at all (refused, reset, timed out)
    task_id: int | None
    error: str


def paced_enqueue(
    server: NtorqueServer,
    hooks: HookServer,
    paths: list[str],
    ledger: Ledger,
    *,
    per_second: float,
    threads: int = 4,
) -> list[Answer]:
    """POST one task per path, the i-th at start + i / per_second (a steady
    stream of users), once each: no retries. Every 201 goes in the ledger."""
    start = time.monotonic()
    answers: list[Answer] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        time.sleep(max(start + index / per_second - time.monotonic(), 0.0))
        path = paths[index]
        sent = time.time()
        status: int | None = None
        task_id: int | None = None
        error = ""
        try:
            target = "/?" + urlencode({"url": hooks.url(path)})
            response = server.request("POST", target, b"outage", timeout_s=15)
            status = response.status
            if status == 201:
                task_id = int(response.json["id"])
                ledger.ack(task_id, path)
            else:
                error = response.body.decode(errors="replace")
        except OSError as failure:
            error = repr(failure)
        with lock:
            answers.append(Answer(path, sent, time.time(), status, task_id, error))

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(one, index) for index in range(len(paths))]:
            future.result()
    return sorted(answers, key=lambda answer: answer.sent)


def in_background(work: Callable[[], list[Answer]]) -> Callable[[], list[Answer]]:
    """Run work on a thread now; the returned function joins it and gives its result."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(work)

    def join() -> list[Answer]:
        try:
            return future.result(timeout=90)
        finally:
            pool.shutdown(wait=False)

    return join


def log_text(server: NtorqueServer) -> str:
    return server.log_path.read_text(errors="replace")


# -- the scenarios that wait, side by side ---------------------------------------------


def test_scenarios_that_wait(
    request: pytest.FixtureRequest, hooks: HookServer, tmp_path: Path
) -> None:
    """Scenarios 2 (long hook), 3 (Redis outage), 4 (PostgreSQL outage) and 7
    (graceful stop, on both backends) at once: each spends most of its time
    waiting, for its outage to pass or its slow hooks, with processes, a
    database and a Redis of its own. Each ends with its own summary line."""
    runs = [  # the most sensitive first: its node reaches its database within 1 s, or exits
        (postgres_outage, "postgres"),
        (redis_outage, "postgres"),
        (long_hook_called_once, "postgres"),
        (graceful_stop, "sqlite"),
        (graceful_stop, "postgres"),
    ]
    scenarios = []
    for number, (run, kind) in enumerate(runs):
        workdir = tmp_path / f"scenario{number}"
        workdir.mkdir()
        backend = make_backend(request, kind, workdir)
        scenarios.append(functools.partial(run, backend, hooks, workdir))
    side_by_side(*scenarios, stagger_s=STAGGER_S)


# -- scenario 3: Redis outage ---------------------------------------------------------


def redis_outage(backend: Backend, hooks: HookServer, tmp_path: Path) -> None:
    """Redis stops for 20 s mid-run and comes back on the same port: enqueue
    answers 201 all along, tasks go on being performed meanwhile, consumers
    return to Redis, and nothing acknowledged is lost."""
    started = time.monotonic()
    redis = RedisProcess(tmp_path)
    redis.start()
    try:
        backend = dataclasses.replace(backend, redis_url=redis.url)
        with server_for(backend, tmp_path / "node", NTORQUE_REQUEUE_INTERVAL="1") as server:
            uid = uuid.uuid4().hex
            paths = [f"/slow/0.05/{uid}-{i}" for i in range(600)]
            ledger = Ledger()
            join = in_background(lambda: paced_enqueue(server, hooks, paths, ledger, per_second=20))
            wait_until(lambda: len(ledger.acked) >= 80, 30, "80 tasks acknowledged")
            redis.stop()
            down = time.time()
            hold(server, 20)
            redis.start()
            up = time.time()
            answers = join()
            statuses = wait_settled(server, ledger, timeout_s=60)
            logs = log_text(server)

        summary = summarise("redis outage", ledger, statuses, hooks, started)
    finally:
        redis.stop()

    not_201 = [answer for answer in answers if answer.status != 201]
    assert not_201 == [], f"{len(not_201)} enqueues not answered 201, first: {not_201[:3]}"
    during = [a for a in answers if down < a.sent and a.answered < up]
    assert len(during) >= 100, f"only {len(during)} enqueues during the outage"
    ours = set(paths)
    calls_while_down = [c for c in hooks.calls() if c.path in ours and down < c.at < up]
    assert calls_while_down, "no hook was called while Redis was down"
    assert "channel redis unavailable" in logs
    assert "channel redis available again" in logs, logs[-3000:]
    after = [a.task_id for a in answers if a.sent > up and a.task_id is not None]
    assert after, "no task was enqueued after Redis came back"
    assert all(statuses[task_id] == "completed" for task_id in after)
    assert {statuses[task_id] for task_id in ledger.acked} == {"completed"}
    assert summary.lost == ()
    assert summary.duplicates == 0


# -- scenario 4: PostgreSQL outage ------------------------------------------------------


def proxied(database_url: str, proxy: TcpProxy) -> str:
    """The same database url, through the proxy."""
    parts = urlsplit(database_url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


def postgres_outage(backend: Backend, hooks: HookServer, tmp_path: Path) -> None:
    """The database is unreachable for 15 s mid-run: enqueue answers 503
    meanwhile and never 201 for a task it did not store, the process lives on,
    recovers by itself, and loses nothing it acknowledged."""
    started = time.monotonic()
    target = urlsplit(backend.database_url)
    assert target.hostname and target.port
    proxy = TcpProxy(target.hostname, target.port)
    proxy.open()
    try:
        backend = dataclasses.replace(backend, database_url=proxied(backend.database_url, proxy))
        # A 30 s lease outlasts the outage: a call made just before it still
        # gets its outcome stored afterwards rather than being performed again.
        server = server_for(
            backend,
            tmp_path / "node",
            NTORQUE_DB_TIMEOUT="1",
            NTORQUE_DEFAULT_TIMEOUT="30",
            NTORQUE_REQUEUE_INTERVAL="1",
        )
        with server:
            uid = uuid.uuid4().hex
            paths = [f"/slow/0.05/{uid}-{i}" for i in range(560)]
            ledger = Ledger()
            join = in_background(lambda: paced_enqueue(server, hooks, paths, ledger, per_second=20))
            wait_until(lambda: len(ledger.acked) >= 80, 30, "80 tasks acknowledged")
            proxy.close()
            cut = time.time()
            hold(server, 15)
            proxy.open()
            reopened = time.time()
            answers = join()
            assert server.process is not None
            assert server.process.poll() is None, f"ntorque exited:\n{server.logs()}"
            statuses = wait_settled(server, ledger, timeout_s=60)
            stored = stored_tasks(server, ledger)

        summary = summarise("postgres outage", ledger, statuses, hooks, started)
    finally:
        proxy.close()

    unexpected = [a for a in answers if a.status not in (201, 503)]
    assert unexpected == [], f"answers neither 201 nor 503: {unexpected[:3]}"
    unavailable = [a for a in answers if a.status == 503]
    assert len(unavailable) > 0
    assert all('"status": 503' in a.error for a in unavailable), unavailable[:3]
    # Nothing can be stored while the database is cut off: no 201 then, only 503.
    while_cut = [a for a in answers if cut < a.sent and a.answered < reopened]
    assert len(while_cut) >= 100, f"only {len(while_cut)} enqueues during the outage"
    assert {a.status for a in while_cut} == {503}, [a for a in while_cut if a.status != 503][:3]
    assert any(a.status == 201 and a.answered < cut for a in answers)
    resumed = [a for a in answers if a.status == 201 and a.sent > reopened]
    assert resumed, "no 201 after the database came back"
    assert resumed[0].answered - reopened < 10, f"201s resumed only {resumed[0]} after {reopened}"
    assert stored == {task_id: hooks.url(path) for task_id, path in ledger.acked.items()}
    assert {statuses[task_id] for task_id in ledger.acked} == {"completed"}
    assert summary.lost == ()
    assert summary.duplicates == 0


def stored_tasks(server: NtorqueServer, ledger: Ledger) -> dict[int, str]:
    """Acknowledged id -> the url the database has for it (absent if not stored)."""

    def fetch(task_id: int) -> tuple[int, str | None]:
        response = server.request("GET", f"/task/{task_id}")
        return task_id, response.json["url"] if response.status == 200 else None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        found = dict(pool.map(fetch, sorted(ledger.acked)))
    return {task_id: url for task_id, url in found.items() if url is not None}


# -- scenario 7: graceful stop ----------------------------------------------------------


@dataclass(frozen=True)
class Row:
    status: str
    retry_count: int
    last_status_code: int | None


def database_rows(backend: Backend) -> dict[int, Row]:
    """Every task as the database has it, read directly (ntorque is stopped)."""
    query = "SELECT id, status, retry_count, last_status_code FROM tasks"
    if backend.name == "sqlite":
        path = backend.database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path)) as connection:
            rows = connection.execute(query).fetchall()
        return {row[0]: Row(row[1], row[2], row[3]) for row in rows}

    async def read() -> dict[int, Row]:
        connection = await asyncpg.connect(backend.database_url, timeout=5)
        try:
            records = await connection.fetch(query)
        finally:
            await connection.close()
        return {r["id"]: Row(r["status"], r["retry_count"], r["last_status_code"]) for r in records}

    return services.run_async(read())


def started_before_stop(log: str) -> set[int]:
    """Ids of the tasks the first run called before it logged "stopping"."""
    called: set[int] = set()
    for line in log.splitlines():
        if STOPPING.search(line):
            return called
        if match := CALLING.search(line):
            called.add(int(match.group(1)))
    raise AssertionError(f"no 'stopping' line in the log:\n{log[-3000:]}")


def graceful_stop(backend: Backend, hooks: HookServer, tmp_path: Path) -> None:
    """SIGTERM mid-run: calls in flight finish and are stored, nothing new
    starts, the process exits 0 within its grace; the restart loses nothing
    and calls no task twice."""
    started = time.monotonic()
    grace_s = 10
    backend_name = backend.name
    server = server_for(
        backend,
        tmp_path / "node",
        NTORQUE_CONCURRENCY="10",
        NTORQUE_SHUTDOWN_GRACE=str(grace_s),
    )
    uid = uuid.uuid4().hex
    paths = [f"/slow/1/{uid}-{i}" for i in range(100)]
    ours = set(paths)
    ledger = Ledger()
    with server:
        enqueue_all([server], hooks, paths, ledger)

        def first_calls() -> list[float]:
            return [call.at for call in hooks.calls() if call.path in ours]

        wait_until(lambda: len(first_calls()) >= 25, 60, "25 hook calls")
        sigterm = time.time()
        clock = time.monotonic()
        code = server.stop(timeout_s=grace_s + 20)
        stop_s = time.monotonic() - clock
        rows = database_rows(backend)
        first_run = [call for call in hooks.calls() if call.path in ours]
        log = log_text(server)

        server.start()
        statuses = wait_settled(server, ledger, timeout_s=60)

    summary = summarise(f"graceful stop {backend_name}", ledger, statuses, hooks, started)

    assert code == 0, log[-3000:]
    assert stop_s < grace_s, f"stopping took {stop_s:.1f}s, grace {grace_s}s"
    in_flight = [call for call in first_run if call.at > sigterm - 1]  # /slow/1: still sleeping
    assert in_flight, "no call was in flight at the SIGTERM"
    called = {int(call.headers["ntorque-task-id"]) for call in first_run}
    assert len(called) == len(first_run)
    # Every call of the first run finished and its outcome was stored before the exit.
    assert {task_id: rows[task_id] for task_id in called} == {
        task_id: Row("completed", 1, 200) for task_id in called
    }
    assert [task_id for task_id, row in rows.items() if row.status == "in_progress"] == []
    # Nothing new after the SIGTERM: any call arriving later had been started before.
    late = {int(call.headers["ntorque-task-id"]) for call in first_run if call.at > sigterm}
    assert late <= started_before_stop(log), (late, started_before_stop(log))
    assert len(late) <= 10
    assert {statuses[task_id] for task_id in ledger.acked} == {"completed"}
    assert summary.lost == ()
    assert summary.duplicates == 0
