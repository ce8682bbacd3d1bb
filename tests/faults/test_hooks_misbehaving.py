"""Hooks that misbehave, and a database that stops taking writes.

Scenario 2, long hook: three nodes share one PostgreSQL database and Redis
channel; each hook takes 3 s of a 10 s timeout while the requeuer runs every
second. No hook may be called twice.

Scenario 6, flapping hook: hooks answer 500, hang past the timeout or answer
200 at random (seeded); every task ends completed or failed after exactly
max_retries attempts, the attempts follow the backoff schedule, and the
attempt history matches what the hook saw.

Scenario 8a, poisoned task: one task whose body the hook always refuses
(500) among normal ones: it fails after max_retries attempts, the rest
complete, nothing stalls behind it.

Scenario 8b, read-only database: PostgreSQL stops taking writes mid-run
(default_transaction_read_only), enqueue answers 503 and the process stays
up; once writable again, 201 resumes and everything acknowledged completes.
SQLite's counterpart is a full disk: the ntorque process's file-size limit
(RLIMIT_FSIZE, set from outside with prlimit) drops to 0, so every write to
a regular file fails (EFBIG) as on a full disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import resource
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests import services
from tests.conftest import BACKENDS, Backend, make_backend, server_for
from tests.faults.harness import Ledger, enqueue_all, record, summarise, wait_settled
from tests.hookserver import HookServer, chaos_reply
from tests.server import NtorqueServer

CLOCK_TOLERANCE_S = 0.05


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


def attempts_of(server: NtorqueServer, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    def one(task_id: int) -> tuple[int, list[dict[str, Any]]]:
        answer = server.request("GET", f"/task/{task_id}/attempts")
        assert answer.status == 200, (answer.status, answer.body)
        return task_id, answer.json["attempts"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, ids))


def started_s(attempt: dict[str, Any]) -> float:
    return datetime.fromisoformat(attempt["started"]).timestamp()


# -- scenario 2: long hook, three nodes ------------------------------------------


def long_hook_called_once(backend: Backend, hooks: HookServer, tmp_path: Path) -> None:
    """Hooks of 3 s with a 10 s timeout on three nodes (PostgreSQL and Redis):
    each is called exactly once. Run side by side with the other scenarios
    that mostly wait (tests/faults/test_outages.py)."""
    settings = {"NTORQUE_REQUEUE_INTERVAL": "1"}
    servers = [server_for(backend, tmp_path / f"node{n}", (), **settings) for n in (1, 2, 3)]
    started = time.monotonic()
    ledger = Ledger()
    first = servers[0].start()
    try:
        for server in servers[1:]:
            server.key = first.key
            server.start()
        paths = [unique("/slow/3") for _ in range(30)]
        enqueue_all(servers, hooks, paths, ledger, query={"timeout": "10"})
        statuses = wait_settled(first, ledger, timeout_s=90)
        last_done = max(
            datetime.fromisoformat(first.task(task_id)["modified"]).timestamp()
            for task_id in ledger.acked
        )
        # Two more requeue rounds after the last completion: none may call again.
        time.sleep(max(last_done + 2 * 1.0 + 0.5 - time.time(), 0.0))
        summary = summarise("long hook 3 nodes postgres", ledger, statuses, hooks, started)
        attempts = attempts_of(first, sorted(ledger.acked))
        alive = [server.process is not None and server.process.poll() is None for server in servers]
    finally:
        for server in servers:
            server.stop()
    assert set(statuses.values()) == {"completed"}
    assert {task_id: len(rows) for task_id, rows in attempts.items() if len(rows) != 1} == {}
    assert alive == [True, True, True]
    assert summary.lost == ()
    assert summary.duplicates == 0


# -- scenario 6: flapping hook ---------------------------------------------------

FLAP_RETRIES = 5
FLAP_MIN_DELAY_S = 0.2


CHAOS = "/chaos/0.3/0.05/3"


def doomed_path() -> str:
    """A chaos path whose first FLAP_RETRIES draws are all 500 or hang."""
    while True:
        path = unique(CHAOS)
        if all(chaos_reply(path, n) != "200" for n in range(1, FLAP_RETRIES + 1)):
            return path


def check_flapping_task(
    task_id: int, status: str, path: str, rows: list[dict[str, Any]], hooks: HookServer
) -> list[str]:
    """Everything wrong with one task's history (empty when all is well)."""
    problems: list[str] = []
    count = len(rows)
    if [row["number"] for row in rows] != list(range(1, count + 1)):
        problems.append(f"attempt numbers {[row['number'] for row in rows]}")
    # The latest attempt decides (settling is guarded by the attempt number).
    # An earlier 200 can only be a call answered after its lease ran out
    # (at least once): counted and reported, not a failure.
    codes = [row["status_code"] for row in rows]
    if status == "completed" and (not codes or codes[-1] != 200):
        problems.append(f"completed with attempt codes {codes}")
    if status == "failed" and (count != FLAP_RETRIES or codes[-1] == 200):
        problems.append(f"failed after {count} attempts with codes {codes}")
    for n in range(1, count):
        before, after = rows[n - 1], rows[n]
        earliest = started_s(before) + before["duration_s"] + FLAP_MIN_DELAY_S * 2 ** (n - 1)
        if started_s(after) < earliest - CLOCK_TOLERANCE_S:
            problems.append(f"attempt {n + 1} at {after['started']}, before {earliest:.3f}")
    calls = hooks.calls(path)
    retry_counts = [call.headers.get("ntorque-task-retry-count") for call in calls]
    if retry_counts != [str(n) for n in range(count)]:
        problems.append(f"{count} attempts but hook retry counts {retry_counts}")
    if {call.headers.get("ntorque-task-id") for call in calls} - {str(task_id)}:
        problems.append("a call carried another task's id")
    for nth, row in enumerate(rows[: len(calls)], start=1):
        kind = chaos_reply(path, nth)
        error = (row["error"] or "").lower()
        hung = row["status_code"] is None and ("timeout" in error or "timed out" in error)
        if (kind == "hang" and not hung) or (kind != "hang" and str(row["status_code"]) != kind):
            problems.append(f"call {nth} was {kind!r}, attempt recorded {row}")
    return [f"task {task_id}: {problem}" for problem in problems]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_flapping_hook(
    request: pytest.FixtureRequest, hooks: HookServer, tmp_path: Path, backend_name: str
) -> None:
    backend = make_backend(request, backend_name, tmp_path)
    settings = {
        "NTORQUE_MIN_DUE_DELAY": str(FLAP_MIN_DELAY_S),
        "NTORQUE_MAX_RETRIES": str(FLAP_RETRIES),
        "NTORQUE_REQUEUE_INTERVAL": "0.3",
    }
    started = time.monotonic()
    ledger = Ledger()
    doomed = [doomed_path() for _ in range(3)]  # so failing after 5 attempts is exercised
    paths = [unique(CHAOS) for _ in range(197)] + doomed
    with server_for(backend, tmp_path / "node", (), **settings) as server:
        enqueue_all([server], hooks, paths, ledger, query={"timeout": "1"})
        statuses = wait_settled(server, ledger, timeout_s=90)
        attempts = attempts_of(server, sorted(ledger.acked))
        summary = summarise(f"flapping hook {backend_name}", ledger, statuses, hooks, started)
    problems = [
        problem
        for task_id, path in sorted(ledger.acked.items())
        for problem in check_flapping_task(
            task_id, statuses[task_id], path, attempts[task_id], hooks
        )
    ]
    hung = sum(
        chaos_reply(call.path, nth) == "hang"
        for path in paths
        for nth, call in enumerate(hooks.calls(path), start=1)
    )
    redelivered = sorted(
        task_id
        for task_id, rows in attempts.items()
        if 200 in [row["status_code"] for row in rows][:-1]
    )
    record(f"FAULT flapping hook {backend_name}: called again after a 200: {redelivered}")
    assert problems == []
    assert set(statuses.values()) <= {"completed", "failed"}
    assert {statuses[task_id] for task_id, path in ledger.acked.items() if path in doomed} == {
        "failed"
    }
    assert hung > 0  # ~5% of some 270 calls: the timeouts were exercised
    assert summary.lost == ()
    # Every call beyond a task's first is one of its recorded retries, no more.
    assert summary.duplicates == sum(len(rows) - 1 for rows in attempts.values())


