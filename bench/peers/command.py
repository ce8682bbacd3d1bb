"""python -m bench --peers: check the peers' packages and the services, run
everything against one receiver, print the table and the targets, write the
JSON. Exit 2 when a package or a service is missing; 1 when a system could
not run or lost a task; missed targets are reported, not failures."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .. import postgres, report
from ..processes import start_receiver
from ..scenarios import Bench
from . import figures, run

DEFAULT_JSON = Path(__file__).resolve().parent.parent / "results" / "peers.json"
# The modules `pip install -e '.[bench]'` brings (setup.py's bench extra).
PACKAGES = ("arq", "celery", "procrastinate", "aiohttp")


def missing(modules: tuple[str, ...] = PACKAGES) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


def main(args: argparse.Namespace, document: dict[str, Any]) -> int:
    absent = missing()
    if absent:
        print(f"bench --peers: {', '.join(absent)} not installed; the peers' packages come with "
              "the bench extra: pip install -e '.[bench]'", file=sys.stderr)  # fmt: skip
        return 2
    try:
        asyncio.run(postgres.ping_services(args.database_url, args.redis_url))
    except Exception as error:  # asyncpg's, redis's or the network's: all mean "missing"
        print(f"bench: PostgreSQL or Redis is not reachable: {error}", file=sys.stderr)
        return 2
    systems, alone = measure(args)
    checked = figures.targets(systems, alone)
    document.update(systems=systems, ntorque_alone=alone, targets=checked)
    path = args.json or DEFAULT_JSON
    report.write(path, document)
    print(figures.table(systems) + "\n\n" + figures.NOTES)
    print("\nTargets (issue 15):\n" + report.targets_text(checked))
    print(f"\nwritten to {path}")
    return 1 if figures.failed(systems, alone) else 0


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="ntorque-bench-peers-"))
    receiver, port = start_receiver(workdir)
    bench = Bench(workdir, port, args.database_url, args.redis_url, args.tasks, 0,
                  args.clients, receiver.pid)  # fmt: skip
    try:
        return asyncio.run(run.everything(bench))
    finally:
        receiver.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
