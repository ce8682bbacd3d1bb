"""The console's schedules page: a row per schedule of the viewer's
application (its rule in words, catch-up, a paused badge, the next fire
times, the last tick, the outcomes of the last tasks it made, each a link to
its task), everything escaped; Pause and Resume through XSRF-checked console
posts; pages of schedules; the rows kept live over the websocket.

One node per backend in the module's event loop, its loops not running and
its clock moved by hand: a test fires ticks with one ticker round and calls
their hooks with one consumer round. Each test logs in with an application
of its own, so its schedules are the ones it made (another test's round may
fire them too: tests assert on their own schedules only).
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from ntorque.console import schedule_board
from tests.conftest import Backend, live_for
from tests.console_session import (
    App,
    Message,
    Page,
    Session,
    Socket,
    close,
    new_app,
    open_socket,
    paused_badge,
    read,
    read_until,
    shown_form,
)
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode

pytestmark = pytest.mark.asyncio(loop_scope="module")

EVERY_S = 60  # the period of the schedules a test fires: one round per advance


@dataclass
class Node:
    live: LiveNode
    clock: Clock

    async def app(self, admin: bool = False) -> App:
        return await new_app(self.live, admin)

    async def schedule(self, app: App | None, url: str, **body: Any) -> dict[str, Any]:
        body = {"every_s": EVERY_S, **body, "task": {"url": url, **body.get("task", {})}}
        answer = await self.live.request(
            "POST", "/schedules", json.dumps(body).encode(), key=app.key if app else None
        )
        assert answer.status == 201, answer.body
        return dict(answer.json)

    async def get(self, app: App, schedule_id: int) -> dict[str, Any]:
        answer = await self.live.request("GET", f"/schedules/{schedule_id}", key=app.key)
        assert answer.status == 200, answer.body
        return dict(answer.json)

    async def tick(self) -> None:
        """Every schedule's next tick comes, and one ticker round fires it."""
        self.clock.advance(EVERY_S)
        await self.live.running.ticker.round()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[Node]:
    clock = Clock()
    async with live_for(module_backend, auth_cache_s=0, loops=False, clock=clock) as live:
        yield Node(live, clock)


def hook(hooks: HookServer) -> str:
    return hooks.url(f"/status/200/schedule-{uuid.uuid4().hex}")


def row_of(page: Page, schedule_id: int) -> str:
    found = re.search(rf'<tr id="schedule-{schedule_id}".*?</tr>', page.text, re.S)
    assert found, (schedule_id, page.text)
    return found.group(0)


def shown_ids(page: Page) -> list[int]:
    body = page.text.split('<template id="schedule-row-template">')[0]
    return [int(n) for n in re.findall(r'<tr id="schedule-(\d+)"', body)]


def cell(row: str, field: str) -> str:
    found = re.search(rf'<(\w+) [^>]*data-s="{field}"[^>]*>(.*?)</\1>', row, re.S)
    assert found, (field, row)
    text = re.sub(r"<[^>]+>", " ", found.group(2))
    return html.unescape(" ".join(text.split()))


def outcomes(row: str) -> list[tuple[int, str, str]]:
    """(task id, status, code) of each outcome shown, in order."""
    found = re.findall(
        r'<a class="outcome" href="/console/task/(\d+)"[^>]*><span class="badge st-(\w+)">'
        r'[^<]*</span><span class="code">([^<]*)</span></a>',
        row,
    )
    return [(int(task_id), status, code) for task_id, status, code in found]


def when(iso: str) -> str:
    return iso[:19].replace("T", " ")


async def made_by(node: Node, app: App, schedule_id: int) -> list[dict[str, Any]]:
    """The tasks the schedule made, newest first (as the API lists them)."""
    answer = await node.live.request("GET", f"/tasks?schedule_id={schedule_id}", key=app.key)
    assert answer.status == 200, answer.body
    return list(answer.json["tasks"])


