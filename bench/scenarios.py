"""The scenarios. Each starts what it needs (a fresh database, a fresh ntorque
process), measures, stops it again, and returns its figures as a dict.

PostgreSQL scenarios each get a new database and a unique Redis list name;
every measured run is preceded by a small warm-up (not counted) so
connection pools and caches are filled as in a running service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import metrics, postgres
from .httpraw import fetch
from .loadgen import Opener, Sent, Target, drive, http_producer
from .processes import Ntorque, Watched, cpu_s
from .receiver import Record

PACED_RATE_PER_S = 200.0
RETRY_MIN_DELAY_S = 0.5  # NTORQUE_MIN_DUE_DELAY in the retry scenario: short, still measurable
RETRY_TOLERANCE_S = 0.05
FAIL_EVERY, FAIL_ATTEMPTS = 5, 2  # 20 % of the tasks answer 500 twice, then 200
STALL_S = 30.0  # give up waiting for the hook when no call arrived for this long


@dataclass
class Bench:
    workdir: Path
    receiver_port: int
    admin_url: str
    redis_url: str
    tasks: int
    prefill_rows: int
    clients: int = 50
    receiver_pid: int = 0
    results: dict[str, Any] = field(default_factory=dict)
    explain: dict[str, str] = field(default_factory=dict)

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}/hook"

    @property
    def warmup(self) -> int:
        return max(10, min(200, self.tasks // 25))


# -- the receiver --------------------------------------------------------------


async def control(bench: Bench, method: str, path: str, body: Any = None) -> Any:
    payload = json.dumps(body).encode() if body is not None else b""
    return json.loads((await fetch(bench.receiver_port, method, path, payload)).body)


def harness_cpu_s(bench: Bench) -> float:
    """CPU used by the load generator (this process) and the receiver."""
    return cpu_s(os.getpid()) + (cpu_s(bench.receiver_pid) if bench.receiver_pid else 0.0)


async def drain(bench: Bench, expected: int) -> None:
    """Wait until the hook answered 200 for `expected` tasks, or stalled."""
    seen, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < STALL_S:
        stats = await control(bench, "GET", "/_stats")
        if stats["ok"] >= expected:
            return
        if stats["calls"] != seen:
            seen, last_change = stats["calls"], time.monotonic()
        await asyncio.sleep(0.02)


async def measure(
    bench: Bench,
    target: Target | Opener,
    count: int,
    ntorque: Watched | None = None,
    rate: float = 0.0,
    fail: tuple[int, int] = (0, 0),
) -> tuple[dict[str, Any], list[Record]]:
    """Send count tasks, wait for the hook to see them all; figures and the calls.

    The target is ntorque's (or the receiver's) HTTP address, or a peer's own
    way of enqueueing; `ntorque` is whatever system's CPU and memory count."""
    await control(bench, "POST", "/_reset", {"fail_every": fail[0], "fail_attempts": fail[1]})
    cpu_before = ntorque.cpu_s() if ntorque else 0.0
    harness_before = harness_cpu_s(bench)
    opener = http_producer(target) if isinstance(target, Target) else target
    sent: Sent = await drive(opener, count, clients=bench.clients, rate=rate)
    await drain(bench, len(sent.accepted))
    rows = (await control(bench, "GET", "/_records"))["records"]
    records: list[Record] = [(int(n), int(i), int(r), s, a, int(c)) for n, i, r, s, a, c in rows]
    result = metrics.summarize(sent, records)
    harness = harness_cpu_s(bench) - harness_before
    result["harness_cpu_s_per_1k"] = round(harness / max(count, 1) * 1000, 3)
    if ntorque:
        cpu = ntorque.cpu_s() - cpu_before
        result["cpu_s_per_1k"] = round(cpu / max(count, 1) * 1000, 3)
        result["rss_mb"] = round(ntorque.rss_mb(), 1)
    return result, records


