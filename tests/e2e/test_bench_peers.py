"""python -m bench --peers (issue 15): its pure parts (ratios, the table, the
targets, the exit status), the producers' loop, the message when the bench
extra is missing, and the process tree a peer's worker is measured and
stopped by. The full run is not part of the suite: it takes minutes and
needs the bench extra, which the test extra does not install."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import main
from bench.loadgen import Body, Enqueue, drive
from bench.peers import command, figures, run
from bench.processes import Child, Tree, base_environ


def phase(per_s: float, cpu_ms: float, p50: float = 1.0, lost: int = 0) -> dict[str, Any]:
    return {"end_to_end_per_s": per_s, "enqueue_per_s": 3000.0, "cpu_s_per_1k": cpu_ms,
            "latency_ms": {"p50": p50, "p95": p50, "p99": 2 * p50}, "lost": lost,
            "duplicates": 0}  # fmt: skip


def system(
    per_s: float, cpu_ms: float = 0.5, lost: int = 0, durable: bool = True
) -> dict[str, Any]:
    store = "PostgreSQL" if durable else "Redis memory"
    return {"burst": phase(per_s, cpu_ms, lost=lost), "paced": phase(200, cpu_ms, 3.0),
            "slow": phase(20, 2 * cpu_ms), "durable": durable, "store": store}  # fmt: skip


SYSTEMS = {
    "ntorque": system(2000.0),
    "arq": system(1000.0, durable=False),
    "celery": {
        "error": "RuntimeError: worker did not start:\nlog",
        "durable": False,
        "store": "Redis memory",
    },
    "procrastinate": system(400.0),
}
ALONE = {
    "two_processes": {"one": phase(1900.0, 0.5), "two": phase(2660.0, 0.5)},
    "sqlite": phase(650.0, 0.5),
    "idle": {"seconds": 10.0, "cpu_ms": 8.0, "cpu_ms_per_s": 0.8},
}


def test_ratio_and_best_peer() -> None:
    assert figures.ratio(3.0, 2.0) == 1.5
    assert figures.ratio(None, 2.0) is None and figures.ratio(3.0, 0.0) is None
    assert figures.best_peer(SYSTEMS) == ("arq", 1000.0)  # celery failed: not a candidate
    assert figures.best_peer({"ntorque": SYSTEMS["ntorque"]}) is None


def test_table_one_row_per_system_with_ratio_cpu_and_errors() -> None:
    lines = figures.table(SYSTEMS).splitlines()
    assert lines[0].split()[:3] == ["system", "burst/s", "ntorque"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["ntorque"][:10] == ["ntorque", "2000", "-", "3.0", "6.0", "0.50", "0.50", "1.00",
                                    "0", "0"]  # fmt: skip
    assert rows["arq"][1:3] == ["1000", "2.00"] and rows["procrastinate"][2] == "5.00"
    assert " ".join(rows["arq"][10:]) == "no, Redis memory"
    celery = " ".join(rows["celery"])
    assert celery.endswith("- no, Redis memory ERROR: RuntimeError: worker did not start:")
    column = lines[0].index("burst/s")
    assert all(line.index(line.split()[1], len(line.split()[0])) == column for line in lines[1:])


def test_targets_pass_fail_and_not_measured() -> None:
    checked = figures.targets(SYSTEMS, ALONE)
    verdicts = {c["target"].split(":")[0]: c["ok"] for c in checked}
    assert verdicts == {
        "burst drain, PostgreSQL + Redis": True,  # 2000 / 1000
        "enqueue over HTTP, auth on": True,
        "CPU per task": True,
        "paced 200/s latency": True,
        "embedded SQLite burst": True,
        "two processes against one": True,  # 2660 / 1900 = 1.4, the pair run together
        "idle CPU": True,
    }
    assert checked[0]["measured"]["ratio"] == 2.0 and checked[5]["measured"]["ratio"] == 1.4
    slower = {**SYSTEMS, "ntorque": system(1400.0, cpu_ms=1.2)}
    alone = {**ALONE, "idle": {"error": "boom"}, "sqlite": phase(599.0, 0.5)}
    checked = figures.targets(slower, alone)
    assert [c["ok"] for c in checked] == [False, True, False, True, False, True, None]


def test_failed_on_an_error_or_a_lost_task_anywhere() -> None:
    assert figures.failed(SYSTEMS, ALONE)  # celery's error
    ran = {name: s for name, s in SYSTEMS.items() if name != "celery"}
    assert not figures.failed(ran, ALONE)
    assert figures.failed({**ran, "arq": system(1000.0, lost=1)}, ALONE)
    assert figures.failed(ran, {**ALONE, "sqlite": phase(650.0, 0.5, lost=2)})
    pair = {"one": phase(1900.0, 0.5), "two": phase(2660.0, 0.5, lost=1)}
    assert figures.failed(ran, {**ALONE, "two_processes": pair})
    assert figures.failed(ran, {**ALONE, "two_processes": {"error": "ntorque did not start"}})


async def test_a_system_that_fails_shows_its_error_and_the_run_goes_on() -> None:
    async def broken() -> dict[str, Any]:
        raise RuntimeError("the worker did not start:\nits log")

    async def fine() -> dict[str, Any]:
        return {"burst": {}}

    assert await run.guarded("celery", broken) == {
        "error": "RuntimeError: the worker did not start:\nits log"
    }
    assert await run.guarded("arq", fine) == {"burst": {}}


async def test_drive_enqueues_each_task_once_per_producer_at_the_rate() -> None:
    seen: list[Body] = []
    opened: list[int] = []

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[Enqueue]:
        opened.append(1)

        async def enqueue(body: Body) -> int:
            seen.append(body)
            return 409 if body["n"] == 3 else 201

        yield enqueue

    sent = await drive(opener, 10, clients=4, rate=100.0, first_n=5)
    assert sorted(body["n"] for body in seen) == list(range(5, 15)) and len(opened) == 4
    assert sorted(sent.accepted) == list(range(5, 15)) and sent.refused == {}
    assert sent.last_s - sent.first_s >= 0.08  # 10 tasks at 100/s: the last one at 90 ms
    await drive(opener, 4, clients=2)
    assert len(seen) == 14


def test_peers_without_the_bench_extra_exit_2_naming_the_missing_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "celery", None)  # find_spec: not installed
    assert command.missing(("celery", "json")) == ["celery"]
    absent = command.missing()  # celery, and the others where the extra is not installed
    assert main(["--peers", "--json", "/nonexistent/peers.json"]) == 2
    error = capsys.readouterr().err
    assert f"{', '.join(absent)} not installed" in error and "celery" in absent
    assert "pip install -e '.[bench]'" in error


SPAWNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_worker_is_measured_with_its_children_and_stopped_with_them(tmp_path: Path) -> None:
    """Celery's pool processes count in its CPU, and none outlives the stop,
    even when SIGTERM ends the parent alone."""
    parent = Child([sys.executable, "-c", SPAWNER], base_environ(), tmp_path, "spawner")
    try:
        deadline = time.monotonic() + 10
        while not parent.output.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.02)
        child_pid = int(parent.output.read_text().split()[0])
        tree = Tree(parent.pid)
        assert tree.pids() == [parent.pid, child_pid]
        before, deadline = tree.cpu_s(), time.monotonic() + 5
        while tree.cpu_s() - before < 0.05 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tree.cpu_s() - before >= 0.05  # the busy child's CPU counts
        assert tree.rss_mb() > 0
    finally:
        parent.stop(timeout_s=5)
    deadline = time.monotonic() + 5
    while state(child_pid) not in ("gone", "Z") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state(child_pid) in ("gone", "Z")  # killed (a zombie until its new parent reaps it)


def state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "gone"
