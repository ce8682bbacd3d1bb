"""The benchmark harness (bench/), end to end at a tiny scale: it runs, loses
nothing, and writes its JSON. No timing is asserted: figures depend on the
machine. Plus the pure parts (message parsing, lost/duplicate counting)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import metrics, queues, ticks
from bench.httpraw import parse, request_bytes
from bench.loadgen import Sent
from bench.receiver import HookProtocol, Record, Server, Span
from tests import services
from tests.conftest import side_by_side

REPOSITORY = Path(__file__).resolve().parents[2]
TOP_KEYS = {"date", "commit", "cpu_count", "options", "scenarios", "targets", "explain"}
FIGURES = {"tasks", "enqueue_per_s", "end_to_end_per_s", "latency_ms", "duplicates", "lost"}


def run_bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    path = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tasks", "50", "--json", str(path), *args],
        cwd=REPOSITORY, env=dict(os.environ), capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Targets (issue 5)" in done.stdout
    document: dict[str, Any] = json.loads(path.read_text())
    assert TOP_KEYS <= set(document)
    return document


def check(figures: dict[str, Any], tasks: int = 50) -> None:
    assert "error" not in figures, figures
    assert FIGURES <= set(figures), figures
    assert (figures["tasks"], figures["lost"], figures["duplicates"]) == (tasks, 0, 0), figures


def test_bench_embedded_sqlite(tmp_path: Path) -> None:
    scenarios = run_bench(tmp_path, "--only", "ceiling,sqlite")["scenarios"]
    check(scenarios["ceiling"])
    check(scenarios["sqlite"])
    assert scenarios["sqlite"]["cpu_s_per_1k"] > 0 and scenarios["sqlite"]["rss_mb"] > 0


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_postgres_and_redis(tmp_path: Path, redis_url: str) -> None:
    try:
        services.postgres_admin("SELECT 1")
    except Exception as error:
        services.missing("PostgreSQL", error)
    document = run_bench(
        tmp_path, "--only", "ceiling,burst,retries,prefill", "--prefill-rows", "1000",
        "--database-url", services.POSTGRES_ADMIN_URL, "--redis-url", redis_url,
    )  # fmt: skip
    scenarios = document["scenarios"]
    for name in ("burst", "retries"):
        check(scenarios[name])
    check(scenarios["prefill"]["burst"])
    check(scenarios["prefill"]["paced"], tasks=30)
    assert scenarios["retries"]["hook_calls"] == 50 + 2 * 10  # 10 tasks answered 500 twice
    assert scenarios["retries"]["retry_schedule"]["retries"] == 20
    assert "fraction_of_ceiling" in scenarios["burst"]
    assert set(scenarios["prefill"]["burst"]["vs_empty"]) >= {"end_to_end_per_s", "latency_p99"}
    assert "Index" in document["explain"]["acquire"]


# -- issue 12: python -m bench schedule / listing ----------------------------------


def run_command(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """One of the bench's commands; what it printed and the JSON it wrote."""
    path = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--json", str(path)],
        cwd=REPOSITORY, env=dict(os.environ), capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert path.exists(), done.stdout + done.stderr
    return done, json.loads(path.read_text())


Ran = tuple[subprocess.CompletedProcess[str], Any]


def on_both(
    tmp_path: Path, redis_url: str, args: tuple[str, ...], *on_postgres: str
) -> dict[str, Ran]:
    """A command on SQLite and on PostgreSQL + Redis (with on_postgres too),
    side by side: such runs mostly wait (for due times, limits, ticks). What
    each printed and wrote, by backend."""
    try:
        services.postgres_admin("SELECT 1")
    except Exception as error:
        services.missing("PostgreSQL", error)
    postgres = (*args, *on_postgres, "--database-url", services.POSTGRES_ADMIN_URL,
                "--redis-url", redis_url)  # fmt: skip
    runs = {"sqlite": (*args, "--backend", "sqlite"), "postgres": postgres}
    results: dict[str, Ran] = {}

    def run(name: str) -> None:
        (tmp_path / name).mkdir()
        results[name] = run_command(tmp_path / name, *runs[name])

    side_by_side(*(functools.partial(run, name) for name in runs))
    return results


