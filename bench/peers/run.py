"""The runs of `python -m bench --peers`: every system (ntorque, then each
peer) started fresh, warmed up, then measured in three phases, one after
another on the same processes; then ntorque's own figures (two processes,
the embedded SQLite, idle). A system that fails shows its error and the
others run on."""

from __future__ import annotations

import asyncio
import functools
import importlib
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from .. import scenarios
from ..loadgen import Opener, Target
from ..processes import Child, Tree, Watched
from ..scenarios import PACED_RATE_PER_S, Bench, measure, paced_count, postgres_ntorque
from .common import PeerWorker

PEERS = ("arq_peer", "celery_peer", "procrastinate_peer")  # modules of this package
SLOW_RATE_PER_S, SLOW_MAX = 20.0, 300  # the 20/s phase: 0.06 N tasks, at most 300 (15 s)
IDLE_S, SETTLE_S = 30.0, 2.0  # idle CPU: measured over IDLE_S, after SETTLE_S of quiet
NTORQUE = {"durable": True, "store": "PostgreSQL"}


def slow_count(bench: Bench) -> int:
    return max(1, min(SLOW_MAX, round(bench.tasks * 0.06)))


def plan(bench: Bench) -> list[tuple[str, int, float]]:
    """(phase, tasks, rate per second; 0: a burst)."""
    return [("burst", bench.tasks, 0.0), ("paced", paced_count(bench), PACED_RATE_PER_S),
            ("slow", slow_count(bench), SLOW_RATE_PER_S)]  # fmt: skip


def alive(child: Child) -> None:
    if child.process.poll() is not None:
        raise RuntimeError(f"{child.output.stem} exited ({child.process.returncode}):\n"
                           f"{child.tail()}")  # fmt: skip


async def phases(
    bench: Bench, target: Target | Opener, system: Watched, child: Child
) -> dict[str, Any]:
    """A warm-up (not counted), then each phase of the plan."""
    warm, _ = await measure(bench, target, bench.warmup, system)
    alive(child)
    if warm["lost"]:
        raise RuntimeError(f"the warm-up lost {warm['lost']} of {warm['tasks']} tasks")
    figures: dict[str, Any] = {}
    for phase, count, rate in plan(bench):
        figures[phase], _ = await measure(bench, target, count, system, rate=rate)
        figures[phase]["rate_per_s"] = rate
        alive(child)
    return figures


async def ntorque(bench: Bench) -> dict[str, Any]:
    """ntorque on PostgreSQL + Redis, enqueued over HTTP with its API key."""
    async with postgres_ntorque(bench, "peers-ntorque") as (node, _):
        target = Target.ntorque(node.port, node.key, bench.hook_url)
        return await phases(bench, target, Tree(node.pid), node)


async def peer(bench: Bench, module: ModuleType) -> dict[str, Any]:
    """A peer's worker and producers (its module's `started`), through the phases."""
    async with module.started(bench) as (worker, opener):
        assert isinstance(worker, PeerWorker)
        return await phases(bench, opener, worker, worker)


async def guarded(name: str, run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Its figures, or its error: one broken system must not hide the others."""
    print(f"bench --peers: {name} ...", flush=True, file=sys.stderr)
    started = time.monotonic()
    try:
        result = await run()
    except Exception as error:
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"}
    print(f"bench --peers: {name} done in {time.monotonic() - started:.1f} s", flush=True,
          file=sys.stderr)  # fmt: skip
    return result


async def systems(bench: Bench) -> dict[str, dict[str, Any]]:
    """Each system's phases, with where it keeps its tasks."""
    found = {"ntorque": await guarded("ntorque", lambda: ntorque(bench)) | NTORQUE}
    for module_name in PEERS:
        module = importlib.import_module(f"{__package__}.{module_name}")
        kept = {"durable": module.DURABLE, "store": module.STORE}
        found[module.NAME] = (
            await guarded(module.NAME, functools.partial(peer, bench, module)) | kept
        )
    return found


async def burst_on(bench: Bench, name: str, processes: int) -> dict[str, Any]:
    """A warm-up and a burst on a fresh ntorque with NTORQUE_PROCESSES set."""
    extra = {"NTORQUE_PROCESSES": str(processes)}
    async with postgres_ntorque(bench, name, extra) as (node, _):
        target = Target.ntorque(node.port, node.key, bench.hook_url)
        tree = Tree(node.pid)
        await measure(bench, target, bench.warmup, tree)
        result, _ = await measure(bench, target, bench.tasks, tree)
        result["processes_seen"] = len(tree.pids())  # ntorque's own, once it starts some
    return result


async def two_processes(bench: Bench) -> dict[str, Any]:
    """The burst with NTORQUE_PROCESSES=2, right after the same with 1: a
    pair run minutes apart would also measure the machine's other work."""
    return {"one": await burst_on(bench, "peers-one", 1),
            "two": await burst_on(bench, "peers-two", 2)}  # fmt: skip


async def idle(bench: Bench) -> dict[str, Any]:
    """ntorque's CPU while nothing happens, after a warm-up and a pause."""
    async with postgres_ntorque(bench, "peers-idle") as (node, _):
        target = Target.ntorque(node.port, node.key, bench.hook_url)
        tree = Tree(node.pid)
        await measure(bench, target, bench.warmup, tree)
        await asyncio.sleep(SETTLE_S)
        before, started = tree.cpu_s(), time.monotonic()
        await asyncio.sleep(IDLE_S)
        cpu_s, seconds = tree.cpu_s() - before, time.monotonic() - started
    return {"seconds": round(seconds, 2), "cpu_ms": round(cpu_s * 1000, 2),
            "cpu_ms_per_s": round(cpu_s * 1000 / seconds, 3)}  # fmt: skip


async def ntorque_alone(bench: Bench) -> dict[str, dict[str, Any]]:
    return {
        "two_processes": await guarded("ntorque, 1 then 2 processes", lambda: two_processes(bench)),
        "sqlite": await guarded("ntorque, SQLite", lambda: scenarios.sqlite(bench)),
        "idle": await guarded("ntorque, idle", lambda: idle(bench)),
    }


async def everything(bench: Bench) -> tuple[dict[str, Any], dict[str, Any]]:
    return await systems(bench), await ntorque_alone(bench)
