"""What the queues and schedules commands share: their --app and --json
options, and the aligned table `list` prints. Text only: no database here
(Applications.namespace reads --app)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any


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
