"""python -m ntorque schedules list|show|pause|resume: an application's
recurring schedules from the command line, straight on the database like the
queues commands, through the same Scheduler as the API and the same JSON.

A change made here is told to the nodes as the API tells it: a "schedules
changed" notification on the channel. With Redis (REDIS_URL) one worker
pops it and its ticker looks again at once; every other ticker looks within
requeue_interval_s (5 s by default), as do the embedded backend's (its
channel lives in the serving process, out of this one's reach). A resume
keeps the schedule's next tick, so that look makes the ticks missed
meanwhile as its catch_up says.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .applications import Applications
from .channel import SCHEDULES_CHANGED, make_channel
from .cli_shared import scoped_options, table
from .config import Settings
from .errors import InvalidRequest, NtorqueError, UnknownApplication
from .scheduler import Scheduler
from .schedules import Firing, Schedule
from .store import Store
from .tasks import Task

Action = Callable[[argparse.Namespace, Scheduler, int], Awaitable[int]]
PAGE = 1_000  # schedules read per query while listing them all
MAX_ID = 2**63 - 1  # a schedule id is a 64-bit integer in the database


class NoSchedule(NtorqueError):
    """No such schedule."""


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """`schedules` and its actions; --config and the rest go on each action
    (argparse lets a subcommand's defaults overwrite its parent's values)."""
    shared = scoped_options(common, "schedules")
    group = commands.add_parser("schedules", help="recurring schedules: list, show, pause, resume")
    actions = group.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[shared], help="every schedule, its rule and next tick")
    for action, text in (
        ("show", "a schedule's settings, next fire times and last tasks"),
        ("pause", "make no task until resumed (its next tick is kept)"),
        ("resume", "tick again; the ticks missed meanwhile as its catch_up says"),
    ):
        parser = actions.add_parser(action, parents=[shared], help=text)
        parser.add_argument("id", type=schedule_id, help="the schedule's id")


def schedule_id(text: str) -> int:
    """An id as the API takes one: argparse names the option when it is not."""
    number = int(text)
    if not 0 < number <= MAX_ID:
        raise ValueError(text)
    return number


schedule_id.__name__ = "schedule id"  # how argparse names the type in its errors


async def run(options: argparse.Namespace, store: Store, settings: Settings) -> int:
    # The Scheduler logs each change for a server's log; here the printed answer says it.
    level = logging.INFO if options.verbose else logging.WARNING
    logging.getLogger("ntorque.scheduler").setLevel(level)
    channel = make_channel(settings.redis_url, settings.redis_channel)

    async def tell_the_nodes() -> None:
        await channel.push([SCHEDULES_CHANGED])

    scheduler = Scheduler(store.schedules, never_fire, tell_the_nodes)
    try:
        app_id = await Applications(store.apps).namespace(
            options.app, authenticate=settings.authenticate
        )
        return await ACTIONS[options.action](options, scheduler, app_id)
    except (InvalidRequest, NoSchedule, UnknownApplication) as error:
        print(f"ntorque: {error.message}", file=sys.stderr)
        return 1
    finally:
        await channel.close()


async def never_fire(firings: Sequence[tuple[Schedule, Firing]]) -> dict[int, list[Task]]:
    """The command line changes settings only; the nodes' tickers fire."""
    raise AssertionError("the command line does not fire schedules")


async def list_schedules(options: argparse.Namespace, scheduler: Scheduler, app_id: int) -> int:
    found: list[Schedule] = []
    before = None
    while page := await scheduler.page(app_id, PAGE, before):
        found += page
        before = page[-1].id
    now = scheduler.clock()
    rows = [schedule.to_json(now) for schedule in found]
    print(
        json.dumps({"schedules": rows, "next_cursor": None})
        if options.json
        else table(COLUMNS, rows, cell)
    )
    return 0


async def show(options: argparse.Namespace, scheduler: Scheduler, app_id: int) -> int:
    return await shown(options, scheduler, app_id)


async def pause(options: argparse.Namespace, scheduler: Scheduler, app_id: int) -> int:
    await scheduler.set_paused(app_id, options.id, True)
    return await shown(options, scheduler, app_id)


async def resume(options: argparse.Namespace, scheduler: Scheduler, app_id: int) -> int:
    await scheduler.set_paused(app_id, options.id, False)
    return await shown(options, scheduler, app_id)


ACTIONS: dict[str, Action] = {
    "list": list_schedules, "show": show, "pause": pause, "resume": resume,
}  # fmt: skip


async def shown(options: argparse.Namespace, scheduler: Scheduler, app_id: int) -> int:
    """Print the schedule as GET /schedules/<id> answers it (another
    application's is missing, as there)."""
    found = await scheduler.get(app_id, options.id)
    if found is None:
        raise NoSchedule(f"no schedule {options.id}")
    data = found.to_json(scheduler.clock(), detail=True)
    print(json.dumps(data) if options.json else describe(data))
    return 0


# -- text ------------------------------------------------------------------------


COLUMNS = (
    ("ID", "id"), ("NAME", "name"), ("RULE", "description"), ("NEXT TICK", "next_tick"),
    ("STATE", "paused"),
)  # fmt: skip


def describe(data: dict[str, Any]) -> str:
    """One schedule, in a few lines a person reads at a glance."""
    task = data["task"]
    lines = [
        f"schedule {data['id']}{title(data)}: {cell(data, 'paused')}",
        f"  rule:       {data['description']}",
        f"  catch up:   {data['catch_up']}",
        f"  task:       {task['method']} {task['url']} (queue {task['queue']})",
        f"  last tick:  {cell(data, 'last_tick')}",
        *labelled("next ticks:", [when(tick) for tick in data["next_ticks"]]),
        *labelled("last tasks:", [made(task) for task in data["last_tasks"]]),
    ]
    return "\n".join(lines)


def title(data: dict[str, Any]) -> str:
    return "" if data["name"] is None else f" {data['name']!r}"


def labelled(label: str, items: list[str]) -> list[str]:
    """A label on the first of several lines (or on "none")."""
    return [f"  {label if at == 0 else '':<11} {item}" for at, item in enumerate(items or ["none"])]


def made(task: dict[str, Any]) -> str:
    """One of the last tasks a schedule made: what became of its tick."""
    count, code = task["retry_count"], task["last_status_code"]
    attempts = f"{count} attempt{'' if count == 1 else 's'}"
    answer = "" if code is None else f", last answer {code}"
    return f"{when(task['tick'])}  task {task['id']} {task['status']} ({attempts}{answer})"


def cell(row: dict[str, Any], column: str) -> str:
    value = row[column]
    if column == "paused":
        return "paused" if value else "active"
    if value is None:
        return "-"
    return when(value) if column in ("next_tick", "last_tick") else str(value)


def when(iso: str) -> str:
    """An ISO time of the JSON (always UTC), as a person reads it."""
    return iso.replace("T", " ").removesuffix("+00:00") + " UTC"
