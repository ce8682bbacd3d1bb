"""python -m bench schedules [--backend postgres|sqlite] [--nodes K] [--schedules N] [--seconds S]
                           [--kill]

Issue 14's recurring schedules under load: every tick of every schedule
makes exactly one task, within a second of its tick, however many nodes
fire it, and one of them dying (--kill) costs no tick.

K ntorque nodes share one PostgreSQL database and Redis list (SQLite: one
node), as for `schedule`. N schedules tick every second (half `every_s: 1`,
half the 6-field cron `* * * * * *`), made through the nodes in turn, each
calling the receiver with its number n in the body. They run for S seconds;
with --kill, one node is killed (SIGKILL) at the middle of the run, 0.05 s
after a tick, while the nodes fire it: the one that made the latest tick so
far, as its log tells. Then the schedules are deleted through a node left,
each schedule's tasks read (GET /tasks?schedule_id=) and the receiver waited
for until it called every one of them.

- ticks: a schedule's expected ticks are every second from its first (the
  next_tick its creation answered) to 1 s before the stop; missing: expected
  ticks with no task; off the rule: tasks whose tick is not one of the
  schedule's; duplicates: tasks beyond the first for one tick (database)
- calls: ticks with a task never answered 200 (missing), 200 answers
  beyond the first for one tick (duplicates), calls for a tick with no task
  (stray), by the NTorque-Schedule-Tick header the receiver saw
- tick lateness: a task's created minus its tick; call lateness: the first
  call's arrival at the receiver minus the tick (p50, p99, max; nearest rank)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import cluster, metrics, report
from .cluster import Run, started_nodes
from .processes import Ntorque
from .queues import api
from .schedule import receiver_call

CRON = "* * * * * *"  # seconds first: every second
TIMEOUT_S = 5  # the ticks' tasks' timeout: a lease the killed node held ends soon
KILL_OFFSET_S = 0.05  # after a tick: the nodes are firing it
UNSURE_S = 1.0  # ticks this close to the stop may or may not have been made
CALLS_DEADLINE_S = 30.0  # past the stop: a killed node's leases end, the requeuer finds them
SETTLE_S = 1.0  # after the last call, so a second call of a tick is seen too
TARGET_MS = 1000.0
SHOWN = 20  # the ticks called twice the JSON lists, at most
MADE = re.compile(r"task \d+ enqueued .* schedule=(\d+) tick=(\S+)")


@dataclass(frozen=True)
class Made:
    """A schedule the bench made: its number in the receiver's records, and
    its first tick (the next_tick its creation answered)."""

    n: int
    id: int
    first_tick: float


Tasks = dict[int, list[tuple[float, float]]]  # schedule n -> (tick, created) of its tasks
Called = list[tuple[int, float, float, int]]  # n, tick, arrived, code


def parse_iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


# -- figures ------------------------------------------------------------------------


def tick_figures(made: Sequence[Made], tasks: Tasks, stop_s: float) -> dict[str, Any]:
    """The database's side: ticks made, expected, missing, off the rule, twice."""
    expected = missing = off_rule = duplicates = 0
    for schedule in made:
        ticks = Counter(tick for tick, _ in tasks.get(schedule.n, []))
        duplicates += sum(count - 1 for count in ticks.values())
        last = stop_s - UNSURE_S
        count = max(0, math.floor(last - schedule.first_tick) + 1)
        due = [schedule.first_tick + k for k in range(count)]
        expected += len(due)
        missing += sum(tick not in ticks for tick in due)
        off_rule += sum(not _on_rule(schedule, tick) for tick in ticks)
    return {"ticks_made": sum(len(each) for each in tasks.values()), "ticks_expected": expected,
            "missing": missing, "off_rule": off_rule, "duplicates": duplicates}  # fmt: skip


def _on_rule(schedule: Made, tick: float) -> bool:
    steps = tick - schedule.first_tick
    return steps >= 0 and steps == int(steps)


def call_figures(tasks: Tasks, called: Called) -> dict[str, Any]:
    """The receiver's side: ticks with a task never answered 200, answered twice, stray."""
    made = {(n, tick) for n, each in tasks.items() for tick, _ in each}
    ok = Counter((n, tick) for n, tick, _, code in called if code == 200)
    twice = sorted(key for key, count in ok.items() if count > 1)[:SHOWN]
    return {
        "calls": len(called),
        "missing_calls": len(made - set(ok)),
        "duplicate_calls": sum(count - 1 for count in ok.values()),
        "stray_calls": len({(n, tick) for n, tick, _, _ in called} - made),
        "called_twice": [_arrivals(called, n, tick) for n, tick in twice],
    }


def _arrivals(called: Called, n: int, tick: float) -> dict[str, Any]:
    arrived = sorted(at for m, t, at, code in called if (m, t) == (n, tick) and code == 200)
    return {"n": n, "tick": tick, "arrived": arrived}


