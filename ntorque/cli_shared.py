"""What the command groups share: their --app and --json options, a task
id's parsing, the aligned table `list` prints, and the Queue the task
commands write through. No I/O here (Applications.namespace reads --app)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from .channel import Channel
from .config import Settings
from .events import Events
from .queue import Queue
from .store import Store


def scoped_options(common: argparse.ArgumentParser, what: str) -> argparse.ArgumentParser:
    """--app and --json, for every action of a command on one application's `what`."""
    shared = argparse.ArgumentParser(add_help=False, parents=[common])
    shared.add_argument(
        "--app",
        metavar="NAME",
        help=f"the application the {what} belong to (needed with authentication on; "
        f"left out: the {what} of no application)",
    )
    shared.add_argument("--json", action="store_true", help="print the API's JSON")
    return shared


Columns = Sequence[tuple[str, str]]  # (heading, the JSON key its cells show)


def table(
    columns: Columns, rows: list[dict[str, Any]], cell: Callable[[dict[str, Any], str], str]
) -> str:
    """A line per row, in aligned columns under their headings."""
    lines = [
        [heading for heading, _ in columns],
        *([cell(row, key) for _, key in columns] for row in rows),
    ]
    widths = [max(len(line[at]) for line in lines) for at in range(len(columns))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


MAX_ID = 2**63 - 1  # an id is a 64-bit integer in the database


def task_id(text: str) -> int:
    """An id as the API takes one: argparse names the option when it is not."""
    number = int(text)
    if not 0 < number <= MAX_ID:
        raise ValueError(text)
    return number


task_id.__name__ = "task id"  # how argparse names the type in its errors


def open_queue(store: Store, settings: Settings, channel: Channel) -> Queue:
    """The API's Queue on this process's store: its writes publish and notify
    as a node's do. No look-ahead timers: this process ends at once, and the
    nodes' requeuers find tasks falling due later."""
    return Queue(
        store.tasks,
        channel,
        Events(),
        min_due_delay_s=settings.min_due_delay_s,
        max_due_delay_s=settings.max_due_delay_s,
        max_retries=settings.max_retries,
        backoff_kind=settings.backoff,
        lookahead_s=0.0,
        idempotency_window_s=settings.idempotency_window_s,
    )
