"""python -m ntorque [serve|migrate|apps ...|tasks ...|queues ...|schedules ...|stats|
enqueue|rotate-secret|show-secret|set-targets] (each group in its cli_* module;
create-app, list-apps, deactivate-app and rotate-key are aliases of `apps ...`).

The only caller of config.load(); with no subcommand it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from tornado.netutil import bind_sockets

from . import (
    app,
    cli_apps,
    cli_enqueue,
    cli_queues,
    cli_schedules,
    cli_stats,
    cli_tasks,
    metrics,
    processes,
)
from .applications import Applications
from .config import ROLES, Settings, load
from .errors import (
    NotMigrated,
    NtorqueError,
    StorageUnavailable,
    UnknownApplication,
)
from .store import Store, engine

T = TypeVar("T")
log = logging.getLogger("ntorque.__main__")  # not "__main__" under python -m
COMMANDS = (
    "serve", "migrate", "create-app", "list-apps", "deactivate-app", "rotate-key", "set-targets",
    "rotate-secret", "show-secret", "queues", "schedules", "apps", "tasks", "stats", "enqueue",
)  # fmt: skip


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML configuration file (or NTORQUE_CONFIG)")
    common.add_argument(
        "--verbose", action="store_true", help="also log each migration step (Alembic's lines)"
    )
    main = argparse.ArgumentParser(prog="ntorque", description="A durable web-hook task queue.")
    commands = main.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", parents=[common], help="run the queue (the default)")
    serve.add_argument("--host", help="address to listen on (NTORQUE_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (NTORQUE_PORT, PORT)")
    serve.add_argument("--role", choices=ROLES, help="all (default), web (API only), worker")
    serve.add_argument(
        "--processes", type=int, help="processes sharing the port (NTORQUE_PROCESSES; 0: per core)"
    )
    serve.add_argument("--migrate", action="store_true", help="migrate the database first")
    serve.add_argument("--certfile", help="serve https with this PEM chain (NTORQUE_CERTFILE)")
    serve.add_argument("--keyfile", help="... and this PEM key (NTORQUE_KEYFILE)")
    commands.add_parser("migrate", parents=[common], help="migrate the database schema")
    for name, text in (
        ("create-app", "create an application and print its API key and signing secret"),
        ("deactivate-app", "refuse an application's key from now on"),
        ("rotate-key", "give an application a new API key (the old one stops working)"),
    ):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("--name", required=True)
        if name == "create-app":
            command.add_argument(
                "--admin", action="store_true", help="its console login sees every application"
            )
    commands.add_parser("list-apps", parents=[common], help="list the applications")
    rotate = commands.add_parser(
        "rotate-secret",
        parents=[common],
        help="give an application a new signing secret (both sign until --finish)",
    )
    rotate.add_argument("--name", required=True)
    rotate.add_argument("--finish", action="store_true", help="stop signing with the old one")
    show = commands.add_parser(
        "show-secret", parents=[common], help="print the signing secrets in use"
    )
    show.add_argument("--name", help="an application (none: the server's, for no application)")
    targets = commands.add_parser(
        "set-targets", parents=[common], help="set an application's target allow/deny lists"
    )
    targets.add_argument("--name", required=True)
    for option in ("--allow", "--deny"):
        targets.add_argument(
            option, action="append", default=[], help="CIDR or host pattern (repeat or a,b)"
        )
    cli_apps.add_parser(commands, common)
    cli_tasks.add_parser(commands, common)
    cli_queues.add_parser(commands, common)
    cli_schedules.add_parser(commands, common)
    cli_stats.add_parser(commands, common)
    cli_enqueue.add_parser(commands, common)
    return main


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one command; environ replaces os.environ (tests run commands in-process)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in COMMANDS and args[0] not in ("-h", "--help")):
        args.insert(0, "serve")
    options = parser().parse_args(args)
    try:
        return run(options, environ)
    except NtorqueError as error:
        print(f"ntorque: {error.message}", file=sys.stderr)
        return 2


def run(options: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    overrides = {
        key: getattr(options, key, None)
        for key in ("host", "port", "role", "processes", "certfile", "keyfile")
    }  # fmt: skip
    settings = load(options.config, environ, overrides)
    app.setup_logging(settings.development, settings.processes, settings.log_format)
    # Alembic says "Context impl ..." at every start: only when the user asks (--verbose).
    logging.getLogger("alembic").setLevel(logging.INFO if options.verbose else logging.WARNING)
    if options.command == "migrate":
        return migrate_schema(settings.database_url)
    prepare_database(settings, migrate=getattr(options, "migrate", False))
    if options.command == "serve":
        return serve(settings)
    if options.command == "set-targets":
        return asyncio.run(with_store(settings, lambda store: set_targets(options, store)))
    group = COMMAND_GROUPS.get(options.command)
    if group is not None:
        return asyncio.run(with_store(settings, lambda store: group(options, store, settings)))
    if options.command == "stats":
        return asyncio.run(with_store(settings, lambda store: cli_stats.run(options, store)))
    if options.command in ("rotate-secret", "show-secret"):
        return asyncio.run(with_store(settings, lambda store: signing(options, store)))
    return asyncio.run(with_store(settings, lambda store: cli_apps.run(options, store)))


# Command groups run with the store and the settings (each module's run()).
COMMAND_GROUPS = {
    "queues": cli_queues.run,
    "schedules": cli_schedules.run,
    "tasks": cli_tasks.run,
    "enqueue": cli_enqueue.run,
}


def serve(settings: Settings) -> int:
    """One process, or several sharing the port: the parent binds it and forks
    (after the database check above, before any loop or connection exists)."""
    count = processes.count(settings.processes)
    if count == 1:
        return asyncio.run(app.serve(settings))
    sockets = [] if settings.role == "worker" else bind_sockets(settings.port, settings.host)
    log.info("starting %s processes", count)
    with metrics.multiprocess_dir() as path:  # any child's /metrics sums them all
        supervisor = processes.Supervisor(
            count,
            lambda _index: asyncio.run(app.serve(settings, sockets, path)),
            sockets,
            ended=lambda pid: metrics.process_ended(pid, path),
        )
        return supervisor.run()


def migrate_schema(database_url: str) -> int:
    """`migrate`: say what it applied, or where the schema already was."""
    applied = engine.upgrade(database_url)
    for revision in applied:
        print(f"ntorque: applied {revision}")
    if not applied:
        print(f"ntorque: already up to date at {engine.head_revision(database_url)}")
    return 0


def prepare_database(settings: Settings, *, migrate: bool) -> None:
    """The embedded SQLite file migrates itself; PostgreSQL only when asked."""
    if migrate or engine.is_sqlite(settings.database_url):
        for applied in engine.upgrade(settings.database_url):
            log.info("applied the schema revision %s", applied)
        return
    head = engine.head_revision(settings.database_url)

    async def current(store: Store) -> str | None:
        return await engine.current_revision(store.engine)

    try:
        revision = asyncio.run(with_store(settings, current))
    except Exception as error:
        raise StorageUnavailable(f"cannot reach the database: {error}") from error
    if revision != head:
        raise NotMigrated(
            f"the database schema is at {revision or 'nothing'}, not {head}: "
            "run `python -m ntorque migrate` (or serve with --migrate)"
        )


async def with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    made = engine.make_engine(settings)
    try:
        return await work(Store(made))
    finally:
        await made.dispose()


async def signing(options: argparse.Namespace, store: Store) -> int:
    """rotate-secret [--finish] and show-secret: the secrets that sign calls."""
    apps, name = Applications(store.apps), options.name
    try:
        if options.command == "show-secret" and name is None:
            secret = await apps.server_signing_secret()
            print(f"signing secret for tasks of no application: {secret}")
        elif options.command == "show-secret":
            print(f"signing secrets of {name!r}: {' '.join(await apps.signing_secrets(name))}")
        elif options.finish:
            await apps.finish_rotation(name)
            print(f"only the current signing secret of {name!r} signs from now on")
        else:
            secret = await apps.rotate_secret(name)
            print(f"new signing secret of {name!r}: {secret}")
            print("the old one signs too, until `rotate-secret --finish`")
    except UnknownApplication as error:
        print(f"ntorque: {error.message}", file=sys.stderr)
        return 1
    return 0


async def set_targets(options: argparse.Namespace, store: Store) -> int:
    """Store an application's own target lists; none at all clears them."""
    try:
        stored = await Applications(store.apps).set_targets(
            options.name, options.allow, options.deny
        )
    except ValueError as error:
        print(f"ntorque: {error}", file=sys.stderr)
        return 1
    except UnknownApplication as error:
        print(f"ntorque: {error.message}", file=sys.stderr)
        return 1
    print(f"target policy of {options.name!r}: {json.dumps(stored)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
