"""The figures of `python -m bench --peers`: the table (one row per system),
issue 15's targets and the exit status. Pure: no process, no I/O."""

from __future__ import annotations

from typing import Any

from ..report import align, check, get_in, number

PHASES = ("burst", "paced", "slow")  # as many tasks, at 200/s, at 20/s
COLUMNS = ("system", "burst/s", "ntorque x", "200/s p50 ms", "p99 ms", "cpu ms/task: burst",
           "200/s", "20/s", "lost", "dup", "durable", "note")  # fmt: skip
NOTES = """\
burst/s: N tasks / (the last 200 at the receiver - the first enqueue);
  ntorque x: ntorque's burst/s / the row's.
p50, p99: the 200/s phase; a task's first call at the receiver - the time in
  its body, taken just before enqueueing.
cpu ms/task: the system's own processes only (ntorque's; the peer's worker
  processes, Celery's pool children included), from their CPU clocks: not
  PostgreSQL's or Redis's, nor the producers' in the bench's process.
lost, dup: over the three phases. durable: tasks kept in PostgreSQL outlive
  a restart of everything; arq's and Celery's live in Redis's memory (a Redis
  without persistence, as here)."""


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def counted(system: dict[str, Any], key: str) -> int | None:
    """lost or duplicates, over the phases that ran."""
    values = [system[phase][key] for phase in PHASES if phase in system]
    return sum(values) if values else None


def durable(system: dict[str, Any]) -> str:
    return f"{'yes' if system.get('durable') else 'no'}, {system.get('store', '?')}"


def row(name: str, system: dict[str, Any], ntorque_per_s: float | None) -> list[str]:
    if "error" in system:
        blank = ["-"] * (len(COLUMNS) - 3)
        return [name, *blank, durable(system), "ERROR: " + system["error"].splitlines()[0][:70]]
    drain = get_in(system, "burst", "end_to_end_per_s")
    paced = get_in(system, "paced", "latency_ms") or {}
    versus = None if name == "ntorque" else ratio(ntorque_per_s, drain)
    cpu = [number(get_in(system, phase, "cpu_s_per_1k"), 2) for phase in PHASES]
    return [name, number(drain), number(versus, 2), number(paced.get("p50"), 1),
            number(paced.get("p99"), 1), *cpu, number(counted(system, "lost")),
            number(counted(system, "duplicates")), durable(system), ""]  # fmt: skip


def table(systems: dict[str, dict[str, Any]]) -> str:
    ntorque_per_s = get_in(systems, "ntorque", "burst", "end_to_end_per_s")
    lines = [row(name, system, ntorque_per_s) for name, system in systems.items()]
    return align([list(COLUMNS), *lines])


def best_peer(systems: dict[str, dict[str, Any]]) -> tuple[str, float] | None:
    """The peer with the fastest burst drain, among those that ran."""
    drains = [(get_in(system, "burst", "end_to_end_per_s"), name)
              for name, system in systems.items() if name != "ntorque"]  # fmt: skip
    measured = [(drain, name) for drain, name in drains if drain]
    if not measured:
        return None
    drain, name = max(measured)
    return name, drain


def targets(
    systems: dict[str, dict[str, Any]], alone: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Issue 15's targets: what was measured, and whether it is met (None: not measured)."""
    ntorque = systems.get("ntorque", {})
    drain = get_in(ntorque, "burst", "end_to_end_per_s")
    best = best_peer(systems)
    over = ratio(drain, best[1]) if best else None
    enqueue = get_in(ntorque, "burst", "enqueue_per_s")
    cpu = {phase: get_in(ntorque, phase, "cpu_s_per_1k") for phase in PHASES}
    paced = get_in(ntorque, "paced", "latency_ms")
    sqlite = get_in(alone, "sqlite", "end_to_end_per_s")
    two_per_s = get_in(alone, "two_processes", "two", "end_to_end_per_s")
    one_per_s = get_in(alone, "two_processes", "one", "end_to_end_per_s")
    two = ratio(two_per_s, one_per_s)
    idle = get_in(alone, "idle", "cpu_ms_per_s")
    return [
        check("burst drain, PostgreSQL + Redis: at least 1.5x the best peer",
              over and best and {"ntorque_per_s": drain, "best_peer": best[0],
                                 "best_peer_per_s": best[1], "ratio": over},
              lambda: over is not None and over >= 1.5),
        check("enqueue over HTTP, auth on: at least 2,500/s", enqueue, lambda: enqueue >= 2500),
        check("CPU per task: at most 1.0 ms in a burst, 1.5 ms at 200/s, 2.5 ms at 20/s",
              None if None in cpu.values() else {f"{p}_ms": v for p, v in cpu.items()},
              lambda: cpu["burst"] <= 1.0 and cpu["paced"] <= 1.5 and cpu["slow"] <= 2.5),
        check("paced 200/s latency: p50 at most 5 ms, p99 at most 15 ms",
              paced and {"p50_ms": paced["p50"], "p99_ms": paced["p99"]},
              lambda: paced["p50"] <= 5 and paced["p99"] <= 15),
        check("embedded SQLite burst: at least 600/s", sqlite, lambda: sqlite >= 600),
        check("two processes against one: burst drain at least 1.3x",
              two and {"two_per_s": two_per_s, "one_per_s": one_per_s, "ratio": two},
              lambda: two is not None and two >= 1.3),
        check("idle CPU: under 1 ms per second", idle, lambda: idle < 1.0),
    ]  # fmt: skip


def failed(systems: dict[str, dict[str, Any]], alone: dict[str, dict[str, Any]]) -> bool:
    """A system or run that could not run, or a task lost anywhere."""
    pair = alone.get("two_processes", {})
    bursts = [pair[count] for count in ("one", "two") if count in pair]
    runs = [*systems.values(), *alone.values()]
    lost = [counted(system, "lost") for system in systems.values()]
    lost += [figures.get("lost") for figures in [*alone.values(), *bursts]]
    return any("error" in figures for figures in runs) or any(n for n in lost)
