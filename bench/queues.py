"""python -m bench queues [--backend sqlite|postgres] [--nodes K]

Issue 13's named queues under load: their limits hold across every node,
and a paused queue's backlog does not slow the other queues.

K ntorque nodes share one PostgreSQL database and Redis list (SQLite: one
node), as for `schedule`. Tasks go in by batches (POST /tasks), shared out
over the nodes; each item names its queue. Three parts, one after another,
each waiting for its calls until a deadline of its own:

1. concurrency: queue `conc` with max_concurrency 5, a backlog of 500 tasks
   whose hook takes 50 ms (the receiver's ?sleep_ms=50): the most calls in
   flight at once at the receiver, the drain time (first enqueue to last
   answer), and how long a slot stays empty after an answer (refill).
2. rate: queue `rate` with rate_per_s 20, burst 5, a backlog of 200 tasks:
   calls arriving in 1 s windows [t, t + 1 s), one starting at each call's
   arrival; the busiest of all, and the quietest of those starting 1 s or
   more after the first call and ending before the last (the backlog waits).
3. head of line: 1,000 tasks into queue `B` (no limits) while queue `A` is
   empty (after a warm-up of 100 into B, not counted); then `A` paused
   holding 10,000 due tasks and the same 1,000 into `B` again: B's drain
   times (first enqueue to last call) and their ratio. `A` must get no call
   while paused; then it is resumed and its drain timed.

Every part counts lost tasks (enqueued, never answered 200) and duplicates
(200 answers beyond a task's first).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import sys
import time
from collections.abc import Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import cluster, metrics, report
from .cluster import Run, started_nodes
from .httpraw import Connection, fetch, request_bytes, status_of
from .loadgen import Target
from .processes import Ntorque
from .receiver import Record, Span
from .schedule import receiver_call, wait_for_calls

BATCH = 1000  # the most items POST /tasks takes at once
A_BASE = 1_000_000  # queue A's tasks are numbered from here (B's from 0)

MAX_CONCURRENCY = 5
HOOK_MS = 50.0
RATE_PER_S = 20.0
BURST = 5
WINDOW_S = 1.0
SUSTAINED = 0.9  # the quiet windows' target: this share of the rate
HEAD_OF_LINE_RATIO = 1.15  # B's drain behind a paused A, at most this times the empty run's

DEADLINE_S = 30.0  # each wait: this long past the time the part should take


# -- talking to ntorque and the receiver ---------------------------------------------


async def api(node: Ntorque, method: str, path: str, data: Any = None) -> tuple[int, Any]:
    """One authenticated API request on a connection of its own: status, JSON."""
    headers = Target.ntorque(node.port, node.key, "").headers
    body = b"" if data is None else json.dumps(data).encode()
    connection = await Connection.open(node.port)
    try:
        answer = await connection.send(request_bytes(method, path, headers, body))
    finally:
        connection.close()
    return status_of(answer), json.loads(answer.body) if answer.body else None


async def ask(node: Ntorque, method: str, path: str, data: Any = None) -> Any:
    """An API request that must answer 200."""
    code, answer = await api(node, method, path, data)
    if code != 200:
        raise RuntimeError(f"{method} {path} answered {code}: {answer}")
    return answer


async def reset(port: int) -> None:
    await fetch(port, "POST", "/_reset", b'{"fail_every": 0, "fail_attempts": 0}')


async def records_of(port: int) -> list[Record]:
    rows = (await receiver_call(port, "GET", "/_records"))["records"]
    return [(int(n), int(i), int(r), s, a, int(c)) for n, i, r, s, a, c in rows]


async def spans_of(port: int) -> list[Span]:
    return [(int(n), a, b) for n, a, b in (await receiver_call(port, "GET", "/_spans"))["spans"]]


@dataclass
class Enqueued:
    accepted: list[int] = field(default_factory=list)  # n of every task answered 201
    refused: dict[int, int] = field(default_factory=dict)  # status code -> tasks
    first_s: float = 0.0  # wall time of the first POST
    last_s: float = 0.0  # wall time of the last answer


async def enqueue(nodes: Sequence[Ntorque], hook: str, queue: str, numbers: range) -> Enqueued:
    """Tasks numbered `numbers` into `queue`, n through nodes[n % K], by
    batches of up to BATCH items; the nodes are sent to at once."""
    done = Enqueued(first_s=time.time())

    async def through(node: Ntorque, share: Sequence[int]) -> None:
        headers = Target.ntorque(node.port, node.key, hook).headers
        connection = await Connection.open(node.port)
        try:
            for start in range(0, len(share), BATCH):
                part = share[start : start + BATCH]
                sent = time.time()
                items = [{"url": hook, "queue": queue, "content_type": "application/json",
                          "body": json.dumps({"t": sent, "n": n})} for n in part]  # fmt: skip
                raw = request_bytes("POST", "/tasks", headers, json.dumps(items).encode())
                code = status_of(await connection.send(raw))
                if code == 201:
                    done.accepted += part
                else:
                    done.refused[code] = done.refused.get(code, 0) + len(part)
        finally:
            connection.close()

    shares = [numbers[index :: len(nodes)] for index in range(len(nodes))]
    await asyncio.gather(*(through(node, share) for node, share in zip(nodes, shares, strict=True)))
    done.last_s = time.time()
    return done


async def drained(port: int, expected: int, should_take_s: float) -> None:
    """Wait until the hook answered 200 for `expected` tasks since the last reset."""
    await wait_for_calls(port, expected, time.time() + should_take_s + DEADLINE_S)


# -- figures ------------------------------------------------------------------------


def counted(accepted: Collection[int], records: Sequence[Record]) -> dict[str, int]:
    """Lost and duplicated among these tasks; their hook calls."""
    mine = set(accepted)
    calls = {n: made for n, made in metrics.calls_by_task(records).items() if n in mine}
    answered = {n for n, made in calls.items() if any(call[5] == 200 for call in made)}
    return {
        "tasks": len(mine),
        "hook_calls": sum(len(made) for made in calls.values()),
        "lost": len(mine - answered),
        "duplicates": sum(max(0, sum(c[5] == 200 for c in made) - 1) for made in calls.values()),
    }


def last_ok(accepted: Collection[int], records: Sequence[Record]) -> float | None:
    mine = set(accepted)
    return max((r[4] for r in records if r[0] in mine and r[5] == 200), default=None)


def most_at_once(spans: Sequence[Span]) -> int:
    """The most spans open at one time (an answer at t closes before an arrival at t)."""
    events = sorted([(arrived, 1) for _, arrived, _ in spans] +
                    [(answered, -1) for _, _, answered in spans])  # fmt: skip
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def refill_ms(spans: Sequence[Span], limit: int) -> dict[str, float]:
    """How long a slot stays empty: from the k-th answer to the (k + limit)-th
    arrival, the call that takes its place (it cannot come sooner while at
    most `limit` calls are in flight). It adds up the settle, the wake-up and
    the next call's way to the hook."""
    arrivals = sorted(span[1] for span in spans)
    answers = sorted(span[2] for span in spans)
    gaps = [(arrivals[k + limit] - answers[k]) * 1000 for k in range(len(arrivals) - limit)]
    return {f"p{p}": round(metrics.percentile(gaps, p), 1) for p in (50, 99, 100)}


