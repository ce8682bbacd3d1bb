"""python -m ntorque schedules list|show|pause|resume, on both backends.

The schedules are made through a serving node's API (POST /schedules), and the
commands are checked against what that node's API answers: the same JSON, and
a pause or resume the node's ticker sees at its next look. The commands run in
this process (`in_process`, as the queue commands' tests do), one as a process
of its own.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ntorque import schedules
from ntorque.config import Settings
from ntorque.schedules import Template
from ntorque.store import Store
from ntorque.store import engine as database
from tests import services
from tests.conftest import Backend, server_for
from tests.factories import spec
from tests.hookserver import HookServer
from tests.server import NtorqueServer
from tests.test_cli import Done, created_key, in_process, launched, refused, unique

WEEKDAYS = {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"}
LOOK_S = 1  # the node's requeue_interval_s: how often its ticker looks at the database


@dataclass(frozen=True)
class Node:
    """A serving node on the module's backend, and two applications' names and keys."""

    server: NtorqueServer
    backend: Backend
    app: str
    key: str
    other: str
    other_key: str

    def make(self, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """POST /schedules; the schedule as GET /schedules/<id> answers it."""
        made = self.server.request("POST", "/schedules", json.dumps(body).encode(), JSON, key)
        assert made.status == 201, (made.status, made.body)
        return self.get(made.json["id"], key)

    def get(self, schedule_id: int, key: str | None = None) -> dict[str, Any]:
        answer = self.server.request("GET", f"/schedules/{schedule_id}", key=key)
        assert answer.status == 200, (answer.status, answer.body)
        data: dict[str, Any] = answer.json
        return data

    def cli(self, *argv: str, **settings: str) -> Done:
        return in_process(self.backend, "schedules", *argv, "--app", self.app, **settings)


JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def node(module_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    app, other = unique("sched"), unique("other")
    keys = [
        created_key(in_process(module_backend, "create-app", "--name", name))
        for name in (app, other)
    ]
    workdir = tmp_path_factory.mktemp("cli-schedules")
    with server_for(module_backend, workdir, NTORQUE_REQUEUE_INTERVAL=str(LOOK_S)) as server:
        server.key = keys[0]
        yield Node(server, module_backend, app, keys[0], other, keys[1])


def hook_path(kind: str) -> str:
    return f"/status/200/cli-schedules-{kind}-{uuid.uuid4().hex}"


def hook(hooks: HookServer, kind: str) -> str:
    return hooks.url(hook_path(kind))


def printed(done: Done) -> Any:
    assert (done.returncode, done.stderr) == (0, ""), done.stderr  # no log chatter either
    return json.loads(done.stdout)


def when(iso: str) -> str:
    """A time of the JSON as the text lines print it."""
    return iso.replace("T", " ").removesuffix("+00:00") + " UTC"


def test_list_and_show_print_the_apis_json_and_a_table(node: Node, hooks: HookServer) -> None:
    named = node.make({"name": "weekday report", **WEEKDAYS, "task": {"url": hook(hooks, "a")}})
    daily = node.make({"every_s": 86400, "catch_up": "all", "task": {"url": hook(hooks, "b")}})
    ids = {named["id"], daily["id"]}
    listed = printed(node.cli("list", "--json"))
    api = node.server.request("GET", "/schedules").json
    assert listed["next_cursor"] is None
    assert [s for s in listed["schedules"] if s["id"] in ids] == [
        s for s in api["schedules"] if s["id"] in ids
    ]
    assert [s["id"] for s in listed["schedules"]][:2] == [daily["id"], named["id"]]  # newest first
    assert printed(node.cli("show", str(named["id"]), "--json")) == named
    assert printed(node.cli("show", str(daily["id"]), "--json")) == daily

    table = node.cli("list").stdout.splitlines()
    assert re.split(r"\s{2,}", table[0]) == ["ID", "NAME", "RULE", "NEXT TICK", "STATE"]
    rows = {int(line.split()[0]): re.split(r"\s{2,}", line) for line in table[1:]}
    assert rows[named["id"]] == [
        str(named["id"]), "weekday report", "At 09:00 on Monday through Friday (Europe/Paris)",
        when(named["next_tick"]), "active",
    ]  # fmt: skip
    assert rows[daily["id"]][1:3] == ["-", "Every day"]


def test_show_prints_the_rule_the_next_ticks_and_the_task(node: Node, hooks: HookServer) -> None:
    url = hook(hooks, "show")
    made = node.make({"name": "weekly digest", **WEEKDAYS, "task": {"url": url, "method": "PUT"}})
    shown = node.cli("show", str(made["id"]))
    assert shown.returncode == 0, shown.stderr
    first, *rest = [when(tick) for tick in made["next_ticks"]]
    assert shown.stdout.splitlines() == [
        f"schedule {made['id']} 'weekly digest': active",
        "  rule:       At 09:00 on Monday through Friday (Europe/Paris)",
        "  catch up:   latest",
        f"  task:       PUT {url} (queue default)",
        "  last tick:  -",
        f"  next ticks: {first}",
        *(f"              {tick}" for tick in rest),
        "  last tasks: none",
    ]


def test_pause_and_resume_print_the_schedule(node: Node, hooks: HookServer) -> None:
    made = node.make({"every_s": 3600, "task": {"url": hook(hooks, "pause")}})
    schedule_id = str(made["id"])
    paused = printed(node.cli("pause", schedule_id, "--json"))
    assert (paused["paused"], paused["next_tick"]) == (True, made["next_tick"])  # its tick kept
    assert node.get(made["id"])["paused"] is True
    resumed = node.cli("resume", schedule_id)
    assert resumed.stdout.startswith(f"schedule {schedule_id}: active\n"), resumed.stdout
    after = node.get(made["id"])
    assert (after["paused"], after["next_tick"]) == (False, made["next_tick"])


def test_schedule_commands_refuse_what_they_cannot_do(node: Node, hooks: HookServer) -> None:
    theirs = node.make({"every_s": 3600, "task": {"url": hook(hooks, "theirs")}}, node.other_key)
    for action in ("show", "pause", "resume"):
        missing = node.cli(action, "999999")
        refused(missing, "no schedule 999999")
        assert missing.returncode == 1
        refused(node.cli(action, str(theirs["id"])), f"no schedule {theirs['id']}")  # another app's
    assert node.get(theirs["id"], node.other_key)["paused"] is False
    refused(in_process(node.backend, "schedules", "list"), "--app")  # authentication is on
    refused(in_process(node.backend, "schedules", "list", "--app", "nobody"), "nobody")
    for bad in ("x", "0", "-1", str(2**63)):
        refused(node.cli("show", bad), "invalid schedule id value")


def test_schedules_of_no_application_when_authentication_is_off(node: Node) -> None:
    """With authentication off, requests make schedules of no application (0)."""
    schedule_id = make_in_store(node.backend, app_id=0)
    off = {"NTORQUE_AUTHENTICATE": "false"}
    listed = printed(in_process(node.backend, "schedules", "list", "--json", **off))
    assert schedule_id in [s["id"] for s in listed["schedules"]]
    shown = printed(
        in_process(node.backend, "schedules", "show", str(schedule_id), "--json", **off)
    )
    assert (shown["id"], shown["every_s"]) == (schedule_id, 60.0)
    refused(node.cli("show", str(schedule_id)), "no schedule")


def make_in_store(backend: Backend, app_id: int) -> int:
    """A schedule stored as POST /schedules stores one (every minute)."""

    async def make() -> int:
        made = database.make_engine(Settings(database_url=backend.database_url))
        try:
            now = time.time()
            settings = schedules.settings_from_json({"every_s": 60}, None, now)
            stored = await Store(made).schedules.create(app_id, settings, Template.of(spec()), now)
            assert stored is not None
            return stored.id
        finally:
            await made.dispose()

    return services.run_async(make())


def test_a_serving_node_sees_a_pause_and_a_resume_at_its_next_look(
    node: Node, hooks: HookServer
) -> None:
    """The command changes the database; the node it does not share a process
    with stops ticking, then ticks again, within a look of its ticker."""
    path = hook_path("ticks")
    made = node.make({"every_s": 1, "catch_up": "none", "task": {"url": hooks.url(path)}})
    schedule_id = str(made["id"])
    hooks.wait_for_calls(path, 1)
    paused = launched(node.server.command("schedules", "pause", schedule_id, "--app", node.app))
    assert paused.stdout.startswith(f"schedule {schedule_id}: paused\n"), paused
    count = len(tasks_of(node, schedule_id))
    time.sleep(LOOK_S + 1.5)  # a look and more than a tick: the pause holds
    assert len(tasks_of(node, schedule_id)) == count
    assert node.cli("resume", schedule_id).returncode == 0
    deadline = time.monotonic() + 10
    while len(tasks_of(node, schedule_id)) == count:
        assert time.monotonic() < deadline, "no tick after the resume"
        time.sleep(0.1)
    newest = tasks_of(node, schedule_id)[0]
    assert node.server.wait_for(newest["id"])["status"] == "completed"
    shown = node.cli("show", schedule_id).stdout
    assert f"task {newest['id']} completed (1 attempt, last answer 200)" in shown
    assert node.server.request("DELETE", f"/schedules/{schedule_id}").status == 204


def tasks_of(node: Node, schedule_id: str) -> list[dict[str, Any]]:
    """The tasks the schedule made, newest first (GET /tasks?schedule_id=)."""
    found: list[dict[str, Any]] = node.server.request(
        "GET", f"/tasks?schedule_id={schedule_id}&limit=1000"
    ).json["tasks"]
    return found