def lateness(tasks: Tasks, called: Called, killed_at: float | None) -> dict[str, Any]:
    """Tick lateness (created - tick) and call lateness (first arrival - tick), in ms."""
    late_ms = [(created - tick) * 1000 for each in tasks.values() for tick, created in each]
    first: dict[tuple[int, float], float] = {}
    for n, tick, arrived, _ in called:
        first[(n, tick)] = min(arrived, first.get((n, tick), arrived))
    calls_ms = [(arrived - tick) * 1000 for (_, tick), arrived in first.items()]
    figures = {"tick_lateness_ms": _percentiles(late_ms),
               "call_lateness_ms": _percentiles(calls_ms),
               "ticks_late": sum(value >= TARGET_MS for value in late_ms),
               "calls_late": sum(value >= TARGET_MS for value in calls_ms)}  # fmt: skip
    if killed_at is not None:  # the ticks due from 1 s before the kill to 2 s after it
        near = [(created - tick) * 1000 for each in tasks.values() for tick, created in each
                if killed_at - 1 <= tick <= killed_at + 2]  # fmt: skip
        figures["tick_lateness_near_kill_ms"] = _percentiles(near)
    return figures


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    return {f"p{p}": round(metrics.percentile(values, p), 1) for p in (50, 99, 100)}


def made_by_node(outputs: Sequence[Path], ids: set[int]) -> list[list[float]]:
    """The ticks of these schedules each node made, from its log lines
    (`task N enqueued ... schedule=S tick=T`): none should they change."""
    made = []
    for output in outputs:
        text = output.read_text(errors="replace") if output.exists() else ""
        made.append([parse_iso(m[2]) for m in MADE.finditer(text) if int(m[1]) in ids])
    return made


def latest_firer(outputs: Sequence[Path], ids: set[int]) -> int:
    """The node that made the latest tick so far (the last one, when none did)."""
    latest = [max(ticks, default=0.0) for ticks in made_by_node(outputs, ids)]
    return max(reversed(range(len(latest))), key=latest.__getitem__)


# -- the run ------------------------------------------------------------------------


async def create(node: Ntorque, port: int, n: int) -> Made:
    rule: dict[str, Any] = {"every_s": 1} if n % 2 == 0 else {"cron": CRON}
    task = {"url": f"http://127.0.0.1:{port}/hook/tick", "timeout": TIMEOUT_S,
            "content_type": "application/json", "body": f'{{"t": 0, "n": {n}}}'}  # fmt: skip
    code, answer = await api(node, "POST", "/schedules", {**rule, "name": f"bench {n}",
                                                          "task": task})  # fmt: skip
    if code != 201:
        raise RuntimeError(f"POST /schedules answered {code}: {answer}")
    return Made(n, int(answer["id"]), parse_iso(answer["next_tick"]))


async def tasks_of(node: Ntorque, schedule: Made) -> list[tuple[float, float]]:
    """(tick, created) of every task the schedule made, page after page."""
    found: list[tuple[float, float]] = []
    cursor: str | None = ""
    while cursor is not None:
        path = f"/tasks?schedule_id={schedule.id}&limit=1000"
        code, page = await api(node, "GET", path + (f"&cursor={quote(cursor)}" if cursor else ""))
        if code != 200:
            raise RuntimeError(f"GET {path} answered {code}: {page}")
        found += [(parse_iso(t["schedule_tick"]), parse_iso(t["created"])) for t in page["tasks"]]
        cursor = page["next_cursor"]
    return found


async def called(port: int) -> Called:
    rows = (await receiver_call(port, "GET", "/_ticks"))["ticks"]
    return [(int(n), parse_iso(tick), arrived, int(code)) for n, tick, arrived, code in rows]


async def wait_for_calls(port: int, tasks: Tasks, deadline: float) -> Called:
    """Until every tick with a task was answered 200 (or the deadline), then SETTLE_S."""
    made = {(n, tick) for n, each in tasks.items() for tick, _ in each}
    while time.time() < deadline:
        ok = {(n, tick) for n, tick, _, code in await called(port) if code == 200}
        if made <= ok:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(SETTLE_S)
    return await called(port)


async def sleep_until(wall_s: float) -> None:
    await asyncio.sleep(max(0.0, wall_s - time.time()))


@dataclass(frozen=True)
class Sizes:
    schedules: int
    seconds: float
    kill: bool


async def measure(run: Run, sizes: Sizes) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": run.backend, "nodes": run.nodes, **vars(sizes)}
    async with started_nodes(run, "schedules") as nodes:
        port = run.receiver_port
        creating = time.time()
        made = [await create(nodes[n % len(nodes)], port, n) for n in range(sizes.schedules)]
        started = time.time()
        outputs, ids = [node.output for node in nodes], {schedule.id for schedule in made}
        killed, killed_at = None, None
        if sizes.kill:
            await sleep_until(int(started + sizes.seconds / 2) + KILL_OFFSET_S)
            killed = latest_firer(outputs, ids)
            with contextlib.suppress(ProcessLookupError):
                nodes[killed].process.kill()  # SIGKILL, by the pid of a child the bench started
            nodes[killed].process.wait()
            killed_at = time.time()
        await sleep_until(started + sizes.seconds)
        stop_s = time.time()
        alive = nodes[1] if killed == 0 else nodes[0]
        for schedule in made:
            await api(alive, "DELETE", f"/schedules/{schedule.id}")
        tasks = {schedule.n: await tasks_of(alive, schedule) for schedule in made}
        calls = await wait_for_calls(port, tasks, stop_s + CALLS_DEADLINE_S)
        by_node = [len(ticks) for ticks in made_by_node(outputs, ids)]
    result.update(
        create_s=round(started - creating, 3), killed_node=killed, killed_at=killed_at,
        killed_after_s=None if killed_at is None else round(killed_at - started, 3),
        **tick_figures(made, tasks, stop_s), **call_figures(tasks, calls),
        **lateness(tasks, calls, killed_at), ticks_made_by_node=by_node,
    )  # fmt: skip
    return result