# -- scenario 8a: poisoned task --------------------------------------------------

POISON_RETRIES = 4


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_poisoned_task(
    request: pytest.FixtureRequest, hooks: HookServer, tmp_path: Path, backend_name: str
) -> None:
    backend = make_backend(request, backend_name, tmp_path)
    settings = {
        "NTORQUE_MIN_DUE_DELAY": "0.1",
        "NTORQUE_MAX_RETRIES": str(POISON_RETRIES),
        "NTORQUE_REQUEUE_INTERVAL": "0.3",
    }
    started = time.monotonic()
    ledger = Ledger()
    normal = [unique("/poison") for _ in range(100)]
    poisoned = unique("/poison")
    with server_for(backend, tmp_path / "node", (), **settings) as server:
        enqueue_all([server], hooks, normal[:50], ledger)
        task = server.enqueue(hooks.url(poisoned), b"a POISON pill")
        ledger.ack(task["id"], poisoned)
        enqueue_all([server], hooks, normal[50:], ledger)
        statuses = wait_settled(server, ledger, timeout_s=60)
        attempts = attempts_of(server, [task["id"]])[task["id"]]
        summary = summarise(f"poisoned task {backend_name}", ledger, statuses, hooks, started)
    others = {status for task_id, status in statuses.items() if task_id != task["id"]}
    assert len(ledger.acked) == 101
    assert statuses[task["id"]] == "failed"
    assert [row["status_code"] for row in attempts] == [500] * POISON_RETRIES
    assert len(hooks.calls(poisoned)) == POISON_RETRIES
    assert others == {"completed"}
    assert summary.lost == ()
    assert summary.duplicates == POISON_RETRIES - 1  # the poisoned task's retries, no more