# -- ntorque under test ---------------------------------------------------------


@contextlib.asynccontextmanager
async def postgres_ntorque(
    bench: Bench, name: str, extra: dict[str, str] | None = None
) -> AsyncIterator[tuple[Ntorque, str]]:
    """ntorque on a fresh PostgreSQL database and its own Redis list."""
    url = await postgres.create(bench.admin_url)
    settings = {
        "DATABASE_URL": url,
        "REDIS_URL": bench.redis_url,
        "NTORQUE_REDIS_CHANNEL": f"ntorque-bench-{uuid.uuid4().hex[:10]}",
        **(extra or {}),
    }
    try:
        ntorque = Ntorque(bench.workdir / name, settings)
        try:
            yield ntorque, url
        finally:
            ntorque.stop()
    finally:
        await postgres.drop(bench.admin_url, url)


async def warm_and_measure(
    bench: Bench, ntorque: Ntorque, count: int, rate: float = 0.0
) -> dict[str, Any]:
    target = Target.ntorque(ntorque.port, ntorque.key, bench.hook_url)
    await measure(bench, target, bench.warmup, ntorque)
    result, _ = await measure(bench, target, count, ntorque, rate=rate)
    return result


def paced_count(bench: Bench) -> int:
    return max(1, round(bench.tasks * 0.6))


# -- the scenarios --------------------------------------------------------------


async def ceiling(bench: Bench) -> dict[str, Any]:
    """The burst load sent straight to the receiver: what the harness itself can do."""
    target = Target.receiver(bench.receiver_port)
    await measure(bench, target, bench.warmup)
    result, _ = await measure(bench, target, bench.tasks)
    return result


async def burst(bench: Bench) -> dict[str, Any]:
    async with postgres_ntorque(bench, "burst") as (ntorque, _):
        result = await warm_and_measure(bench, ntorque, bench.tasks)
    ceiling = bench.results.get("ceiling", {}).get("end_to_end_per_s")
    if ceiling:
        result["fraction_of_ceiling"] = round(result["end_to_end_per_s"] / ceiling, 3)
    return result


async def paced(bench: Bench) -> dict[str, Any]:
    async with postgres_ntorque(bench, "paced") as (ntorque, _):
        result = await warm_and_measure(bench, ntorque, paced_count(bench), PACED_RATE_PER_S)
    result["rate_per_s"] = PACED_RATE_PER_S
    return result


async def retries(bench: Bench) -> dict[str, Any]:
    """A burst where 20 % of the tasks answer 500 twice: all complete, on schedule."""
    extra = {"NTORQUE_MIN_DUE_DELAY": str(RETRY_MIN_DELAY_S)}
    async with postgres_ntorque(bench, "retries", extra) as (ntorque, _):
        target = Target.ntorque(ntorque.port, ntorque.key, bench.hook_url)
        await measure(bench, target, bench.warmup, ntorque)
        result, records = await measure(
            bench, target, bench.tasks, ntorque, fail=(FAIL_EVERY, FAIL_ATTEMPTS)
        )
    schedule = metrics.retry_schedule(records, RETRY_MIN_DELAY_S, 7200.0, RETRY_TOLERANCE_S)
    result["retry_schedule"] = schedule
    result["min_due_delay_s"] = RETRY_MIN_DELAY_S
    result["failing"] = f"every task with n % {FAIL_EVERY} == 0 answers 500 {FAIL_ATTEMPTS}x"
    return result


RELATIVE = ("enqueue_per_s", "end_to_end_per_s", "cpu_s_per_1k")


def relative(figures: dict[str, Any], empty: dict[str, Any] | None) -> dict[str, float]:
    """Each figure of the prefilled run divided by the same figure of the empty run."""
    if not empty or "error" in empty:
        return {}
    pairs = [(key, figures[key], empty[key]) for key in RELATIVE]
    pairs += [(f"latency_{p}", figures["latency_ms"][p], empty["latency_ms"][p]) for p in
              ("p50", "p95", "p99")]  # fmt: skip
    return {key: round(new / old, 3) for key, new, old in pairs if old}