def windows(arrivals: Sequence[float], width_s: float = WINDOW_S) -> dict[str, Any]:
    """Calls per window [t, t + width) with t at each arrival: the busiest;
    the quietest of those starting width_s or more after the first arrival
    and ending before the last (None when the run is too short for one)."""
    ordered = sorted(arrivals)
    if not ordered:
        return {"busiest": None, "quietest": None, "quiet_windows": 0}
    counts = [bisect.bisect_left(ordered, t + width_s) - i for i, t in enumerate(ordered)]
    first, last = ordered[0], ordered[-1]
    quiet = [c for t, c in zip(ordered, counts, strict=True)
             if t >= first + width_s and t + width_s <= last]  # fmt: skip
    return {"busiest": max(counts), "quietest": min(quiet, default=None),
            "quiet_windows": len(quiet)}  # fmt: skip


# -- the three parts ------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    backlog: int  # part 1
    rate_backlog: int  # part 2
    paused: int  # part 3: A's tasks
    unlimited: int  # part 3: B's tasks


async def concurrency(nodes: list[Ntorque], port: int, tasks: int) -> dict[str, Any]:
    await reset(port)
    await ask(nodes[0], "PUT", "/queues/conc", {"max_concurrency": MAX_CONCURRENCY})
    hook = f"http://127.0.0.1:{port}/hook/conc?sleep_ms={HOOK_MS:g}"
    ideal_s = tasks * HOOK_MS / 1000 / MAX_CONCURRENCY
    done = await enqueue(nodes, hook, "conc", range(tasks))
    await drained(port, len(done.accepted), ideal_s * 2)
    stats = await receiver_call(port, "GET", "/_stats")
    records, spans = await records_of(port), await spans_of(port)
    end = max((span[2] for span in spans), default=done.last_s)
    drain_s = end - done.first_s
    busy_s = sum(answered - arrived for _, arrived, answered in spans)
    return {
        "max_concurrency": MAX_CONCURRENCY,
        "hook_ms": HOOK_MS,
        "max_in_flight": stats["max_in_flight"],
        "max_in_flight_from_spans": most_at_once(spans),
        "mean_in_flight": round(busy_s / max(drain_s, 1e-9), 2),
        "drain_s": round(drain_s, 3),
        "ideal_drain_s": round(ideal_s, 3),
        "enqueue_s": round(done.last_s - done.first_s, 3),
        "refill_ms": refill_ms(spans, MAX_CONCURRENCY),
        "refused": done.refused,
        **counted(done.accepted, records),
    }


