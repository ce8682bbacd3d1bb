"""python -m ntorque stats: how the queue stands, from the console's reads
(bounded counts of unfinished tasks, what finished in the last hour) and the
queues' figures. Reads only.

Without --app it counts every application's tasks, and lists the queues of
each that hold anything; with it, that application's."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .applications import Applications
from .cli_shared import table
from .queues import NamedQueue
from .store import Store

CAP = 100_000  # unfinished tasks counted at most (beyond: "capped", lower bounds)
HOUR_S = 3600.0


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    stats = commands.add_parser(
        "stats", parents=[common], help="counts by status and queue, the due backlog"
    )
    stats.add_argument("--app", metavar="NAME", help="one application's (left out: every one's)")
    stats.add_argument("--json", action="store_true", help="print JSON")


async def run(options: argparse.Namespace, store: Store) -> int:
    now = time.time()
    apps = Applications(store.apps)
    app_id = None if options.app is None else await apps.namespace(options.app, authenticate=True)
    data = {
        **await counts(store, app_id, now),
        "queues": await queue_rows(store, apps, app_id, now),
    }
    print(json.dumps(data) if options.json else describe(data))
    return 0


async def counts(store: Store, app_id: int | None, now: float) -> dict[str, Any]:
    unfinished = await store.console.unfinished(app_id, now, CAP)
    finished: dict[str, int] = {}
    for _, status, count in await store.console.finished(app_id, now - HOUR_S, HOUR_S):
        finished[status] = finished.get(status, 0) + count
    oldest = unfinished["oldest_due"]
    return {
        "pending": unfinished["pending"],
        "in_progress": unfinished["in_progress"],
        "due_now": unfinished["due_now"],
        "oldest_due_age_s": None if oldest is None else round(now - oldest, 3),
        "capped": unfinished["capped"],
        "finished_last_hour": {s: finished.get(s, 0) for s in ("completed", "failed", "cancelled")},
    }


async def queue_rows(
    store: Store, apps: Applications, app_id: int | None, now: float
) -> list[dict[str, Any]]:
    """Each queue's figures; over every application, only the queues holding
    anything (each has a default queue, mostly idle)."""
    if app_id is not None:
        return [row(None, q, now) for q in await store.queues.page(app_id, now)]
    scopes = [(None, 0), *((app.name, app.id) for app in await apps.list())]
    return [
        row(name, q, now)
        for name, scope in scopes
        for q in await store.queues.page(scope, now)
        if busy(q, now)
    ]


def busy(queue: NamedQueue, now: float) -> bool:
    figures = queue.to_json(now)["figures"]
    return any(figures[key] for key in ("pending", "in_flight", "completed_5m", "failed_5m"))


def row(app: str | None, queue: NamedQueue, now: float) -> dict[str, Any]:
    data = queue.to_json(now)
    return {"app": app, "name": data["name"], "paused": data["paused"], **data["figures"]}


# -- text ------------------------------------------------------------------------


COLUMNS = (
    ("APP", "app"), ("QUEUE", "name"), ("STATE", "paused"), ("PENDING", "pending"),
    ("DUE", "due_now"), ("IN FLIGHT", "in_flight"), ("OLDEST DUE", "oldest_due_age_s"),
    ("DONE 5M", "completed_5m"), ("FAILED 5M", "failed_5m"),
)  # fmt: skip


def describe(data: dict[str, Any]) -> str:
    done = data["finished_last_hour"]
    age = data["oldest_due_age_s"]
    capped = f" (counted up to {CAP})" if data["capped"] else ""
    lines = [
        f"unfinished: {data['pending']} pending, {data['in_progress']} in progress{capped}",
        f"due now:    {data['due_now']}"
        + ("" if age is None else f", the oldest due for {age:g} s"),
        f"last hour:  {done['completed']} completed, {done['failed']} failed,"
        f" {done['cancelled']} cancelled",
    ]
    if data["queues"]:
        lines += ["", table(COLUMNS, data["queues"], cell)]
    return "\n".join(lines)


def cell(row: dict[str, Any], column: str) -> str:
    value = row[column]
    if column == "paused":
        return "paused" if value else "running"
    if column == "app":
        return "-" if value is None else str(value)
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
