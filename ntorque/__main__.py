"""python -m ntorque [serve|migrate|create-app|list-apps|deactivate-app|rotate-key].

The only caller of config.load(); with no subcommand it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from . import app, database
from .auth import Applications
from .config import ROLES, Settings, load
from .errors import (
    InvalidRequest,
    NotMigrated,
    NtorqueError,
    StorageUnavailable,
    UnknownApplication,
)
from .store import Store

T = TypeVar("T")
COMMANDS = ("serve", "migrate", "create-app", "list-apps", "deactivate-app", "rotate-key")


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML configuration file (or NTORQUE_CONFIG)")
    main = argparse.ArgumentParser(prog="ntorque", description="A durable web-hook task queue.")
    commands = main.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", parents=[common], help="run the queue (the default)")
    serve.add_argument("--host", help="address to listen on (NTORQUE_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (NTORQUE_PORT, PORT)")
    serve.add_argument("--role", choices=ROLES, help="all (default), web (API only), worker")
    serve.add_argument("--migrate", action="store_true", help="migrate the database first")
    commands.add_parser("migrate", parents=[common], help="migrate the database schema")
    for name, text in (
        ("create-app", "create an application and print its API key"),
        ("deactivate-app", "refuse an application's key from now on"),
        ("rotate-key", "give an application a new API key (the old one stops working)"),
    ):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("--name", required=True)
    commands.add_parser("list-apps", parents=[common], help="list the applications")
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in COMMANDS and args[0] not in ("-h", "--help")):
        args.insert(0, "serve")
    options = parser().parse_args(args)
    try:
        return run(options)
    except NtorqueError as error:
        print(f"ntorque: {error.message}", file=sys.stderr)
        return 2


def run(options: argparse.Namespace) -> int:
    overrides = {
        key: getattr(options, key, None) for key in ("host", "port", "role")
    }  # fmt: skip
    settings = load(options.config, overrides=overrides)
    app.setup_logging(settings.development)
    if options.command == "migrate":
        database.upgrade(settings.database_url)
        print("ntorque: the database schema is up to date")
        return 0
    prepare_database(settings, migrate=getattr(options, "migrate", False))
    if options.command == "serve":
        return asyncio.run(app.serve(settings))
    return asyncio.run(with_store(settings, lambda store: manage(options, store)))


def prepare_database(settings: Settings, *, migrate: bool) -> None:
    """The embedded SQLite file migrates itself; PostgreSQL only when asked."""
    if migrate or database.is_sqlite(settings.database_url):
        database.upgrade(settings.database_url)
        return
    head = database.head_revision(settings.database_url)

    async def current(store: Store) -> str | None:
        return await database.current_revision(store.engine)

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
    engine = database.make_engine(settings)
    try:
        return await work(Store(engine))
    finally:
        await engine.dispose()


async def manage(options: argparse.Namespace, store: Store) -> int:
    apps = Applications(store)
    name = options.name if hasattr(options, "name") else ""
    try:
        if options.command == "create-app":
            app_, key = await apps.create(name)
            print(f"created application {app_.name!r} (id {app_.id}); its API key: {key}")
        elif options.command == "rotate-key":
            print(f"new API key of {name!r}: {await apps.rotate_key(name)}")
        elif options.command == "deactivate-app":
            await apps.set_active(name, False)
            print(f"deactivated application {name!r}")
        else:
            for item in await apps.list():
                state = "active" if item.active else "inactive"
                print(f"{item.id}\t{item.name}\t{state}")
    except (InvalidRequest, UnknownApplication) as error:
        print(f"ntorque: {error.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