async def rate(nodes: list[Ntorque], port: int, tasks: int) -> dict[str, Any]:
    await reset(port)
    await ask(nodes[0], "PUT", "/queues/rate", {"rate_per_s": RATE_PER_S, "burst": BURST})
    hook = f"http://127.0.0.1:{port}/hook/rate"
    done = await enqueue(nodes, hook, "rate", range(tasks))
    await drained(port, len(done.accepted), max(0, tasks - BURST) / RATE_PER_S)
    records = await records_of(port)
    arrivals = sorted(record[4] for record in records)
    span_s = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    return {
        "rate_per_s": RATE_PER_S,
        "burst": BURST,
        "window_s": WINDOW_S,
        **windows(arrivals),
        "mean_per_s_after_burst": round((len(arrivals) - BURST) / span_s, 2) if span_s else None,
        "drain_s": round((arrivals[-1] if arrivals else done.last_s) - done.first_s, 3),
        "ideal_drain_s": round(max(0, tasks - BURST) / RATE_PER_S, 3),
        "refused": done.refused,
        **counted(done.accepted, records),
    }


async def b_drain(nodes: list[Ntorque], port: int, tasks: int) -> dict[str, Any]:
    """`tasks` into queue B, after a reset of the receiver; until all are answered."""
    await reset(port)
    done = await enqueue(nodes, f"http://127.0.0.1:{port}/hook/B", "B", range(tasks))
    await drained(port, len(done.accepted), tasks / 100)
    records = await records_of(port)
    end = last_ok(done.accepted, records)
    return {
        "drain_s": None if end is None else round(end - done.first_s, 3),
        "enqueue_s": round(done.last_s - done.first_s, 3),
        "refused": done.refused,
        **counted(done.accepted, records),
    }


