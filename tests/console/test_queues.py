"""The console's named queues: a row per queue of the viewer's application
(depth, due now, in flight against its limit, calls per second against its
rate, a paused badge), Pause and Resume through XSRF-checked console posts,
the dashboard's queue filter and queue column, and the rows kept live over
the websocket.

One node per backend in the module's event loop; each test logs in with an
application of its own, so its queues are the ones it made.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import Backend, live_for
from tests.console_session import (
    App,
    Message,
    Page,
    Session,
    close,
    connected,
    first_of,
    new_app,
    paused_badge,
    read_until,
    settled,
    shown_form,
)
from tests.hookserver import HookServer
from tests.inprocess import LiveNode

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Node:
    live: LiveNode

    async def app(self, admin: bool = False) -> App:
        return await new_app(self.live, admin)

    async def put(self, app: App, name: str, **settings: Any) -> None:
        body = json.dumps(settings).encode()
        answer = await self.live.request("PUT", f"/queues/{name}", body, key=app.key)
        assert answer.status == 200, answer.body

    async def queue(self, app: App, name: str) -> dict[str, Any]:
        answer = await self.live.request("GET", f"/queues/{name}", key=app.key)
        assert answer.status == 200, answer.body
        return dict(answer.json)

    async def later(self, app: App, queue: str, hooks: HookServer) -> dict[str, Any]:
        """A task of the queue, due in an hour: pending all along."""
        url = hooks.url(f"/status/200/{queue}-{uuid.uuid4().hex}")
        return await self.live.enqueue(url, key=app.key, queue=queue, delay=3600)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[Node]:
    async with live_for(module_backend, auth_cache_s=0) as live:
        yield Node(live)


def queue_row(page: Page, name: str) -> str:
    found = re.search(rf'<tr id="queue-{re.escape(name)}".*?</tr>', page.text, re.S)
    assert found, (name, page.text)
    return found.group(0)


def cell(row: str, field: str) -> str:
    found = re.search(rf'data-q="{field}"[^>]*>(.*?)</td>', row, re.S)
    assert found, (field, row)
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def shown_queues(page: Page) -> list[str]:
    return re.findall(r'<tr id="queue-([^"]+)" data-queue=', page.text)


def task_rows(page: Page) -> set[int]:
    return {int(n) for n in re.findall(r'<tr id="task-(\d+)"', page.text)}


def named(message: Message, name: str) -> dict[str, Any] | None:
    rows = [q for q in message.get("queues", []) if q["name"] == name]
    return rows[0] if rows else None


def pending(message: Message, name: str) -> int | None:
    row = named(message, name)
    return None if row is None else int(row["figures"]["pending"])


# -- the rows -------------------------------------------------------------------


async def test_a_row_per_queue_of_the_viewers_application(node: Node, hooks: HookServer) -> None:
    mine, other = await node.app(), await node.app()
    await node.put(mine, "mail", max_concurrency=2, rate_per_s=5)
    for _ in range(2):
        await node.later(mine, "mail", hooks)
    await node.later(mine, "reports", hooks)
    await node.later(other, "secret", hooks)
    page = await mine.session.get("/console")
    assert page.status == 200
    assert shown_queues(page) == ["default", "mail", "reports"]  # never another app's
    mail = queue_row(page, "mail")
    assert (cell(mail, "pending"), cell(mail, "due_now")) == ("2", "0")
    assert cell(mail, "in_flight") == "0 / 2"  # in flight against its limit
    assert cell(mail, "calls") == "- / 5"  # not counted before a socket watches
    assert cell(mail, "oldest_due_age_s") == "-"
    reports = queue_row(page, "reports")
    assert (cell(reports, "in_flight"), cell(reports, "calls")) == ("0", "-")  # no limits
    assert not paused_badge(mail) and shown_form(mail, "pause")
    assert not shown_form(mail, "resume")
    assert 'action="/console/queues/mail/pause"' in mail
    assert '<template id="queue-row-template">' in page.text  # for queues that appear later


async def test_pause_and_resume_through_the_console(node: Node, hooks: HookServer) -> None:
    app, other = await node.app(), await node.app()
    await node.later(app, "mail", hooks)
    await node.later(other, "mail", hooks)  # the same name in another namespace
    paused = await app.session.post("/console/queues/mail/pause")
    assert (paused.status, paused.location) == (303, "/console")
    assert (await node.queue(app, "mail"))["paused"] is True
    assert (await node.queue(other, "mail"))["paused"] is False
    row = queue_row(await app.session.get("/console"), "mail")
    assert paused_badge(row) and shown_form(row, "resume") and not shown_form(row, "pause")
    resumed = await app.session.post("/console/queues/mail/resume?status=pending&queue=mail")
    assert (resumed.status, resumed.location) == (303, "/console?status=pending&queue=mail")
    assert (await node.queue(app, "mail"))["paused"] is False
    assert not paused_badge(queue_row(await app.session.get("/console"), "mail"))


async def test_pause_is_refused_without_xsrf_or_a_login(node: Node, hooks: HookServer) -> None:
    app = await node.app()
    await node.later(app, "mail", hooks)
    forged = await app.session.post("/console/queues/mail/pause", xsrf=False)
    assert forged.status == 403
    stranger = await Session(node.live).post("/console/queues/mail/pause")  # XSRF, no login
    assert stranger.status == 403
    assert (await node.queue(app, "mail"))["paused"] is False
    bad = await app.session.post("/console/queues/mail/pause?queue=no%20such")
    assert bad.status == 400  # a bad view changes nothing
    assert (await node.queue(app, "mail"))["paused"] is False
    name = await app.session.post("/console/queues/bad%20name/pause")
    assert name.status == 404


# -- the queue filter -----------------------------------------------------------


async def test_the_dashboard_filters_by_queue(node: Node, hooks: HookServer) -> None:
    app = await node.app()
    mail = [await node.later(app, "mail", hooks) for _ in range(2)]
    report = await node.later(app, "reports", hooks)
    everything = await app.session.get("/console")
    assert task_rows(everything) == {t["id"] for t in [*mail, report]}
    row = re.search(rf'<tr id="task-{report["id"]}".*?</tr>', everything.text, re.S)
    assert row and '<td data-field="queue" class="queue" title="reports">reports</td>' in row[0]
    page = await app.session.get("/console?queue=mail")
    assert task_rows(page) == {t["id"] for t in mail}
    assert 'data-queue="mail"' in page.text  # the page's script filters live rows too
    assert '<option value="mail" selected>mail</option>' in page.text
    assert task_rows(await app.session.get("/console?queue=mail&status=completed")) == set()
    assert (await app.session.get("/console?queue=no%20such")).status == 400
    sock, _ = await connected(node.live, app.session.cookie_header, "queue=mail")
    listed = await first_of(sock, "page")
    assert {t["id"] for t in listed["tasks"]} == {t["id"] for t in mail}
    assert {t["queue"] for t in listed["tasks"]} == {"mail"}
    await close(sock)


async def test_cancel_all_shown_in_a_queue(node: Node, hooks: HookServer) -> None:
    app = await node.app()
    mail = [await node.later(app, "mail", hooks) for _ in range(2)]
    report = await node.later(app, "reports", hooks)
    page = await app.session.get("/console?queue=mail")
    assert 'action="/console/tasks/cancel?queue=mail"' in page.text
    assert "Cancel all tasks of queue mail?" in page.text
    done = await app.session.post("/console/tasks/cancel?queue=mail")
    assert done.status == 303 and "matched=2&changed=2" in done.location
    for task in mail:
        assert (await node.live.task(task["id"], key=app.key))["status"] == "cancelled"
    assert (await node.live.task(report["id"], key=app.key))["status"] == "pending"


# -- live -------------------------------------------------------------------------


async def test_queue_rows_arrive_over_the_socket(node: Node, hooks: HookServer) -> None:
    app = await node.app()
    await node.put(app, "mail", max_concurrency=3)
    sock, _ = await connected(node.live, app.session.cookie_header)
    first = (await read_until(sock, lambda m: m["type"] == "queues"))[-1]
    mail = named(first, "mail")
    assert mail and mail["max_concurrency"] == 3 and mail["paused"] is False
    assert mail["figures"]["pending"] == 0 and mail["calls_per_s"] == 0.0

    await node.later(app, "mail", hooks)  # a change the rows show within the second
    await read_until(sock, lambda m: pending(m, "mail") == 1)
    await node.later(app, "fresh", hooks)  # a queue that appears
    await read_until(sock, lambda m: named(m, "fresh") is not None)

    # Paused through the API (another process could have): shown within the second.
    answer = await node.live.request("POST", "/queues/mail/pause", key=app.key)
    assert answer.status == 200
    await read_until(sock, lambda m: (named(m, "mail") or {}).get("paused") is True, 5)
    await app.session.post("/console/queues/mail/resume")  # through the console
    await read_until(sock, lambda m: (named(m, "mail") or {}).get("paused") is False, 5)
    await close(sock)


async def test_a_task_page_gets_no_queue_rows(node: Node, hooks: HookServer) -> None:
    app = await node.app()
    task = await node.later(app, "mail", hooks)
    sock, _ = await connected(node.live, app.session.cookie_header, f"task={task['id']}")
    got = await read_until(sock, lambda m: m["type"] == "stats")  # a second's messages
    got += await read_until(sock, lambda m: m["type"] == "stats")
    assert "queues" not in {m["type"] for m in got}
    await close(sock)


async def test_calls_per_second_against_the_rate(node: Node, hooks: HookServer) -> None:
    app = await node.app()
    await node.put(app, "fast", rate_per_s=1000)
    sock, _ = await connected(node.live, app.session.cookie_header)
    made = [
        await node.live.enqueue(
            hooks.url(f"/status/200/fast-{uuid.uuid4().hex}"), key=app.key, queue="fast"
        )
        for _ in range(5)
    ]
    for task in made:
        await settled(node.live, task["id"], app.key)

    def counted(message: Message) -> bool:
        fast = named(message, "fast")
        return fast is not None and (fast["calls_per_s"] or 0) > 0

    fast = named((await read_until(sock, counted, 5))[-1], "fast")
    assert fast is not None and fast["rate_per_s"] == 1000.0
    assert 0 < fast["calls_per_s"] <= 5.0  # five calls, over at least a second
    await close(sock)
