"""The fault suite's bookkeeping: which tasks were acknowledged (201), what
the hook saw, and the one-line summary every scenario ends with.

A task counts as lost when it was acknowledged but never reached a final
state, or its hook was never called.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from tests.hookserver import HookServer
from tests.server import NtorqueServer

ARTIFACTS = Path(__file__).parent.parent.parent / "test-artifacts"
POLL_S = 0.05
SUMMARIES: list[str] = []  # printed at the end of the run by tests/faults/conftest.py


@dataclass
class Ledger:
    """Acknowledged tasks: id -> the hook path it calls."""

    acked: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, task_id: int, path: str) -> None:
        with self.lock:
            self.acked[task_id] = path


@dataclass(frozen=True)
class Summary:
    name: str
    tasks: int
    lost: tuple[int, ...]
    duplicates: int
    seconds: float

    def line(self) -> str:
        return (
            f"FAULT {self.name}: tasks={self.tasks} lost={len(self.lost)} "
            f"duplicates={self.duplicates} seconds={self.seconds:.1f}"
        )


def enqueue_all(
    servers: Sequence[NtorqueServer],
    hooks: HookServer,
    paths: Sequence[str],
    ledger: Ledger,
    *,
    threads: int = 8,
    timeout_s: float = 120,
    query: dict[str, str] | None = None,
) -> None:
    """POST one task per path, retrying refused or 503 answers like a client
    would (on the next server), until each is acknowledged or time runs out."""
    deadline = time.monotonic() + timeout_s
    turn = iter(range(1 << 62))

    def one(path: str) -> None:
        target = "/?" + urlencode({"url": hooks.url(path), **(query or {})})
        while time.monotonic() < deadline:
            server = servers[next(turn) % len(servers)]
            try:
                answer = server.request("POST", target, b"fault", timeout_s=10)
            except OSError:  # down or restarting
                time.sleep(0.05)
                continue
            if answer.status == 201:
                ledger.ack(answer.json["id"], path)
                return
            assert answer.status == 503, (answer.status, answer.body)
            time.sleep(0.05)
        raise AssertionError(f"{path} not acknowledged within {timeout_s}s")

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(one, path) for path in paths]:
            future.result()


def hold(server: NtorqueServer, seconds: float) -> None:
    """Let `seconds` pass, failing at once should the ntorque process exit."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.process is not None
        assert server.process.poll() is None, f"ntorque exited:\n{server.logs()}"
        time.sleep(POLL_S)


def final_statuses(server: NtorqueServer, ids: Sequence[int]) -> dict[int, str]:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        tasks = list(pool.map(server.task, ids))
    return {task["id"]: task["status"] for task in tasks}


def wait_settled(
    server: NtorqueServer,
    ledger: Ledger,
    timeout_s: float,
    finished: Callable[[str], bool] = lambda status: status in ("completed", "failed"),
) -> dict[int, str]:
    """Poll until every acknowledged task is final (or time runs out); the statuses."""
    deadline = time.monotonic() + timeout_s
    pending = sorted(ledger.acked)
    statuses: dict[int, str] = {}
    while pending and time.monotonic() < deadline:
        statuses.update(final_statuses(server, pending))
        pending = [task_id for task_id in pending if not finished(statuses[task_id])]
        if pending:
            time.sleep(0.25)
    return statuses


def summarise(
    name: str, ledger: Ledger, statuses: dict[int, str], hooks: HookServer, started: float
) -> Summary:
    """Lost: acknowledged, yet not final or never called. Duplicates: calls past one."""
    calls = Counter(call.path for call in hooks.calls())
    lost = tuple(
        sorted(
            task_id
            for task_id, path in ledger.acked.items()
            if statuses.get(task_id) not in ("completed", "failed") or calls[path] == 0
        )
    )
    duplicates = sum(max(calls[path] - 1, 0) for path in ledger.acked.values())
    summary = Summary(name, len(ledger.acked), lost, duplicates, time.monotonic() - started)
    record(summary.line())
    return summary


def record(line: str) -> None:
    SUMMARIES.append(line)
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "faults.txt", "a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