async def head_of_line(nodes: list[Ntorque], port: int, sizes: Sizes) -> dict[str, Any]:
    warm_up = await b_drain(nodes, port, max(1, sizes.unlimited // 10))  # B's row, first calls
    alone = await b_drain(nodes, port, sizes.unlimited)
    await ask(nodes[0], "POST", "/queues/A/pause")
    a_range = range(A_BASE, A_BASE + sizes.paused)
    held = await enqueue(nodes, f"http://127.0.0.1:{port}/hook/A", "A", a_range)
    a_before = (await ask(nodes[0], "GET", "/queues/A"))["figures"]
    behind = await b_drain(nodes, port, sizes.unlimited)  # resets: A's calls would count
    await asyncio.sleep(0.5)  # a stray call of A would show by now
    resumed = time.time()
    calls_paused = sum(r[0] >= A_BASE and r[4] < resumed for r in await records_of(port))
    await ask(nodes[0], "POST", "/queues/A/resume")
    await drained(port, sizes.unlimited + len(held.accepted), sizes.paused / 100)
    records = await records_of(port)
    a_end = last_ok(held.accepted, records)
    a_drain = None if a_end is None else round(a_end - resumed, 3)
    ratio = behind["drain_s"] / alone["drain_s"] if behind["drain_s"] and alone["drain_s"] else None
    return {
        "b_tasks": sizes.unlimited,
        "b_warm_up": warm_up,
        "a_tasks": len(held.accepted),
        "b_alone": alone,
        "b_behind_paused_a": behind,
        "ratio": None if ratio is None else round(ratio, 3),
        "a_figures_while_paused": a_before,
        "a_calls_while_paused": calls_paused,
        "a_drain_after_resume_s": a_drain,
        "a_per_s": round(len(held.accepted) / a_drain, 1) if a_drain else None,
        "a_enqueue_s": round(held.last_s - held.first_s, 3),
        "a_refused": held.refused,
        "a": counted(held.accepted, records),
    }


async def measure(run: Run, sizes: Sizes) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": run.backend, "nodes": run.nodes}
    async with started_nodes(run, "queues") as nodes:
        port = run.receiver_port
        result["concurrency"] = await timed("concurrency", concurrency(nodes, port, sizes.backlog))
        result["rate"] = await timed("rate", rate(nodes, port, sizes.rate_backlog))
        result["head_of_line"] = await timed("head of line", head_of_line(nodes, port, sizes))
    return result


async def timed(name: str, part: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    print(f"bench: queues {name} ...", flush=True, file=sys.stderr)
    started = time.monotonic()
    figures = await part
    took = round(time.monotonic() - started, 1)
    print(f"bench: queues {name} done in {took} s", flush=True, file=sys.stderr)
    return {**figures, "part_s": took}


# -- what is printed ----------------------------------------------------------------------


def lines(result: dict[str, Any]) -> list[str]:
    c, r, h = result["concurrency"], result["rate"], result["head_of_line"]
    refill = c["refill_ms"]
    alone, behind = h["b_alone"], h["b_behind_paused_a"]
    return [
        f"queues  {result['backend']}, {_nodes(result['nodes'])}",
        f"concurrency   max in flight at the receiver: {c['max_in_flight']} (limit "
        f"{c['max_concurrency']}; from the spans: {c['max_in_flight_from_spans']})",
        f"concurrency   drain of {c['tasks']} tasks ({c['hook_ms']:g} ms hook): {c['drain_s']} s "
        f"({c['ideal_drain_s']} s at the limit all along; mean in flight {c['mean_in_flight']})",
        f"concurrency   refill, answer to the next call in its slot: p50 {refill['p50']} ms, "
        f"p99 {refill['p99']} ms, max {refill['p100']} ms",
        f"concurrency   {_counts(c)}",
        f"rate          busiest {r['window_s']:g} s window: {r['busiest']} calls "
        f"({r['rate_per_s']:g}/s, burst {r['burst']})",
        f"rate          quietest window after the first, backlog waiting: {r['quietest']} calls "
        f"({r['quiet_windows']} windows)",
        f"rate          drain of {r['tasks']} tasks: {r['drain_s']} s ({r['ideal_drain_s']} s "
        f"at the rate); {r['mean_per_s_after_burst']} calls/s after the burst",
        f"rate          {_counts(r)}",
        f"head of line  B, {h['b_tasks']} tasks, A empty: drain {alone['drain_s']} s",
        f"head of line  B, {h['b_tasks']} tasks, A paused holding {h['a_tasks']} due "
        f"(due now {h['a_figures_while_paused'].get('due_now')}): drain {behind['drain_s']} s "
        f"(x{h['ratio']})",
        f"head of line  A: {h['a_calls_while_paused']} calls while paused; drained "
        f"{h['a_tasks']} in {h['a_drain_after_resume_s']} s after resume ({h['a_per_s']}/s)",
        f"head of line  B alone {_counts(alone)}; B behind A {_counts(behind)}; "
        f"A {_counts({**h['a'], 'refused': h['a_refused']})}",
    ]


def _nodes(count: int) -> str:
    return "1 node" if count == 1 else f"{count} nodes"


def _counts(figures: dict[str, Any]) -> str:
    refused = sum(figures["refused"].values())
    return f"lost {figures['lost']}, duplicates {figures['duplicates']}, refused {refused}"


def _all_counts(result: dict[str, Any]) -> list[dict[str, Any]]:
    h = result["head_of_line"]
    return [result["concurrency"], result["rate"], h["b_warm_up"], h["b_alone"],
            h["b_behind_paused_a"], {**h["a"], "refused": h["a_refused"]}]  # fmt: skip


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what was measured, and whether it is met."""
    c, r, h = result["concurrency"], result["rate"], result["head_of_line"]
    most = r["rate_per_s"] * r["window_s"] + r["burst"]
    least = SUSTAINED * r["rate_per_s"] * r["window_s"]
    counts = _all_counts(result)
    lost = sum(f["lost"] for f in counts) + sum(sum(f["refused"].values()) for f in counts)
    duplicates = sum(f["duplicates"] for f in counts)

    def check(name: str, measured: Any, ok: bool) -> dict[str, Any]:
        return {"target": name, "measured": measured, "ok": ok}

    return [
        check(f"concurrency: max in flight <= {c['max_concurrency']}", c["max_in_flight"],
              max(c["max_in_flight"], c["max_in_flight_from_spans"]) <= c["max_concurrency"]),
        check(f"rate: no {r['window_s']:g} s window above {most:g}", r["busiest"],
              r["busiest"] is not None and r["busiest"] <= most),
        check(f"rate: quietest window after the first >= {least:g}", r["quietest"],
              r["quietest"] is not None and r["quietest"] >= least),
        check(f"head of line: B behind a paused A within {HEAD_OF_LINE_RATIO - 1:.0%} of B "
              "alone", h["ratio"], h["ratio"] is not None and h["ratio"] <= HEAD_OF_LINE_RATIO),
        check("paused: A had 0 calls while paused", h["a_calls_while_paused"],
              h["a_calls_while_paused"] == 0),
        check("every task called, once (lost + refused, duplicates)", [lost, duplicates],
              lost == 0 and duplicates == 0),
    ]  # fmt: skip


def failed(result: dict[str, Any], checked: list[dict[str, Any]]) -> bool:
    """Broken guarantees, not missed speed: a limit or a pause not held, a task lost."""
    hard = (checked[0], checked[4], checked[5])
    return not all(check["ok"] for check in hard)


def targets_text(checked: list[dict[str, Any]]) -> str:
    return "\n".join(f"{'PASS' if c['ok'] else 'FAIL'}  {c['target']}: {c['measured']}"
                     for c in checked)  # fmt: skip


# -- the command ------------------------------------------------------------------------


def options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench queues",
                                     description=__doc__.split("\n\n")[1])  # fmt: skip
    parser.add_argument("--backlog", type=int, default=500, help="part 1's tasks (500)")
    parser.add_argument("--rate-backlog", type=int, default=200, help="part 2's tasks (200)")
    parser.add_argument("--paused", type=int, default=10_000, help="part 3: A's tasks (10,000)")
    parser.add_argument("--unlimited", type=int, default=1000, help="part 3: B's tasks (1,000)")
    cluster.add_options(parser, "queues")
    parsed = parser.parse_args(argv)
    sizes = (parsed.nodes, parsed.backlog, parsed.rate_backlog, parsed.paused, parsed.unlimited)
    if min(sizes) < 1:
        parser.error("--nodes and the task counts must be at least 1")
    return cluster.settle_options(parsed, "queues")


def main(argv: list[str]) -> int:
    args = options(argv)
    if cluster.services_missing(args):
        return 2
    sizes = Sizes(args.backlog, args.rate_backlog, args.paused, args.unlimited)
    document: dict[str, Any] = {**report.machine(), "options": {
        "backend": args.backend, "nodes": args.nodes, **vars(sizes)}}  # fmt: skip
    result = cluster.run(args, lambda run: measure(run, sizes))
    checked = targets(result)
    document.update(queues=result, targets=checked)
    report.write(args.json, document)
    print("\n".join(lines(result)))
    print(targets_text(checked))
    print(f"written to {args.json}")
    return 1 if failed(result, checked) else 0