def check_schedule(done: subprocess.CompletedProcess[str], figures: dict[str, Any]) -> None:
    """Every task called once, none before the due time it was answered with."""
    assert done.returncode == 0, done.stdout + done.stderr
    assert figures["tasks"] == 20 and figures["refused"] == {}, figures
    counts = {key: figures[key] for key in ("early", "due_off", "missing", "duplicates")}
    assert counts == {"early": 0, "due_off": 0, "missing": 0, "duplicates": 0}, figures
    assert figures["lateness_ms"]["p100"] >= 0, figures
    assert "schedule  " in done.stdout


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_schedule_on_sqlite_and_on_postgres_with_two_nodes(
    tmp_path: Path, redis_url: str
) -> None:
    """Both runs mostly wait for their tasks' times: they run side by side."""
    few = ("schedule", "--tasks", "20", "--spread-s", "3")
    results = on_both(tmp_path, redis_url, few, "--nodes", "2")
    for name, nodes in (("sqlite", 1), ("postgres", 2)):
        done, document = results[name]
        check_schedule(done, document["schedule"])
        assert document["schedule"]["nodes"] == nodes


@pytest.mark.postgres
def test_bench_listing_uses_indexes(tmp_path: Path) -> None:
    try:
        services.postgres_admin("SELECT 1")
    except Exception as error:
        services.missing("PostgreSQL", error)
    done, document = run_command(
        tmp_path, "listing", "--rows", "20000", "--database-url", services.POSTGRES_ADMIN_URL
    )
    plans = document["listing"]["plans"]
    assert len(plans) == 2 * 2 * 2 * 2 * 16  # values x page/ids x scopes x pages x filters
    assert [p["listing"] for p in plans if p["seq_scan"]] == [], done.stdout
    assert done.returncode == 0, done.stdout + done.stderr


# -- issue 13: python -m bench queues ------------------------------------------------

QUEUES_FEW = ("queues", "--backlog", "20", "--rate-backlog", "20", "--paused", "100",
              "--unlimited", "30")  # fmt: skip


def check_queues(done: subprocess.CompletedProcess[str], document: dict[str, Any]) -> None:
    """Every part ran, its figures are there, nothing was lost, duplicated or
    called while paused, and the limit held. No timing asserted."""
    assert done.returncode == 0, done.stdout + done.stderr
    assert {"date", "commit", "options", "queues", "targets"} <= set(document)
    result = document["queues"]
    conc, rate, line = result["concurrency"], result["rate"], result["head_of_line"]
    assert {"max_in_flight", "drain_s", "mean_in_flight", "refill_ms"} <= set(conc), conc
    assert {"busiest", "quietest", "drain_s"} <= set(rate), rate
    assert {"ratio", "a_drain_after_resume_s", "a_figures_while_paused"} <= set(line), line
    parts = [conc, rate, line["b_alone"], line["b_behind_paused_a"]]
    for figures, tasks in zip(parts, (20, 20, 30, 30), strict=True):
        counts = (figures["tasks"], figures["lost"], figures["duplicates"], figures["refused"])
        assert counts == (tasks, 0, 0, {}), figures
    assert (line["a"]["tasks"], line["a"]["lost"], line["a"]["duplicates"]) == (100, 0, 0), line
    assert line["a_calls_while_paused"] == 0 and line["a_figures_while_paused"]["due_now"] == 100
    assert 1 <= conc["max_in_flight"] <= 5 and conc["max_in_flight_from_spans"] <= 5, conc
    assert rate["busiest"] >= 1 and rate["drain_s"] > 0, rate
    assert document["targets"][0]["target"] == "concurrency: max in flight <= 5"
    lines = done.stdout.splitlines()
    assert sum(line.startswith(("PASS  ", "FAIL  ")) for line in lines) == 6, done.stdout
    assert any(line.startswith("head of line  A: 0 calls while paused") for line in lines)


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_queues_on_sqlite_and_on_postgres_with_two_nodes(
    tmp_path: Path, redis_url: str
) -> None:
    """Both runs mostly wait for limits and slow hooks: they run side by side."""
    results = on_both(tmp_path, redis_url, QUEUES_FEW, "--nodes", "2")
    for name, nodes in (("sqlite", 1), ("postgres", 2)):
        done, document = results[name]
        check_queues(done, document)
        assert document["queues"]["nodes"] == nodes