# -- the page ---------------------------------------------------------------------


async def test_a_row_per_schedule_of_the_viewers_application(node: Node, hooks: HookServer) -> None:
    mine, other, admin = await node.app(), await node.app(), await node.app(admin=True)
    nightly = await node.schedule(
        mine,
        hook(hooks) + "?a=1&b=<i>",
        name='<b>nightly</b> & "co"',
        cron="0 9 * * 1-5",
        timezone="Europe/Paris",
        catch_up="none",
        every_s=None,
    )
    beat = await node.schedule(mine, hook(hooks))
    hidden = await node.schedule(other, hook(hooks), name="not yours")
    page = await mine.session.get("/console/schedules")
    assert page.status == 200
    assert shown_ids(page) == [beat["id"], nightly["id"]]  # newest first, never another app's
    assert "not yours" not in page.text

    row = row_of(page, nightly["id"])
    assert cell(row, "name") == '<b>nightly</b> & "co"'  # shown as text: escaped
    assert "<b>nightly" not in page.text and "&lt;b&gt;nightly&lt;/b&gt; &amp;" in row
    assert "b=<i>" not in page.text and "b=&lt;i&gt;" in row
    assert cell(row, "description") == "At 09:00 on Monday through Friday (Europe/Paris)"
    assert 'title="0 9 * * 1-5"' in row  # the cron expression itself
    assert cell(row, "catch_up") == "none"
    assert cell(row, "next_ticks") == " ".join(when(t) for t in nightly["next_ticks"][:3])
    assert (cell(row, "last_tick"), cell(row, "outcomes"), outcomes(row)) == ("-", "none yet", [])
    assert not paused_badge(row) and shown_form(row, "pause") and not shown_form(row, "resume")
    assert f'action="/console/schedules/{nightly["id"]}/pause"' in row
    assert cell(row_of(page, beat["id"]), "description") == "Every minute"
    assert f"schedule {beat['id']}" in cell(row_of(page, beat["id"]), "name")  # no name given
    assert '<template id="schedule-row-template">' in page.text  # for schedules that appear

    nothing = await admin.session.get("/console/schedules")  # an admin sees its own only
    assert shown_ids(nothing) == [] and "No schedules" in nothing.text
    assert hidden["id"] not in shown_ids(nothing)
    dashboard = await mine.session.get("/console")
    assert '<a href="/console/schedules" id="nav-schedules"' in dashboard.text


async def test_the_outcomes_of_the_last_tasks_link_to_them(node: Node, hooks: HookServer) -> None:
    app = await node.app()
    first = await node.schedule(app, hook(hooks))
    second = await node.schedule(app, hooks.url(f"/status/503/schedule-{uuid.uuid4().hex}"))
    for _ in range(schedule_board.OUTCOMES + 1):
        await node.tick()
    for _ in range(20):  # every tick's first call (other tests' ticks' too)
        if not await node.live.consume():
            break
    page = await app.session.get("/console/schedules")
    for schedule, status, code in ((first, "completed", "200"), (second, "pending", "503")):
        made = await made_by(node, app, schedule["id"])
        assert len(made) == schedule_board.OUTCOMES + 1
        row = row_of(page, schedule["id"])
        shown = outcomes(row)
        newest = made[: schedule_board.OUTCOMES]
        assert [task_id for task_id, _, _ in shown] == [task["id"] for task in newest]
        assert all((s, c) == (status, code) for _, s, c in shown)  # 503: a retry waits
        assert cell(row, "last_tick") == when(made[0]["schedule_tick"])
        assert (await node.get(app, schedule["id"]))["last_tick"] == made[0]["schedule_tick"]
    task_page = await app.session.get(f"/console/task/{shown[0][0]}")
    assert task_page.status == 200 and f"schedule #{second['id']}" in task_page.text