# -- scenario 8b: the database stops taking writes -------------------------------


def post_once(server: NtorqueServer, hooks: HookServer, path: str) -> tuple[int, Any]:
    answer = server.request("POST", "/?url=" + hooks.url(path), b"refused?", timeout_s=30)
    return answer.status, answer.json


def refused_while(server: NtorqueServer, hooks: HookServer, count: int) -> list[tuple[int, Any]]:
    """POST count tasks once each while writes are impossible; the answers."""
    return [post_once(server, hooks, unique("/status/200")) for _ in range(count)]


async def _terminate_sessions(database: str) -> None:
    """End every session on database (so new ones pick up its settings); wait until gone."""
    connection = await asyncpg.connect(services.POSTGRES_ADMIN_URL, timeout=5)
    try:
        pids = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        ended = [row["pid"] for row in pids]
        for pid in ended:
            await connection.execute("SELECT pg_terminate_backend($1)", pid)
        deadline = time.monotonic() + 10
        while await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", ended
        ):
            assert time.monotonic() < deadline, f"sessions {ended} still there"
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


def set_read_only(database: str, read_only: bool) -> None:
    if read_only:
        services.postgres_admin(f"ALTER DATABASE {database} SET default_transaction_read_only = on")
    else:
        services.postgres_admin(f"ALTER DATABASE {database} RESET default_transaction_read_only")
    services.run_async(_terminate_sessions(database))


def test_read_only_postgres(
    request: pytest.FixtureRequest, hooks: HookServer, tmp_path: Path
) -> None:
    backend = make_backend(request, "postgres", tmp_path)
    database = backend.database_url.rpartition("/")[2]
    settings = {
        "NTORQUE_DEFAULT_TIMEOUT": "10",
        "NTORQUE_MIN_DUE_DELAY": "0.2",
        "NTORQUE_REQUEUE_INTERVAL": "0.5",
    }
    started = time.monotonic()
    ledger = Ledger()
    with server_for(backend, tmp_path / "node", (), **settings) as server:
        enqueue_all([server], hooks, [unique("/status/200") for _ in range(20)], ledger)
        set_read_only(database, True)
        try:
            refused = refused_while(server, hooks, 10)
            alive_while_read_only = server.process is not None and server.process.poll() is None
        finally:
            set_read_only(database, False)
        enqueue_all([server], hooks, [unique("/status/200") for _ in range(20)], ledger)
        statuses = wait_settled(server, ledger, timeout_s=60)
        summary = summarise("read-only database postgres", ledger, statuses, hooks, started)
        alive_after = server.process is not None and server.process.poll() is None
    assert [status for status, _ in refused] == [503] * len(refused), refused
    assert alive_while_read_only and alive_after
    assert len(ledger.acked) == 40
    assert set(statuses.values()) == {"completed"}
    assert summary.lost == ()
    assert summary.duplicates == 0


def test_full_disk_sqlite(
    request: pytest.FixtureRequest, hooks: HookServer, tmp_path: Path
) -> None:
    """As root no permission or read-only file stops SQLite, and a tiny
    filesystem needs mount privileges; a file-size limit of 0 on the ntorque
    process does the same as a full disk: every write fails (EFBIG; Python
    ignores SIGXFSZ), reads still work."""
    backend = make_backend(request, "sqlite", tmp_path)
    settings = {"NTORQUE_MIN_DUE_DELAY": "0.2", "NTORQUE_REQUEUE_INTERVAL": "0.5"}
    started = time.monotonic()
    ledger = Ledger()
    with server_for(backend, tmp_path / "node", (), **settings) as server:
        assert server.process is not None
        pid = server.process.pid
        enqueue_all([server], hooks, [unique("/status/200") for _ in range(20)], ledger)
        wait_settled(server, ledger, timeout_s=30)
        soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))
        try:
            refused = refused_while(server, hooks, 10)
            readable = server.request("GET", f"/task/{min(ledger.acked)}").status
            alive_while_full = server.process.poll() is None
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
        enqueue_all([server], hooks, [unique("/status/200") for _ in range(20)], ledger)
        statuses = wait_settled(server, ledger, timeout_s=60)
        summary = summarise("full disk sqlite", ledger, statuses, hooks, started)
        alive_after = server.process.poll() is None
    assert [status for status, _ in refused] == [503] * len(refused), refused
    assert readable == 200
    assert alive_while_full and alive_after
    assert len(ledger.acked) == 40
    assert set(statuses.values()) == {"completed"}
    assert summary.lost == ()
    assert summary.duplicates == 0