# -- issue 14: python -m bench schedules ---------------------------------------------


def check_schedules(
    done: subprocess.CompletedProcess[str], document: dict[str, Any], nodes: int
) -> None:
    """Every tick made once and called, the figures there. No timing asserted."""
    assert done.returncode == 0, done.stdout + done.stderr
    result = document["schedules"]
    assert (result["nodes"], result["schedules"]) == (nodes, 4), result
    counts = [result[key] for key in ("missing", "off_rule", "duplicates", "missing_calls",
                                       "stray_calls")]  # fmt: skip
    assert counts == [0, 0, 0, 0, 0], result
    assert result["ticks_made"] >= result["ticks_expected"] >= 4 * 3, result
    assert result["calls"] >= result["ticks_made"], result
    assert len(result["ticks_made_by_node"]) == nodes, result
    assert sum(result["ticks_made_by_node"]) == result["ticks_made"], result
    for figure in ("tick_lateness_ms", "call_lateness_ms"):
        assert result[figure]["p100"] >= 0, result
    lines = done.stdout.splitlines()
    assert sum(line.startswith(("PASS  ", "FAIL  ")) for line in lines) == 4, done.stdout


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_schedules_on_sqlite_and_on_postgres_with_a_node_killed(
    tmp_path: Path, redis_url: str
) -> None:
    """Both runs mostly wait for their ticks: they run side by side."""
    few = ("schedules", "--schedules", "4", "--seconds", "5")
    results = on_both(tmp_path, redis_url, few, "--nodes", "2", "--kill")
    check_schedules(*results["sqlite"], nodes=1)
    check_schedules(*results["postgres"], nodes=2)
    killed = results["postgres"][1]["schedules"]
    assert killed["kill"] is True and 1.5 <= killed["killed_after_s"] < 3.5, killed
    assert "tick_lateness_near_kill_ms" in killed, killed


# -- the pure parts ---------------------------------------------------------------


