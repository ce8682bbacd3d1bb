"""python -m ntorque enqueue --file tasks.jsonl: a bulk import. One JSON
object a line, shaped as an item of POST /tasks (the batch), checked by the
same code; stored CHUNK lines at a time through the Queue's enqueue, each
chunk one transaction, so the nodes are told of them as of any enqueue.

A bad line is reported with its number and left out; the others go in (a
file of a million lines should not fail on its last one). An idempotency
key the file repeats, or one the database holds for another request, is a
bad line too; a key the database holds for the same request answers the
task made then (counted as made before, not enqueued). Exit status 1 when any line was left out.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from . import batch, intake, jsonbody
from .applications import Applications
from .channel import make_channel
from .cli_shared import open_queue
from .config import Settings
from .errors import InvalidRequest, KeyReused, UnknownApplication
from .queue import Queue
from .store import Store
from .targets import Policy, Rules, Targets
from .tasks import NewTask

CHUNK = 500  # lines stored per transaction (the Queue's own batch size)
NO_APP = 0  # the idempotency scope of tasks of no application, as the API's


@dataclass
class Tally:
    enqueued: int = 0
    replayed: int = 0  # lines whose idempotency key named a task made before
    rejected: list[dict[str, Any]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)  # idempotency keys seen in the file


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    enqueue = commands.add_parser(
        "enqueue", parents=[common], help="enqueue the tasks of a JSON-lines file (a bulk import)"
    )
    enqueue.add_argument(
        "--file", required=True, help="one task a line, as POST /tasks takes one (- : stdin)"
    )
    enqueue.add_argument("--app", metavar="NAME", help="the application the tasks belong to")
    enqueue.add_argument("--json", action="store_true", help="print the summary as JSON")


async def run(options: argparse.Namespace, store: Store, settings: Settings) -> int:
    try:
        return await enqueue(options, store, settings)
    except (InvalidRequest, UnknownApplication) as error:
        print(f"ntorque: {error.message}", file=sys.stderr)
        return 1


async def enqueue(options: argparse.Namespace, store: Store, settings: Settings) -> int:
    logging.getLogger("ntorque.queue").setLevel(
        logging.INFO if options.verbose else logging.WARNING
    )
    apps = Applications(store.apps)
    app_id = await apps.namespace(options.app, authenticate=settings.authenticate) or None
    channel = make_channel(settings.redis_url, settings.redis_channel)
    queue = open_queue(store, settings, channel)
    started, tally = time.monotonic(), Tally()
    try:
        read = await reader(store, settings, app_id, queue)
        with opened(options.file) as lines:
            for chunk in chunks(lines):
                await store_chunk(queue, [checked(read, tally, n, line) for n, line in chunk],
                                  app_id or NO_APP, tally)  # fmt: skip
                progress(tally)
    finally:
        await queue.close()
        await channel.close()
    summary(options, tally, time.monotonic() - started)
    return 1 if tally.rejected else 0


async def reader(store: Store, settings: Settings, app_id: int | None, queue: Queue) -> Any:
    """A batch item's check, as the API's for this application."""
    targets = Targets(
        Policy(
            settings.allow_private_targets,
            (Rules.parse(settings.target_allow, settings.target_deny),),
        ),
        store.apps.target_policy,
    )
    policy = await targets.for_app(app_id)
    limits = intake.Limits(settings.max_retries, settings.max_schedule_ahead_s)

    def read_item(query: dict[str, str], headers: dict[str, str], body: bytes) -> NewTask:
        return intake.new_task(
            app_id=app_id, query=query, headers=headers, body=body, policy=policy, limits=limits,
            max_timeout_s=settings.max_due_delay_s, now=queue.clock(),
        )  # fmt: skip

    return functools.partial(
        batch.read, read_item=read_item, max_body_bytes=settings.max_body_bytes
    )


Checked = tuple[int, batch.Item | None]


def checked(read: Any, tally: Tally, number: int, line: bytes) -> Checked:
    """The line's task, or None (and the line rejected)."""
    try:
        spec, keyed = read(jsonbody.loads(line, "the line is not valid JSON"))
        if keyed is not None and keyed.key in tally.keys:
            raise InvalidRequest("this idempotency_key is in the file twice", "idempotency_key")
    except InvalidRequest as error:
        tally.rejected.append({"line": number, "field": error.field, "error": error.message})
        return number, None
    if keyed is not None:
        tally.keys.add(keyed.key)
    return number, (spec, keyed)


async def store_chunk(queue: Queue, lines: list[Checked], scope: int, tally: Tally) -> None:
    """Store the chunk's good lines in one transaction; a line whose key
    the database holds for another request is rejected, the rest stored."""
    good = [(number, item) for number, item in lines if item is not None]
    while good:
        try:
            results = await queue.enqueue_keyed(
                [i[0] for _, i in good], [i[1] for _, i in good], scope
            )
        except KeyReused as reused:
            number, _ = good.pop(reused.index)
            tally.rejected.append({"line": number, "field": reused.field, "error": reused.message})
            continue
        replayed = sum(1 for _, again in results if again)
        tally.enqueued += len(good) - replayed
        tally.replayed += replayed
        return


def chunks(lines: IO[bytes]) -> Iterator[list[tuple[int, bytes]]]:
    """(line number, line) CHUNK at a time; blank lines skipped."""
    chunk: list[tuple[int, bytes]] = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            chunk.append((number, line))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def opened(path: str) -> IO[bytes]:
    if path == "-":
        return open(sys.stdin.fileno(), "rb", closefd=False)
    try:
        return open(path, "rb")
    except OSError as error:
        raise InvalidRequest(f"cannot read {path}: {error.strerror}") from None


def progress(tally: Tally) -> None:
    """A line on a terminal's stderr, rewritten after each chunk."""
    if sys.stderr.isatty():
        print(f"\r{tally.enqueued} enqueued, {len(tally.rejected)} rejected",
              end="", file=sys.stderr, flush=True)  # fmt: skip


def summary(options: argparse.Namespace, tally: Tally, seconds: float) -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)  # end the progress line
    for item in tally.rejected:
        where = f" ({item['field']})" if item["field"] else ""
        print(f"ntorque: line {item['line']}{where}: {item['error']}", file=sys.stderr)
    if options.json:
        data = {
            "enqueued": tally.enqueued, "replayed": tally.replayed, "rejected": tally.rejected,
            "seconds": round(seconds, 3),
        }  # fmt: skip
        print(json.dumps(data))
    else:
        replayed = f", {tally.replayed} made before (same idempotency key)" * bool(tally.replayed)
        print(
            f"{tally.enqueued} enqueued{replayed}, {len(tally.rejected)} rejected,"
            f" in {seconds:.2f} s"
        )