async def test_pages_of_schedules(
    node: Node, hooks: HookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedule_board, "PAGE_SIZE", 2)
    app = await node.app()
    made = [await node.schedule(app, hook(hooks)) for _ in range(3)]
    newest = await app.session.get("/console/schedules")
    assert shown_ids(newest) == [made[2]["id"], made[1]["id"]]
    assert f'<a id="older" class="" href="/console/schedules?before={made[1]["id"]}">' in (
        newest.text
    )
    older = await app.session.get(f"/console/schedules?before={made[1]['id']}")
    assert shown_ids(older) == [made[0]["id"]]
    assert '<a id="older" class="hidden"' in older.text
    assert f'action="/console/schedules/{made[0]["id"]}/pause?before={made[1]["id"]}"' in (
        older.text
    )


async def test_pause_and_resume_through_the_console(node: Node, hooks: HookServer) -> None:
    app, other = await node.app(), await node.app()
    schedule = await node.schedule(app, hook(hooks))
    theirs = await node.schedule(other, hook(hooks))
    paused = await app.session.post(f"/console/schedules/{schedule['id']}/pause")
    assert (paused.status, paused.location) == (303, "/console/schedules")
    assert (await node.get(app, schedule["id"]))["paused"] is True
    row = row_of(await app.session.get("/console/schedules"), schedule["id"])
    assert paused_badge(row) and shown_form(row, "resume") and not shown_form(row, "pause")
    back = f"/console/schedules?before={schedule['id'] + 1}"
    resumed = await app.session.post(
        f"/console/schedules/{schedule['id']}/resume?before={schedule['id'] + 1}"
    )
    assert (resumed.status, resumed.location) == (303, back)
    assert (await node.get(app, schedule["id"]))["paused"] is False
    assert not paused_badge(row_of(await app.session.get("/console/schedules"), schedule["id"]))
    stranger = await app.session.post(f"/console/schedules/{theirs['id']}/pause")
    assert stranger.status == 404  # another application's, like a missing one
    assert (await node.get(other, theirs["id"]))["paused"] is False


async def test_pause_is_refused_without_xsrf_or_a_login(node: Node, hooks: HookServer) -> None:
    app = await node.app()
    schedule = await node.schedule(app, hook(hooks))
    forged = await app.session.post(f"/console/schedules/{schedule['id']}/pause", xsrf=False)
    assert forged.status == 403
    nobody = await Session(node.live).post(f"/console/schedules/{schedule['id']}/pause")
    assert nobody.status == 403  # an XSRF token, no login
    assert (await node.get(app, schedule["id"]))["paused"] is False
    missing = await app.session.post("/console/schedules/999999999/pause")
    assert missing.status == 404
    login = await Session(node.live).get("/console/schedules")
    assert (login.status, login.location) == (302, "/console/login")


async def test_without_auth_the_page_shows_namespace_0(
    module_backend: Backend, hooks: HookServer
) -> None:
    async with live_for(module_backend, authenticate=False, loops=False) as live:
        shared = Node(live, Clock())
        schedule = await shared.schedule(None, hook(hooks), name="everyone's")
        session = Session(live)
        page = await session.get("/console/schedules")
        assert schedule["id"] in shown_ids(page)
        paused = await session.post(f"/console/schedules/{schedule['id']}/pause")
        assert paused.status == 303
        answer = await live.request("GET", f"/schedules/{schedule['id']}")
        assert answer.json["paused"] is True


# -- live ---------------------------------------------------------------------------