def test_parse_content_length_chunked_and_partial() -> None:
    buffer = bytearray(b"POST /hook HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n")
    message = parse(buffer)
    assert message is not None and message.body == b"abc"
    assert parse(buffer) is None and buffer == bytearray(b"GET / HTTP/1.1\r\n")
    chunked = bytearray(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunked += b"2\r\nok\r\n0\r\n\r\n"
    answer = parse(chunked)
    assert answer is not None and answer.body == b"ok" and not chunked


def test_lost_and_duplicates_are_counted_per_task() -> None:
    sent = Sent(accepted=[0, 1, 2], first_s=100.0, last_s=101.0, round_trips_s=[0.01])
    records: list[Record] = [
        (0, 7, 0, 100.0, 100.5, 200),
        (1, 8, 0, 100.0, 100.2, 500),
        (1, 8, 1, 100.0, 100.9, 200),
        (1, 8, 2, 100.0, 101.0, 200),  # answered 200 twice: one duplicate
    ]  # task 2 never answered 200: lost
    figures = metrics.summarize(sent, records)
    assert (figures["lost"], figures["duplicates"], figures["hook_calls"]) == (1, 1, 4)
    assert figures["latency_ms"]["p50"] == pytest.approx(200.0)  # first calls: 500 ms, 200 ms
    schedule = metrics.retry_schedule(records, min_s=0.5, max_s=60, tolerance_s=0.05)
    assert (schedule["retries"], schedule["early"]) == (2, 1)  # 0.7 s >= 0.5 s; 0.1 s < 1 s


def test_queue_figures_windows_in_flight_and_refill() -> None:
    arrivals = [0.0, 0.1, 0.2, 1.0, 1.5, 2.0, 2.6, 3.0]
    # [t, t + 1 s) from each arrival: 3, 3, 2, 2, 2, 2, 2, 1; quiet ones start >= 1.0, end <= 3.0
    assert queues.windows(arrivals) == {"busiest": 3, "quietest": 2, "quiet_windows": 3}
    assert queues.windows([]) == {"busiest": None, "quietest": None, "quiet_windows": 0}
    spans: list[Span] = [(0, 0.0, 1.0), (1, 0.5, 1.5), (2, 1.0, 2.0), (3, 1.6, 2.5)]
    assert queues.most_at_once(spans) == 2  # an answer at 1.0 closes before the arrival at 1.0
    assert queues.refill_ms(spans, 2) == {"p50": 0.0, "p99": 100.0, "p100": 100.0}


async def test_receiver_counts_slow_calls_in_flight_and_answers_in_order() -> None:
    """?sleep_ms= holds the answer; calls at once are counted; a fast call
    behind a slow one on the same connection is answered after it."""
    server = Server()
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(lambda: HookProtocol(server), "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]

    async def call(n: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps({"t": 0, "n": n}).encode()
        writer.write(request_bytes("POST", "/hook?sleep_ms=100", {}, body))
        if n == 0:  # a second request behind the slow one
            writer.write(request_bytes("POST", "/hook", {}, b'{"t": 0, "n": 9}'))
        answer = await reader.readuntil(b"ok") + (await reader.readuntil(b"ok") if n == 0 else b"")
        writer.close()
        return answer

    async with listening:
        answers = await asyncio.gather(*(call(n) for n in range(3)))
    assert answers[0].count(b"HTTP/1.1 200 OK") == 2 and b"200 OK" in answers[1]
    assert server.book.max_in_flight == 3 and server.book.in_flight == 0
    assert sorted(n for n, _, _ in server.book.spans) == [0, 1, 2]
    assert all(answered - arrived >= 0.09 for _, arrived, answered in server.book.spans)
    assert len(server.book.records) == 4 and server.book.records[1][0] == 9  # recorded on arrival


def test_tick_figures_missing_off_the_rule_twice_and_calls() -> None:
    made = [ticks.Made(0, 7, 100.0), ticks.Made(1, 8, 101.0)]
    tasks: ticks.Tasks = {
        0: [(100.0, 100.1), (101.0, 101.2), (103.0, 103.1), (103.5, 103.6), (104.0, 104.1)],
        1: [(101.0, 101.9), (102.0, 102.0), (102.0, 102.1)],  # 102 made twice
    }
    # Stopped at 105.5: ticks up to 104.5 expected; 0 misses 102, 1 misses 103 and 104.
    figures = ticks.tick_figures(made, tasks, stop_s=105.5)
    assert figures == {"ticks_made": 8, "ticks_expected": 9, "missing": 3, "off_rule": 1,
                       "duplicates": 1}  # fmt: skip
    called: ticks.Called = [(0, 100.0, 100.3, 200), (0, 101.0, 101.4, 500), (0, 101.0, 104.0, 200),
                            (0, 103.0, 103.2, 200), (0, 103.0, 103.3, 200), (1, 101.0, 102.0, 200),
                            (1, 105.0, 105.1, 200)]  # fmt: skip
    calls = ticks.call_figures(tasks, called)
    # Never answered 200: 0 at 103.5 and 104, 1 at 102; 0 at 103 twice; 1 at 105: no task.
    assert calls == {
        "calls": 7,
        "missing_calls": 3,
        "duplicate_calls": 1,
        "stray_calls": 1,
        "called_twice": [{"n": 0, "tick": 103.0, "arrived": [103.2, 103.3]}],
    }
    late = ticks.lateness({0: tasks[0][:2]}, called[:3], killed_at=None)
    assert late["tick_lateness_ms"] == {"p50": 100.0, "p99": 200.0, "p100": 200.0}
    assert late["call_lateness_ms"] == {"p50": 300.0, "p99": 400.0, "p100": 400.0}  # first calls
    assert (late["ticks_late"], late["calls_late"]) == (0, 0)
    assert "tick_lateness_near_kill_ms" not in late
