"""python -m ntorque tasks list|show|cancel|retry: tasks from the command line,
straight on the database like the queue commands, through the same Queue
operations as the API (so a cancel runs its callbacks, a retry notifies the
nodes) and printing the same JSON.

Without --app a command sees every application's tasks, as an admin's
listing does; with it, that application's only (another's task is missing).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from . import selection
from .applications import Applications
from .channel import make_channel
from .cli_shared import open_queue, table, task_id
from .config import Settings
from .errors import InvalidRequest, NtorqueError, UnknownApplication
from .queue import Queue
from .store import Store
from .tasks import Task

Action = Callable[[argparse.Namespace, Queue, int | None], Awaitable[int]]


class NoTask(NtorqueError):
    """No such task."""


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    shared = argparse.ArgumentParser(add_help=False, parents=[common])
    shared.add_argument(
        "--app", metavar="NAME", help="only this application's tasks (left out: every one's)"
    )
    shared.add_argument("--json", action="store_true", help="print the API's JSON")
    group = commands.add_parser("tasks", help="tasks: list, show, cancel, retry")
    actions = group.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[shared], help="tasks, newest first")
    listing.add_argument("--status", help="pending, in_progress, completed, failed, cancelled")
    listing.add_argument("--queue", help="a named queue")
    listing.add_argument("--url-prefix", metavar="URL", help="urls starting with this")
    listing.add_argument(
        "--limit", type=int, default=selection.DEFAULT_LIMIT, help="at most this many (1 to 1000)"
    )
    show = actions.add_parser("show", parents=[shared], help="a task and its attempts")
    show.add_argument("id", type=task_id)
    for action, text in (
        ("cancel", "cancel pending or in-progress tasks (their history stays)"),
        ("retry", "run failed or cancelled tasks again now, with a fresh allowance"),
    ):
        parser = actions.add_parser(action, parents=[shared], help=text)
        parser.add_argument("ids", nargs="+", type=task_id, metavar="ID")


async def run(options: argparse.Namespace, store: Store, settings: Settings) -> int:
    # The Queue logs each change for a server's log; here the printed answer says it.
    logging.getLogger("ntorque.queue").setLevel(
        logging.INFO if options.verbose else logging.WARNING
    )
    channel = make_channel(settings.redis_url, settings.redis_channel)
    queue = open_queue(store, settings, channel)
    try:
        app_id = await scope(store, options.app)
        return await ACTIONS[options.action](options, queue, app_id)
    except (InvalidRequest, NoTask, UnknownApplication) as error:
        print(f"ntorque: {error.message}", file=sys.stderr)
        return 1
    finally:
        await queue.close()
        await channel.close()


async def scope(store: Store, name: str | None) -> int | None:
    """The application --app names; None (every application) without it."""
    if name is None:
        return None
    return await Applications(store.apps).namespace(name, authenticate=True)


async def list_tasks(options: argparse.Namespace, queue: Queue, app_id: int | None) -> int:
    filters = {"status": options.status, "queue": options.queue, "url_prefix": options.url_prefix}
    chosen = selection.task_filter(filters, app_id)
    limit = selection.limit(options.limit)
    found = await queue.listing(chosen, limit + 1)
    page = found[:limit]
    more = len(found) > limit
    rows = [task.to_json() for task in page]
    if options.json:
        cursor = selection.cursor(page[-1].id) if more else None
        print(json.dumps({"tasks": rows, "next_cursor": cursor}))
    else:
        print(table(COLUMNS, rows, cell))
        if more:
            print(f"(the newest {limit}; more match: raise --limit or narrow the filters)")
    return 0


async def show(options: argparse.Namespace, queue: Queue, app_id: int | None) -> int:
    task = await owned(queue, options.id, app_id)
    data = {**task.to_json(), "attempts": await queue.attempts(task.id)}
    print(json.dumps(data) if options.json else describe(data))
    return 0


async def owned(queue: Queue, number: int, app_id: int | None) -> Task:
    task = await queue.get(number)
    if task is None or (app_id is not None and task.app_id != app_id):
        raise NoTask(f"no task {number}")
    return task


async def change(options: argparse.Namespace, queue: Queue, app_id: int | None) -> int:
    """Cancel or retry the tasks named; those their state forbids are named
    on stderr (status 1), the others changed all the same."""
    wanted = list(dict.fromkeys(options.ids))
    found = {number: await queue.get(number) for number in wanted}
    ours = [n for n, t in found.items() if t is not None and (app_id is None or t.app_id == app_id)]
    act = queue.cancel if options.action == "cancel" else queue.retry
    changed = await act(ours) if ours else []
    done = {task.id for task in changed}
    refused = [refusal(n, found[n], options.action, n in ours) for n in wanted if n not in done]
    if options.json:
        print(json.dumps({"tasks": [t.to_json() for t in changed], "refused": refused}))
    else:
        past = "cancelled" if options.action == "cancel" else "retried"
        for task in changed:
            print(f"{past} task {task.id} ({task.url})")
    for item in refused:
        print(f"ntorque: task {item['id']}: {item['error']}", file=sys.stderr)
    return 1 if refused else 0


def refusal(number: int, task: Task | None, action: str, ours: bool) -> dict[str, Any]:
    if task is None or not ours:
        return {"id": number, "error": "no such task"}
    allowed = "pending or in-progress" if action == "cancel" else "failed or cancelled"
    return {"id": number, "error": f"it is {task.status}, not {allowed}"}


ACTIONS: dict[str, Action] = {
    "list": list_tasks, "show": show, "cancel": change, "retry": change,
}  # fmt: skip


# -- text ------------------------------------------------------------------------


COLUMNS = (
    ("ID", "id"), ("STATUS", "status"), ("QUEUE", "queue"), ("METHOD", "method"),
    ("URL", "url"), ("TRIES", "retry_count"), ("LAST", "last_status_code"), ("CREATED", "created"),
)  # fmt: skip


def describe(data: dict[str, Any]) -> str:
    """One task and its attempts, in lines a person reads at a glance."""
    lines = [
        f"task {data['id']}: {data['status']}",
        f"  call:     {data['method']} {data['url']} (queue {data['queue']})",
        f"  created:  {cell(data, 'created')}",
        f"  due:      {cell(data, 'due')}",
        f"  body:     {data['body_size']} bytes {data['content_type']}",
        f"  attempts: {data['retry_count']}" + last_error(data),
    ]
    for attempt in data["attempts"]:
        answer = attempt["status_code"] or attempt["error"] or "-"
        lines.append(
            f"    #{attempt['number']} {when(attempt['started'])}  {answer}"
            f"  ({attempt['duration_s']:.3f} s)"
        )
    return "\n".join(lines)


def last_error(data: dict[str, Any]) -> str:
    return f", last error: {data['last_error']}" if data["last_error"] else ""


def cell(row: dict[str, Any], column: str) -> str:
    value = row[column]
    if value is None:
        return "-"
    return when(value) if column in ("created", "due") else str(value)


def when(iso: str) -> str:
    """An ISO time of the JSON (always UTC), as a person reads it."""
    return iso.replace("T", " ").removesuffix("+00:00") + " UTC"