async def test_one_read_per_second_per_page_and_a_fresh_one_after_a_pause_here(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert node.live.running.console is not None
    board = node.live.running.console.hub.schedules
    real, reads = board.scheduler.page, []

    async def counted(namespace: int, limit: int, before: int | None, last_tasks: int) -> Any:
        reads.append((namespace, before))
        return await real(namespace, limit, before, last_tasks=last_tasks)

    monkeypatch.setattr(board.scheduler, "page", counted)
    namespace = 10**9 + uuid.uuid4().int % 10**6  # nobody's: read, found empty
    together = await asyncio.gather(*(board.page(namespace) for _ in range(5)))
    assert reads == [(namespace, None)] and all(page == together[0] for page in together)
    await board.page(namespace, 7)  # another page of it reads its own
    await board.page(namespace + 1)  # and another namespace
    assert len(reads) == 3
    board.stale(namespace)  # a pause here: every page of the namespace afresh
    await board.page(namespace)
    await board.page(namespace, 7)
    await board.page(namespace + 1)
    assert reads[3:] == [(namespace, None), (namespace, 7)]


async def schedules_socket(node: Node, app: App, watch: str = "page=schedules") -> Socket:
    return await open_socket(node.live, app.session.cookie_header, watch=watch)


def row(message: Message, schedule_id: int) -> dict[str, Any] | None:
    rows = [s for s in message.get("schedules", []) if s["id"] == schedule_id]
    return rows[0] if rows else None


def newest_outcome(message: Message, schedule_id: int) -> tuple[int, str, int | None] | None:
    shown = row(message, schedule_id)
    if not shown or not shown["last_tasks"]:
        return None
    task = shown["last_tasks"][0]
    return task["id"], task["status"], task["last_status_code"]


async def test_the_rows_arrive_over_the_socket(node: Node, hooks: HookServer) -> None:
    app = await node.app()
    schedule = await node.schedule(app, hook(hooks), name="beat")
    sock = await schedules_socket(node, app)
    first = await read(sock, time.monotonic() + 10)
    assert first["type"] == "schedules"  # no counts first: the page shows none
    shown = row(first, schedule["id"])
    assert shown and shown["name"] == "beat" and shown["description"] == "Every minute"
    assert shown["paused"] is False and shown["last_tasks"] == []
    assert len(shown["next_ticks"]) == schedule_board.NEXT_TICKS
    assert first["older"] is None

    await node.tick()  # a tick's task, then its outcome: each within the second
    (made,) = await made_by(node, app, schedule["id"])
    got = await read_until(sock, lambda m: newest_outcome(m, schedule["id"]) is not None, 5)
    assert newest_outcome(got[-1], schedule["id"]) == (made["id"], "pending", None)
    await node.live.consume()
    got += await read_until(
        sock, lambda m: newest_outcome(m, schedule["id"]) == (made["id"], "completed", 200), 5
    )
    assert (row(got[-1], schedule["id"]) or {})["last_tick"] == made["schedule_tick"]

    # Paused through the API (another node could have): shown within a couple of seconds.
    answer = await node.live.request("POST", f"/schedules/{schedule['id']}/pause", key=app.key)
    assert answer.status == 200
    got += await read_until(sock, lambda m: (row(m, schedule["id"]) or {}).get("paused"), 3)
    await app.session.post(f"/console/schedules/{schedule['id']}/resume")  # through the console
    got += await read_until(
        sock, lambda m: (row(m, schedule["id"]) or {}).get("paused") is False, 3
    )
    assert {m["type"] for m in got} == {"schedules"}  # no task changes, no counts
    await close(sock)


async def test_a_socket_shows_its_own_page(
    node: Node, hooks: HookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedule_board, "PAGE_SIZE", 1)
    app, other = await node.app(), await node.app()
    older, newer = [await node.schedule(app, hook(hooks)) for _ in range(2)]
    await node.schedule(other, hook(hooks))
    sock = await schedules_socket(node, app, f"page=schedules&before={newer['id']}")
    first = await read(sock, time.monotonic() + 10)
    assert [s["id"] for s in first["schedules"]] == [older["id"]]
    await close(sock)
    sock = await schedules_socket(node, app)
    first = await read(sock, time.monotonic() + 10)
    assert ([s["id"] for s in first["schedules"]], first["older"]) == ([newer["id"]], newer["id"])
    await close(sock)
