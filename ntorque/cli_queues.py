"""python -m ntorque queues list|show|set|pause|resume|delete: an application's
named queues from the command line, straight on the database like the
application commands, through the same Flow as the API and the same JSON.

A change that may let waiting tasks start (set, resume) wakes the queue by
pushing the ids its limits let start onto the notification channel. With
Redis (REDIS_URL) that is the list every node's consumers pop, so they start
at once. The embedded backend's channel lives in the serving process, out of
this one's reach: there the node's requeuer finds them in its next round
(requeue_interval_s), as it finds every task whose notification was lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from . import queues
from .applications import Applications
from .channel import make_channel
from .cli_shared import scoped_options, table
from .config import Settings
from .errors import Conflict, InvalidRequest, NtorqueError, UnknownApplication
from .flow import Flow
from .queues import NamedQueue
from .store import Store

Action = Callable[[argparse.Namespace, Flow, int, Settings], Awaitable[int]]


class NoQueue(NtorqueError):
    """No such queue."""


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """`queues` and its actions; --config and the rest go on each action
    (argparse lets a subcommand's defaults overwrite its parent's values)."""
    shared = scoped_options(common, "queues")
    group = commands.add_parser("queues", help="named queues: limits, pause, resume, figures")
    actions = group.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[shared], help="every queue, its limits and figures")
    for action, text in (
        ("show", "a queue's settings and figures"),
        ("set", "change the settings given (made if need be); `none` clears one"),
        ("pause", "start none of its tasks until resumed (calls in flight finish)"),
        ("resume", "start its tasks again"),
        ("delete", "forget an empty queue's settings"),
    ):
        parser = actions.add_parser(action, parents=[shared], help=text)
        parser.add_argument("name")
        if action == "set":
            add_settings(parser)


def add_settings(parser: argparse.ArgumentParser) -> None:
    """Options named like the JSON fields; only those given are changed."""
    whole, number = optional(int), optional(float)
    for option, kind, metavar, text in (
        ("--max-concurrency", whole, "N", "calls in flight at once, across every node"),
        ("--rate-per-s", number, "X", "calls started per second, across every node"),
        ("--burst", whole, "N", "calls started at once after a quiet spell (default: ceil(rate))"),
        ("--retries", whole, "N", "default attempt allowance of its tasks"),
        ("--backoff", optional(str), "{linear,exponential}", "default backoff of its tasks"),
        ("--timeout", whole, "S", "default timeout of its tasks, in seconds"),
    ):
        parser.add_argument(
            option, type=kind, metavar=metavar, default=argparse.SUPPRESS, help=text
        )
    parser.add_argument(
        "--paused",
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help="pause it (or, with --no-paused, resume it)",
    )


def optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """A value, or `none`: JSON null (no limit, or the server's default)."""

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


async def run(options: argparse.Namespace, store: Store, settings: Settings) -> int:
    # Flow logs each change for a server's log; here the printed answer says it.
    logging.getLogger("ntorque.flow").setLevel(logging.INFO if options.verbose else logging.WARNING)
    channel = make_channel(settings.redis_url, settings.redis_channel)
    flow = Flow(store.queues, channel, max_retries=settings.max_retries)
    try:
        app_id = await Applications(store.apps).namespace(
            options.app, authenticate=settings.authenticate
        )
        return await ACTIONS[options.action](options, flow, app_id, settings)
    except (InvalidRequest, Conflict, NoQueue, UnknownApplication) as error:
        print(f"ntorque: {error.message}", file=sys.stderr)
        return 1
    finally:
        await flow.close()  # its wake-ups reach the channel before it closes
        await channel.close()


async def list_queues(options: argparse.Namespace, flow: Flow, app_id: int, _: Settings) -> int:
    found = await flow.queues(app_id)
    now = flow.clock()
    if options.json:
        print(json.dumps({"queues": [q.to_json(now) for q in found], "next_cursor": None}))
    else:
        print(table(COLUMNS, [q.to_json(now) for q in found], cell))
    return 0


async def show(options: argparse.Namespace, flow: Flow, app_id: int, _: Settings) -> int:
    found = await flow.get(app_id, queues.check_name(options.name))
    if found is None:
        raise NoQueue(f"no queue {options.name!r}")
    return shown(options, flow, found)


async def set_(options: argparse.Namespace, flow: Flow, app_id: int, settings: Settings) -> int:
    """Like PATCH, on a queue that need not exist yet (set is how one is made)."""
    name = queues.check_name(options.name)
    found = await flow.get(app_id, name)
    given = {field: getattr(options, field) for field in queues.SETTINGS if field in options}
    changed = queues.settings_from_json(
        given,
        max_retries=settings.max_retries,
        max_timeout_s=settings.max_due_delay_s,
        base=found.settings if found else queues.QueueSettings(),
    )
    return shown(options, flow, await flow.configure(app_id, name, changed))


async def pause(options: argparse.Namespace, flow: Flow, app_id: int, _: Settings) -> int:
    return shown(options, flow, await flow.pause(app_id, queues.check_name(options.name)))


async def resume(options: argparse.Namespace, flow: Flow, app_id: int, _: Settings) -> int:
    return shown(options, flow, await flow.resume(app_id, queues.check_name(options.name)))


async def delete(options: argparse.Namespace, flow: Flow, app_id: int, _: Settings) -> int:
    """Prints nothing with --json: the API's answer is a 204."""
    deleted = await flow.delete(app_id, queues.check_name(options.name))
    if deleted is None:
        raise NoQueue(f"no configured queue {options.name!r}")
    if not deleted:
        raise Conflict(
            f"queue {options.name!r} has unfinished tasks: cancel them or let them finish"
        )
    if not options.json:
        print(f"deleted queue {options.name!r}")
    return 0


ACTIONS: dict[str, Action] = {
    "list": list_queues, "show": show, "set": set_, "pause": pause, "resume": resume,
    "delete": delete,
}  # fmt: skip


# -- text ------------------------------------------------------------------------


COLUMNS = (
    ("NAME", "name"), ("STATE", "paused"), ("CONCURRENCY", "max_concurrency"),
    ("RATE/S", "rate_per_s"), ("BURST", "burst"), ("PENDING", "pending"),
    ("DUE", "due_now"), ("IN FLIGHT", "in_flight"), ("OLDEST DUE", "oldest_due_age_s"),
)  # fmt: skip


def shown(options: argparse.Namespace, flow: Flow, named: NamedQueue) -> int:
    data = named.to_json(flow.clock())
    print(json.dumps(data) if options.json else describe(data))
    return 0


def describe(data: dict[str, Any]) -> str:
    """One queue, in a few lines a person reads at a glance."""
    figures = data["figures"]
    limits = given(data, ("max_concurrency", "rate_per_s", "burst")) or "none"
    defaults = given(data, ("retries", "backoff", "timeout")) or "the server's"
    age = figures["oldest_due_age_s"]
    oldest = "" if age is None else f" (the oldest for {age:g} s)"
    return "\n".join(
        (
            f"queue {data['name']}: {cell(data, 'paused')}",
            f"  limits:   {limits}",
            f"  defaults: {defaults}",
            f"  now:      {figures['pending']} pending, {figures['due_now']} due{oldest},"
            f" {figures['in_flight']} in flight",
            f"  last 5 m: {figures['completed_5m']} completed, {figures['failed_5m']} failed",
        )
    )


def given(data: dict[str, Any], keys: tuple[str, ...]) -> str:
    return ", ".join(f"{key} {cell(data, key)}" for key in keys if data[key] is not None)


def cell(row: dict[str, Any], column: str) -> str:
    value = row[column] if column in row else row["figures"][column]
    if column == "paused":
        return "paused" if value else "running"
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
