"""python -m bench schedule [--backend sqlite|postgres] [--tasks N] [--spread-s S] [--nodes K]

Issue 12's scheduling target: a task enqueued with `delay=` is never called
before it is due, and is called within 1 s after (p99 over 1,000 tasks
spread over 60 s, on both backends, with several nodes).

K ntorque nodes share one PostgreSQL database and Redis list (SQLite: one
node). Task n is enqueued with delay = LEAD_S + S * n / N seconds through
node n % K; the bench keeps the "due" time each 201 answer shows, then waits
until the receiver has seen every task, or the last due time + GRACE_S.

- lateness: a task's first call arriving minus the due time it was answered
  with (p50, p99, max; nearest rank)
- early: tasks first called before that due time (must be 0)
- due off: answers whose due time is not (the send time .. the answer time)
  + delay, i.e. the server ignored or misread `delay` (must be 0)
- missing: tasks enqueued whose hook never answered 200 (must be 0)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import cluster, metrics, report
from .cluster import Run, started_nodes
from .httpraw import Connection, fetch, request_bytes, status_of
from .loadgen import Target
from .receiver import Record

LEAD_S = 2.0  # the first task is due this long after it is sent
GRACE_S = 30.0  # wait this long past the last due time for the missing calls
SETTLE_S = 1.0  # and this long after the last one arrived, so a duplicate call is seen too
DUE_TOLERANCE_S = 0.01  # the due time the server shows vs the send time + delay
TARGET_P99_MS = 1000.0


@dataclass(frozen=True)
class Scheduled:
    """One enqueued task: what the bench asked for and what the server answered."""

    sent: float  # wall time just before the POST
    delay_s: float
    answered: float  # wall time of the 201
    due: float  # the task JSON's "due"


@dataclass
class Enqueued:
    tasks: dict[int, Scheduled]
    refused: dict[int, int]  # status code -> count


def parse_iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def delay_of(n: int, tasks: int, spread_s: float) -> float:
    return round(LEAD_S + spread_s * n / tasks, 6)


async def enqueue(targets: Sequence[Target], tasks: int, spread_s: float, clients: int) -> Enqueued:
    """Send tasks 0..tasks-1, task n through targets[n % len(targets)]."""
    done = Enqueued({}, {})
    per_node = max(1, clients // len(targets))

    async def client(target: Target, numbers: Iterator[int]) -> None:
        connection = await Connection.open(target.port)
        try:
            for n in numbers:
                await _one(connection, target, n, delay_of(n, tasks, spread_s), done)
        finally:
            connection.close()

    workers = []
    for index, target in enumerate(targets):
        numbers = iter(range(index, tasks, len(targets)))
        workers += [client(target, numbers) for _ in range(per_node)]
    await asyncio.gather(*workers)
    return done


async def _one(
    connection: Connection, target: Target, n: int, delay: float, done: Enqueued
) -> None:
    path = f"{target.path}&delay={delay}"
    sent = time.time()
    body = json.dumps({"t": sent, "n": n}).encode()
    answer = await connection.send(request_bytes("POST", path, target.headers, body))
    code = status_of(answer)
    if code != 201:
        done.refused[code] = done.refused.get(code, 0) + 1
        return
    due = parse_iso(json.loads(answer.body)["due"])
    done.tasks[n] = Scheduled(sent, delay, time.time(), due)


def figures(enqueued: Enqueued, records: Sequence[Record]) -> dict[str, Any]:
    """Lateness against the answered due time; early, due off, missing, duplicates."""
    calls = metrics.calls_by_task(records)
    first = {n: made[0][4] for n, made in calls.items() if n in enqueued.tasks}
    late_ms = [(first[n] - enqueued.tasks[n].due) * 1000 for n in first]
    after_send_ms = [(at - enqueued.tasks[n].sent - enqueued.tasks[n].delay_s) * 1000
                     for n, at in first.items()]  # fmt: skip
    answered = {n for n, made in calls.items() if any(call[5] == 200 for call in made)}
    return {
        "tasks": len(enqueued.tasks),
        "refused": enqueued.refused,
        "hook_calls": len(records),
        "lateness_ms": _percentiles(late_ms),
        "lateness_after_send_ms": _percentiles(after_send_ms),
        "early": sum(value < 0 for value in late_ms),
        "due_off": sum(not _due_matches(task) for task in enqueued.tasks.values()),
        "missing": len(set(enqueued.tasks) - answered),
        "duplicates": sum(max(0, sum(c[5] == 200 for c in made) - 1) for made in calls.values()),
    }


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    return {f"p{p}": round(metrics.percentile(values, p), 1) for p in (50, 99, 100)}


def _due_matches(task: Scheduled) -> bool:
    earliest = task.sent + task.delay_s - DUE_TOLERANCE_S
    return earliest <= task.due <= task.answered + task.delay_s + DUE_TOLERANCE_S


def failed(result: dict[str, Any]) -> bool:
    counts = ("early", "due_off", "missing", "duplicates")
    return bool(result["refused"]) or any(result[name] for name in counts)


def line(result: dict[str, Any]) -> str:
    late = result["lateness_ms"]
    return (
        f"schedule  {result['backend']}, {_nodes(result['nodes'])}: {result['tasks']} tasks over "
        f"{result['spread_s']:g} s; lateness p50 {late['p50']} ms, p99 {late['p99']} ms, "
        f"max {late['p100']} ms; early {result['early']}, due off {result['due_off']}, "
        f"missing {result['missing']}, duplicates {result['duplicates']}, "
        f"refused {sum(result['refused'].values())}"
    )


def _nodes(count: int) -> str:
    return "1 node" if count == 1 else f"{count} nodes"


def target_text(result: dict[str, Any]) -> str:
    p99 = result["lateness_ms"]["p99"]
    ok = not failed(result) and p99 <= TARGET_P99_MS
    verdict = "PASS" if ok else "FAIL"
    return (f"{verdict}  all called, none early, delay honoured (due off 0), lateness p99 <= "
            f"{TARGET_P99_MS:,.0f} ms (issue 12): p99 {p99} ms")  # fmt: skip


# -- the run ----------------------------------------------------------------------


async def receiver_call(port: int, method: str, path: str) -> Any:
    return json.loads((await fetch(port, method, path)).body)


async def wait_for_calls(port: int, expected: int, deadline: float) -> None:
    """Until the hook answered 200 for `expected` tasks, or the wall clock passes deadline."""
    while time.time() < deadline:
        if (await receiver_call(port, "GET", "/_stats"))["ok"] >= expected:
            await asyncio.sleep(SETTLE_S)
            return
        await asyncio.sleep(0.2)


async def measure(run: Run, tasks: int, spread_s: float, clients: int) -> dict[str, Any]:
    async with started_nodes(run) as nodes:
        hook = f"http://127.0.0.1:{run.receiver_port}/hook"
        targets = [Target.ntorque(node.port, node.key, hook) for node in nodes]
        started = time.time()
        enqueued = await enqueue(targets, tasks, spread_s, clients)
        enqueue_s = time.time() - started
        last_due = max((task.due for task in enqueued.tasks.values()), default=time.time())
        await wait_for_calls(run.receiver_port, len(enqueued.tasks), last_due + GRACE_S)
        rows = (await receiver_call(run.receiver_port, "GET", "/_records"))["records"]
    records: list[Record] = [(int(n), int(i), int(r), s, a, int(c)) for n, i, r, s, a, c in rows]
    result = figures(enqueued, records)
    result.update(backend=run.backend, nodes=len(nodes), spread_s=spread_s,
                  enqueue_s=round(enqueue_s, 2))  # fmt: skip
    return result


# -- the command ------------------------------------------------------------------


def options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench schedule",
                                     description=__doc__.split("\n\n")[1])  # fmt: skip
    parser.add_argument("--tasks", type=int, default=1000, help="tasks to schedule (1000)")
    parser.add_argument(
        "--spread-s",
        type=float,
        default=60.0,
        help=f"due times spread over this many seconds, from {LEAD_S:g} s on (60)",
    )
    parser.add_argument("--clients", type=int, default=30, help="concurrent connections (30)")
    cluster.add_options(parser, "schedule")
    parsed = parser.parse_args(argv)
    if parsed.tasks < 1 or parsed.nodes < 1 or parsed.spread_s < 0:
        parser.error("--tasks and --nodes must be at least 1, --spread-s not negative")
    return cluster.settle_options(parsed, "schedule")


def main(argv: list[str]) -> int:
    args = options(argv)
    if cluster.services_missing(args):
        return 2
    document: dict[str, Any] = {**report.machine(), "options": {
        "backend": args.backend, "tasks": args.tasks, "spread_s": args.spread_s,
        "nodes": args.nodes, "clients": args.clients}}  # fmt: skip
    result = cluster.run(args, lambda run: measure(run, args.tasks, args.spread_s, args.clients))
    document["schedule"] = result
    report.write(args.json, document)
    print(line(result))
    print(target_text(result))
    print(f"written to {args.json}")
    return 1 if failed(result) else 0