# -- what is printed ----------------------------------------------------------------


def lines(result: dict[str, Any]) -> list[str]:
    r = result
    tick, call = r["tick_lateness_ms"], r["call_lateness_ms"]
    killed = f"; node {r['killed_node']} killed {r['killed_after_s']} s in" if r["kill"] else ""
    near = r.get("tick_lateness_near_kill_ms")
    by_node = ", ".join(f"node {i}: {count}" for i, count in enumerate(r["ticks_made_by_node"]))
    return [
        f"schedules  {r['backend']}, {_nodes(r['nodes'])}: {r['schedules']} schedules every "
        f"second for {r['seconds']:g} s{killed}",
        f"ticks      made {r['ticks_made']} (expected {r['ticks_expected']}), missing "
        f"{r['missing']}, off the rule {r['off_rule']}, duplicates {r['duplicates']} (database)",
        f"calls      {r['calls']} calls: missing {r['missing_calls']}, duplicates "
        f"{r['duplicate_calls']}, stray {r['stray_calls']} (receiver)",
        f"lateness   tick (task created - tick): p50 {tick['p50']} ms, p99 {tick['p99']} ms, "
        f"max {tick['p100']} ms" + (f"; around the kill max {near['p100']} ms" if near else ""),
        f"lateness   call (arrival - tick): p50 {call['p50']} ms, p99 {call['p99']} ms, "
        f"max {call['p100']} ms; {r['calls_late']} calls 1 s late or more",
        f"nodes      ticks made, from their logs: {by_node}",
    ]


def _nodes(count: int) -> str:
    return "1 node" if count == 1 else f"{count} nodes"


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what was measured, and whether it is met."""
    r = result
    ticks = [r["missing"], r["off_rule"], r["duplicates"]]
    # A call in flight when its node is killed is made again (at least once).
    calls_ok = r["missing_calls"] == 0 and r["stray_calls"] == 0 and (
        r["kill"] or r["duplicate_calls"] == 0)  # fmt: skip
    return [
        {"target": "every tick made once (missing, off the rule, duplicates)", "measured": ticks,
         "ok": ticks == [0, 0, 0] and r["ticks_made"] > 0},
        {"target": "every tick's task called" + (", once" if not r["kill"] else ""),
         "measured": [r["missing_calls"], r["duplicate_calls"], r["stray_calls"]], "ok": calls_ok},
        {"target": f"tick lateness max < {TARGET_MS:,.0f} ms", "measured":
         r["tick_lateness_ms"]["p100"], "ok": r["ticks_late"] == 0},
        {"target": f"call lateness p99 <= {TARGET_MS:,.0f} ms", "measured":
         r["call_lateness_ms"]["p99"], "ok": r["call_lateness_ms"]["p99"] <= TARGET_MS},
    ]  # fmt: skip


def failed(checked: list[dict[str, Any]]) -> bool:
    """Broken guarantees (a tick lost or made twice, a task never called), not timing."""
    return not (checked[0]["ok"] and checked[1]["ok"])


# -- the command ------------------------------------------------------------------------


def options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench schedules",
                                     description=__doc__.split("\n\n")[1])  # fmt: skip
    parser.add_argument("--schedules", type=int, default=20, help="schedules (20)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long they tick (20)")
    parser.add_argument("--kill", action="store_true", help="SIGKILL a node mid-run")
    cluster.add_options(parser, "schedules")
    parsed = parser.parse_args(argv)
    if parsed.nodes < 1 or parsed.schedules < 1 or parsed.seconds < 3:
        parser.error("--nodes and --schedules must be at least 1, --seconds at least 3")
    cluster.settle_options(parsed, "schedules")
    if parsed.kill and parsed.nodes < 2:
        parser.error("--kill needs two nodes or more: one must be left to tick")
    return parsed


def main(argv: list[str]) -> int:
    args = options(argv)
    if cluster.services_missing(args):
        return 2
    sizes = Sizes(args.schedules, args.seconds, args.kill)
    document: dict[str, Any] = {**report.machine(), "options": {
        "backend": args.backend, "nodes": args.nodes, **vars(sizes)}}  # fmt: skip
    result = cluster.run(args, lambda run: measure(run, sizes))
    checked = targets(result)
    document.update(schedules=result, targets=checked)
    report.write(args.json, document)
    print("\n".join(lines(result)))
    print(report.targets_text(checked))
    print(f"written to {args.json}")
    return 1 if failed(checked) else 0
