"""python -m bench [--tasks N] [--only a,b] [--database-url URL] [--redis-url URL] [--json PATH]
python -m bench --peers ...     (issue 15: ntorque against arq, Celery, procrastinate; bench/peers/)
python -m bench schedule ...    (issue 12: delayed tasks on time; bench/schedule.py)
python -m bench listing ...     (issue 12: every listing filter uses an index; bench/listing.py)
python -m bench queues ...      (issue 13: named queues' limits and pauses; bench/queues.py)
python -m bench schedules ...   (issue 14: recurring schedules' ticks, once each; bench/ticks.py)

Runs the scenarios of issue 5 against ntorque as a subprocess over HTTP,
prints one table and the targets, writes everything to a JSON file. Exits 1
when a scenario failed to run or lost a task; missed targets are reported,
not failures (timings depend on the machine and on what else runs on it).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from . import listing, postgres, queues, report, schedule, ticks
from .peers import command as peers_command
from .processes import start_receiver
from .scenarios import POSTGRES_SCENARIOS, SCENARIOS, Bench

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
COMMANDS = {
    "schedule": schedule.main,
    "listing": listing.main,
    "queues": queues.main,
    "schedules": ticks.main,
}  # each parses the rest of the command line


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "--tasks",
        type=int,
        default=5000,
        help="burst size N; paced runs 0.6 N, memory 20 N (default 5000)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios among {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--prefill-rows",
        type=int,
        default=0,
        help="finished tasks in the prefilled table (default 200 N: 1,000,000)",
    )
    parser.add_argument("--clients", type=int, default=50, help="concurrent connections")
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL admin url; the bench creates and drops its own databases",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="Redis; each scenario uses a list name of its own",
    )
    parser.add_argument("--json", type=Path, help=f"where to write results (default {DEFAULT_JSON}"
                        ", with --peers bench/results/peers.json)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--peers", action="store_true",
                        help="ntorque against arq, Celery and procrastinate (pip install -e "
                        "'.[bench]'); --only and --prefill-rows do not apply")  # fmt: skip
    parsed = parser.parse_args(argv)
    parsed.only = [name.strip() for name in parsed.only.split(",") if name.strip()]
    unknown = [name for name in parsed.only if name not in SCENARIOS]
    if unknown or parsed.tasks < 1:
        parser.error(f"unknown scenario {unknown}" if unknown else "--tasks must be at least 1")
    parsed.prefill_rows = parsed.prefill_rows or 200 * parsed.tasks
    return parsed


async def check_services(args: argparse.Namespace) -> None:
    """Fail at once, and clearly, when PostgreSQL or Redis is missing."""
    if any(name in POSTGRES_SCENARIOS for name in args.only):
        await postgres.ping_services(args.database_url, args.redis_url)


async def run(bench: Bench, only: list[str]) -> None:
    for name in SCENARIOS:
        if name not in only:
            continue
        print(f"bench: {name} ...", flush=True, file=sys.stderr)
        started = time.monotonic()
        try:
            bench.results[name] = await SCENARIOS[name](bench)
        except Exception as error:  # one broken scenario must not hide the others' figures
            traceback.print_exc()
            bench.results[name] = {"error": f"{type(error).__name__}: {error}"}
        took = time.monotonic() - started
        print(f"bench: {name} done in {took:.1f} s", flush=True, file=sys.stderr)


def failed(results: dict[str, Any]) -> bool:
    parts = [results["prefill"].get("burst", {}), results["prefill"].get("paced", {})] if (
        "prefill" in results) else []  # fmt: skip
    figures = [*results.values(), *parts]
    return any("error" in f or f.get("lost", 0) > 0 for f in figures)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    args = options(argv)
    if args.peers:
        options_used = {"tasks": args.tasks, "clients": args.clients, "peers": True}
        return peers_command.main(args, {**report.machine(), "options": options_used})
    args.json = args.json or DEFAULT_JSON
    document: dict[str, Any] = {**report.machine(), "options": {
        "tasks": args.tasks, "only": args.only, "prefill_rows": args.prefill_rows,
        "clients": args.clients}}  # fmt: skip
    try:
        asyncio.run(check_services(args))
    except Exception as error:  # asyncpg's, redis's or the network's: all mean "missing"
        print(f"bench: PostgreSQL or Redis is not reachable: {error}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ntorque-bench-"))
    receiver, port = start_receiver(workdir)
    bench = Bench(workdir, port, args.database_url, args.redis_url, args.tasks,
                  args.prefill_rows, args.clients, receiver.pid)  # fmt: skip
    try:
        asyncio.run(run(bench, args.only))
    finally:
        receiver.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return finish(args, document, bench)


def finish(args: argparse.Namespace, document: dict[str, Any], bench: Bench) -> int:
    checked = report.targets(bench.results, args.tasks)
    document.update(scenarios=bench.results, targets=checked, explain=bench.explain)
    report.write(args.json, document)
    print(report.table(bench.results))
    print("\nTargets (issue 5):\n" + report.targets_text(checked))
    for name, plan in bench.explain.items():
        print(f"\nEXPLAIN {name} ({args.prefill_rows:,} prefilled rows):\n{plan}")
    print(f"\nwritten to {args.json}")
    return 1 if failed(bench.results) else 0


if __name__ == "__main__":
    sys.exit(main())
