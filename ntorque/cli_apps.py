"""python -m ntorque apps list|create|deactivate|rotate-key: applications from
the command line, through Applications. The older create-app, list-apps,
deactivate-app and rotate-key --name commands are aliases of these, and keep
printing what they always printed (scripts read it)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .applications import Applications
from .auth import App
from .cli_shared import table
from .errors import InvalidRequest, UnknownApplication
from .store import Store

ALIASES = {
    "create-app": "create", "list-apps": "list", "deactivate-app": "deactivate",
    "rotate-key": "rotate-key",
}  # fmt: skip


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    shared = argparse.ArgumentParser(add_help=False, parents=[common])
    shared.add_argument("--json", action="store_true", help="print JSON")
    group = commands.add_parser("apps", help="applications: list, create, deactivate, rotate-key")
    actions = group.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[shared], help="the applications")
    for action, text in (
        ("create", "create an application and print its API key and signing secret"),
        ("deactivate", "refuse an application's key from now on"),
        ("rotate-key", "give an application a new API key (the old one stops working)"),
    ):
        parser = actions.add_parser(action, parents=[shared], help=text)
        parser.add_argument("name")
        if action == "create":
            parser.add_argument(
                "--admin", action="store_true", help="its console login sees every application"
            )


async def run(options: argparse.Namespace, store: Store) -> int:
    """`apps ACTION`, or one of its aliases (options.command names which)."""
    legacy = options.command != "apps"
    action = ALIASES[options.command] if legacy else options.action
    apps = Applications(store.apps)
    try:
        data = await ACTIONS[action](apps, options)
    except (InvalidRequest, UnknownApplication) as error:
        print(f"ntorque: {error.message}", file=sys.stderr)
        return 1
    if getattr(options, "json", False):
        print(json.dumps(data))
    elif action == "list" and legacy:
        if data["apps"]:  # none: list-apps printed nothing
            print(legacy_list(data["apps"]))
    elif action == "list":
        print(table(COLUMNS, data["apps"], cell))
    else:
        print(said(action, data))
    return 0


async def list_apps(apps: Applications, _: argparse.Namespace) -> dict[str, Any]:
    return {"apps": [app_json(app) for app in await apps.list()]}


async def create(apps: Applications, options: argparse.Namespace) -> dict[str, Any]:
    made, key, secret = await apps.create(options.name, admin=options.admin)
    return {**app_json(made), "api_key": key, "signing_secret": secret}


async def deactivate(apps: Applications, options: argparse.Namespace) -> dict[str, Any]:
    await apps.set_active(options.name, False)
    return {"name": options.name, "active": False}


async def rotate_key(apps: Applications, options: argparse.Namespace) -> dict[str, Any]:
    return {"name": options.name, "api_key": await apps.rotate_key(options.name)}


ACTIONS = {"list": list_apps, "create": create, "deactivate": deactivate, "rotate-key": rotate_key}


def app_json(app: App) -> dict[str, Any]:
    return {"id": app.id, "name": app.name, "active": app.active, "admin": app.admin}


# -- text ------------------------------------------------------------------------


COLUMNS = (("ID", "id"), ("NAME", "name"), ("STATE", "active"), ("ADMIN", "admin"))


def cell(row: dict[str, Any], column: str) -> str:
    if column == "active":
        return "active" if row[column] else "inactive"
    if column == "admin":
        return "admin" if row[column] else ""
    return str(row[column])


def legacy_list(rows: list[dict[str, Any]]) -> str:
    """list-apps' tab-separated lines: id, name, state (and `admin`)."""
    return "\n".join(
        "\t".join([str(row["id"]), row["name"], cell(row, "active")] + ["admin"] * row["admin"])
        for row in rows
    )


def said(action: str, data: dict[str, Any]) -> str:
    name = data["name"]
    if action == "create":
        return (
            f"created application {name!r} (id {data['id']}); its API key: {data['api_key']}\n"
            f"its signing secret: {data['signing_secret']}"
        )
    if action == "deactivate":
        return f"deactivated application {name!r}"
    return f"new API key of {name!r}: {data['api_key']}"