async def prefill(bench: Bench) -> dict[str, Any]:
    """Burst and paced again, on a table already holding finished tasks; EXPLAIN."""
    async with postgres_ntorque(bench, "prefill") as (ntorque, url):
        seconds = await postgres.prefill(url, bench.prefill_rows)
        burst = await warm_and_measure(bench, ntorque, bench.tasks)
        paced = await warm_and_measure(bench, ntorque, paced_count(bench), PACED_RATE_PER_S)
        bench.explain = await postgres.explain(url)
    burst["vs_empty"] = relative(burst, bench.results.get("burst"))
    paced["vs_empty"] = relative(paced, bench.results.get("paced"))
    return {"rows": bench.prefill_rows, "prefill_s": round(seconds, 1), "burst": burst,
            "paced": paced}  # fmt: skip


async def sample_rss(ntorque: Ntorque, samples: list[tuple[float, float]]) -> None:
    started = time.monotonic()
    while True:
        samples.append((round(time.monotonic() - started, 2), round(ntorque.rss_mb(), 1)))
        await asyncio.sleep(0.5)


async def memory(bench: Bench) -> dict[str, Any]:
    """20 bursts of `tasks`: RSS sampled all along, and after each burst."""
    rounds, after = 20, []
    samples: list[tuple[float, float]] = []
    runs: list[dict[str, Any]] = []
    async with postgres_ntorque(bench, "memory") as (ntorque, _):
        target = Target.ntorque(ntorque.port, ntorque.key, bench.hook_url)
        sampler = asyncio.ensure_future(sample_rss(ntorque, samples))
        try:
            for _ in range(rounds):
                runs.append((await measure(bench, target, bench.tasks, ntorque))[0])
                after.append(round(ntorque.rss_mb(), 1))
        finally:
            sampler.cancel()
    return memory_figures(runs, after, samples)


def memory_figures(
    runs: list[dict[str, Any]], after: list[float], samples: list[tuple[float, float]]
) -> dict[str, Any]:
    half = after[len(after) // 2 - 1] if len(after) > 1 else after[0]
    growth = after[-1] - half
    tasks = sum(run["tasks"] for run in runs)
    return {
        "tasks": tasks,
        "lost": sum(run["lost"] for run in runs),
        "duplicates": sum(run["duplicates"] for run in runs),
        "end_to_end_per_s": round(tasks / sum(run["seconds"] for run in runs), 1),
        "enqueue_per_s": round(sum(r["enqueue_per_s"] for r in runs) / len(runs), 1),
        "cpu_s_per_1k": round(sum(r["cpu_s_per_1k"] for r in runs) / len(runs), 3),
        "latency_ms": runs[-1]["latency_ms"],
        "rss_mb": after[-1],
        "rss_after_each_round_mb": after,
        "rss_growth_last_half_mb": round(growth, 1),
        "flat": growth <= 0.05 * after[-1],
        "rss_samples": samples,
    }


async def sqlite(bench: Bench) -> dict[str, Any]:
    """The embedded default: no DATABASE_URL nor REDIS_URL, a fresh directory."""
    ntorque = Ntorque(bench.workdir / "sqlite", {})
    try:
        return await warm_and_measure(bench, ntorque, bench.tasks)
    finally:
        ntorque.stop()


Scenario = Callable[[Bench], Awaitable[dict[str, Any]]]
SCENARIOS: dict[str, Scenario] = {
    "ceiling": ceiling,
    "burst": burst,
    "paced": paced,
    "retries": retries,
    "prefill": prefill,
    "memory": memory,
    "sqlite": sqlite,
}
POSTGRES_SCENARIOS = ("burst", "paced", "retries", "prefill", "memory")
