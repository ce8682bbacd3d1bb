"""What the commands that run ntorque nodes around one receiver share
(`schedule`, `queues`, `schedules`): the nodes on one fresh database, the
common options, and the run around a measure (services checked, receiver
started, work directory removed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import postgres
from .processes import Ntorque, start_receiver

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Run:
    workdir: Path
    receiver_port: int
    backend: str
    nodes: int
    admin_url: str
    redis_url: str


Measure = Callable[[Run], Coroutine[Any, Any, dict[str, Any]]]


@contextlib.asynccontextmanager
async def started_nodes(run: Run, label: str = "schedule") -> AsyncIterator[list[Ntorque]]:
    """run.nodes ntorque processes on one fresh database (and one Redis list).
    They start one after another: the first migrates and prints the key.
    Their work directories are named after the label."""
    if run.backend == "sqlite":
        nodes = [Ntorque(run.workdir / f"{label}-sqlite", {})]
        try:
            yield nodes
        finally:
            nodes[0].stop()
        return
    url = await postgres.create(run.admin_url)
    settings = {"DATABASE_URL": url, "REDIS_URL": run.redis_url,
                "NTORQUE_REDIS_CHANNEL": f"ntorque-bench-{uuid.uuid4().hex[:10]}"}  # fmt: skip
    nodes = []
    try:
        for index in range(run.nodes):
            key = nodes[0].key if nodes else ""
            nodes.append(Ntorque(run.workdir / f"{label}-node{index}", settings, key))
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        await postgres.drop(run.admin_url, url)


async def reachable(args: argparse.Namespace) -> None:
    if args.backend != "sqlite":
        await postgres.ping_services(args.database_url, args.redis_url)


def add_options(parser: argparse.ArgumentParser, name: str) -> None:
    """--backend, --nodes, the services' urls, --json (results/<name>-<backend>.json), --keep."""
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--nodes", type=int, default=3, help="ntorque processes (SQLite: 1)")
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL admin url; the bench creates and drops its database",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--json", type=Path, help=f"where to write results (bench/results/{name}-<backend>.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")


def settle_options(parsed: argparse.Namespace, name: str) -> argparse.Namespace:
    """SQLite serves one node; the results file by default."""
    if parsed.backend == "sqlite":
        parsed.nodes = 1  # the embedded database serves one process
    parsed.json = parsed.json or RESULTS / f"{name}-{parsed.backend}.json"
    return parsed


def services_missing(args: argparse.Namespace) -> bool:
    """PostgreSQL or Redis is needed and unreachable (said on stderr)."""
    try:
        asyncio.run(reachable(args))
    except Exception as error:  # asyncpg's, redis's or the network's: all mean "missing"
        print(f"bench: PostgreSQL or Redis is not reachable: {error}", file=sys.stderr)
        return True
    return False


def run(args: argparse.Namespace, measure: Measure) -> dict[str, Any]:
    """measure's result, with the receiver in a work directory of its own."""
    workdir = Path(tempfile.mkdtemp(prefix="ntorque-bench-"))
    receiver, port = start_receiver(workdir)
    nodes = Run(workdir, port, args.backend, args.nodes, args.database_url, args.redis_url)
    try:
        return asyncio.run(measure(nodes))
    finally:
        receiver.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
