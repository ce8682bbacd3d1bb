"""The console's task control: the cancelled status, the task page's schedule,
policy, callbacks and Retry-After, the actions each status allows, and the
dashboard's "retry all shown" / "cancel all shown" on a filtered view.

One node per backend in the module's event loop (a 500 leaves its task
pending for five minutes); each bulk test logs in with an application of its
own, so what it matches is what it made.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio

from tests.conftest import Backend, live_for
from tests.console_session import (
    Page,
    Session,
    close,
    connected,
    first_of,
    logged_in,
    read_until,
    retrying,
    settled,
)
from tests.hookserver import HookServer
from tests.inprocess import LiveNode

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETTINGS = {"auth_cache_s": 0, "min_due_delay_s": 300}


@dataclass
class Node:
    live: LiveNode
    admin: str

    async def app(self) -> tuple[str, Session]:
        """A new application's key and its console session."""
        _, key = await self.live.create_app()
        return key, await logged_in(self.live, key)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[Node]:
    async with live_for(module_backend, **SETTINGS) as live:
        _, admin = await live.create_app("root", admin=True)
        yield Node(live, admin)


def rows(page: Page) -> set[int]:
    return {int(n) for n in re.findall(r'<tr id="task-(\d+)"', page.text)}


def form(page: Page, action: str) -> str:
    found = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>', page.text)
    assert found, (action, page.text)
    return found.group(0)


def when(page: Page, statuses: str) -> str:
    """The task page's action form shown while the task's status is one of these."""
    found = re.search(rf'<form[^>]*data-when="{statuses}"[^>]*>', page.text)
    assert found, (statuses, page.text)
    return found.group(0)


def fact(page: Page, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page.text, re.S)
    assert found, (element_id, page.text)
    return found.group(1).strip()


# -- cancelled, everywhere a status shows -------------------------------------


async def test_cancelled_has_its_own_count_filter_and_badge(node: Node, hooks: HookServer) -> None:
    key, session = await node.app()
    task = await node.live.enqueue(hooks.url(f"/status/500/{uuid.uuid4().hex}"), key=key)
    await settled(node.live, task["id"], key, retrying)
    assert (await session.post(f"/console/task/{task['id']}/cancel")).status == 303
    page = await session.get("/console")
    assert 'data-stat="cancelled"' in page.text and "Cancelled" in page.text
    assert '<option value="cancelled">cancelled</option>' in page.text
    assert '<rect class="cancelled"' in page.text
    row = re.search(rf'<tr id="task-{task["id"]}".*?</tr>', page.text, re.S)
    assert row and '<span class="badge st-cancelled">cancelled</span>' in row.group(0)
    assert rows(await session.get("/console?status=cancelled")) == {task["id"]}
    assert rows(await session.get("/console?status=failed")) == set()
    css = await session.get("/console/static/console.css")
    assert ".badge.st-cancelled" in css.text and "--cancelled" in css.text


async def test_the_socket_shows_a_task_turn_cancelled(node: Node, hooks: HookServer) -> None:
    key, session = await node.app()
    task = await node.live.enqueue(hooks.url(f"/status/500/{uuid.uuid4().hex}"), key=key)
    await settled(node.live, task["id"], key, retrying)
    sock, first = await connected(node.live, session.cookie_header, "status=pending")
    assert "cancelled" in first["stats"]
    await first_of(sock, "page")
    await session.post(f"/console/task/{task['id']}/cancel")

    def cancelled(message: dict[str, object]) -> bool:
        changes = message.get("tasks") or []
        assert isinstance(changes, list)
        return any(t["id"] == task["id"] and t["status"] == "cancelled" for t in changes)

    await read_until(sock, cancelled)
    await close(sock)


# -- one task's page ---------------------------------------------------------------


async def test_a_scheduled_task_shows_when_it_is_due_and_its_policy(
    node: Node, hooks: HookServer
) -> None:
    key, session = await node.app()
    task = await node.live.enqueue(
        hooks.url("/status/200/later"), key=key, delay=3600, retries=3, backoff="linear"
    )
    page = await session.get(f"/console/task/{task['id']}")
    assert task["due"][:19].replace("T", " ") in page.text
    assert re.fullmatch(r"\((in 60 min|in 59 min)\)", fact(page, "due-in")), fact(page, "due-in")
    assert fact(page, "retries") == "3 attempts" and fact(page, "backoff") == "linear"
    # Pending: it may run now or be cancelled; nothing to retry.
    assert "hidden" not in when(page, "pending") and 'id="run-now"' in page.text
    assert "hidden" in when(page, "failed cancelled")
    cancel = form(page, f"/console/task/{task['id']}/cancel")
    assert 'data-when="pending in_progress"' in cancel and "hidden" not in cancel
    plain = await node.live.enqueue(hooks.url("/status/200/now"), key=key, delay=3600)
    other = await session.get(f"/console/task/{plain['id']}")
    assert 'id="retries"' not in other.text and 'id="backoff"' not in other.text


async def test_run_now_calls_a_scheduled_task_at_once(node: Node, hooks: HookServer) -> None:
    key, session = await node.app()
    path = f"/status/200/run-now-{uuid.uuid4().hex}"
    task = await node.live.enqueue(hooks.url(path), key=key, delay=3600)
    assert (await session.post(f"/console/task/{task['id']}/retry")).status == 303
    assert (await settled(node.live, task["id"], key))["status"] == "completed"
    page = await session.get(f"/console/task/{task['id']}")
    assert fact(page, "due-in") == ""


async def test_a_cancelled_task_may_be_retried_from_its_page(node: Node, hooks: HookServer) -> None:
    key, session = await node.app()
    path = f"/status/200/again-{uuid.uuid4().hex}"
    task = await node.live.enqueue(hooks.url(path), key=key, delay=3600)
    await session.post(f"/console/task/{task['id']}/cancel")
    page = await session.get(f"/console/task/{task['id']}")
    assert "hidden" not in when(page, "failed cancelled") and 'id="retry"' in page.text
    assert "hidden" in when(page, "pending")
    assert "hidden" in form(page, f"/console/task/{task['id']}/cancel")
    assert (await session.post(f"/console/task/{task['id']}/retry")).status == 303
    assert (await settled(node.live, task["id"], key))["status"] == "completed"
    assert len(hooks.calls(path)) == 1


async def test_callbacks_are_linked_both_ways(node: Node, hooks: HookServer) -> None:
    key, session = await node.app()
    callback = hooks.url(f"/status/200/callback-{uuid.uuid4().hex}")
    task = await node.live.enqueue(
        hooks.url("/status/200/with-callback"), key=key, callback=callback
    )
    ended = await settled(node.live, task["id"], key, lambda t: t["callback_task_id"] is not None)
    page = await session.get(f"/console/task/{task['id']}")
    shown = re.search(r'<dd id="callback-url">(.*?)</dd>', page.text)
    assert shown and callback in shown.group(1)
    made = ended["callback_task_id"]
    assert f'<a href="/console/task/{made}">callback task #{made}</a>' in page.text
    sock, _ = await connected(node.live, session.cookie_header, f"task={task['id']}")
    shown = await first_of(sock, "task")
    assert shown["task"]["callback_task_id"] == ended["callback_task_id"]
    assert shown["task"]["callback_url"] == callback
    await close(sock)
    back = await session.get(f"/console/task/{ended['callback_task_id']}")
    assert f'<a href="/console/task/{task["id"]}">callback of task #{task["id"]}</a>' in back.text
    assert 'id="callback-url"' not in back.text  # a callback gets no callback of its own


async def test_the_attempts_table_shows_retry_after(node: Node, hooks: HookServer) -> None:
    key, session = await node.app()
    busy = hooks.url(f"/retry-after/503/30/s/{uuid.uuid4().hex}")
    task = await node.live.enqueue(busy, key=key)
    await settled(node.live, task["id"], key, retrying)
    page = await session.get(f"/console/task/{task['id']}")
    assert "Retry after" in page.text
    attempts = re.search(r'<tbody id="attempt-rows">.*?</tbody>', page.text, re.S)
    assert attempts and '<td class="num">30 s</td>' in attempts.group(0)
    script = await session.get("/console/static/console.js")
    assert "retry_after_s" in script.text


# -- retry all shown, cancel all shown -----------------------------------------------


async def pending_tasks(node: Node, hooks: HookServer, key: str, path: str, n: int) -> list[int]:
    """n tasks of key's whose first attempt failed (500): pending for five minutes."""
    made = [(await node.live.enqueue(hooks.url(f"{path}/{i}"), key=key))["id"] for i in range(n)]
    for task_id in made:
        await settled(node.live, task_id, key, retrying)
    return made


async def test_bulk_is_offered_only_on_a_view_it_can_select_exactly(node: Node) -> None:
    _, session = await node.app()
    everything = await session.get("/console")
    assert 'id="bulk"' not in everything.text
    by_status = await session.get("/console?status=failed")
    # Each button only where it can change something.
    assert 'id="retry-all"' in by_status.text and 'id="cancel-all"' not in by_status.text
    waiting = await session.get("/console?status=in_progress")
    assert 'id="retry-all"' not in waiting.text and 'id="cancel-all"' in waiting.text
    assert 'id="bulk"' not in (await session.get("/console?status=completed")).text
    any_state = await session.get("/console?match=prefix&q=https://example.org/")
    assert 'id="retry-all"' in any_state.text and 'id="cancel-all"' in any_state.text
    retry = form(by_status, "/console/tasks/retry?status=failed")
    assert 'data-confirm="Retry all failed tasks?' in retry
    assert "every page of this view" in retry
    contains = await session.get("/console?q=example")
    assert 'id="bulk"' not in contains.text and 'id="bulk-hint"' in contains.text
    prefix = "https://example.org/a b&c"
    starts = await session.get(f"/console?status=pending&match=prefix&q={quote(prefix)}")
    cancel = form(
        starts,
        "/console/tasks/cancel?status=pending&amp;q=https%3A%2F%2Fexample.org%2Fa+b%26c&amp;match=prefix",
    )
    assert "pending tasks whose url starts with https://example.org/a b&amp;c" in cancel
    by_id = await session.get("/console?q=12")
    assert 'id="bulk"' not in by_id.text


async def test_bulk_refuses_a_view_it_cannot_select_and_a_missing_xsrf_token(
    node: Node,
) -> None:
    _, session = await node.app()
    for query in ("", "?q=example", "?q=12", "?status=nonsense"):
        answer = await session.post(f"/console/tasks/cancel{query}")
        assert answer.status == 400, (query, answer.status)
    forged = await session.post("/console/tasks/cancel?status=pending", xsrf=False)
    assert forged.status == 403
    assert (await Session(node.live).post("/console/tasks/cancel?status=pending")).status == 403


async def test_cancel_all_shown_by_status_then_retry_all_shown(
    node: Node, hooks: HookServer
) -> None:
    key, session = await node.app()
    other_key, _ = await node.app()
    path = f"/status/500/bulk-{uuid.uuid4().hex}"
    mine = await pending_tasks(node, hooks, key, path, 3)
    theirs = await pending_tasks(node, hooks, other_key, path, 1)
    done = await session.post("/console/tasks/cancel?status=pending")
    assert done.status == 303
    assert done.location == "/console?status=pending&done=cancel&matched=3&changed=3"
    notice = await session.get(done.location)
    assert fact(notice, "bulk-done") == "Cancel all shown: matched 3, changed 3."
    assert rows(notice) == set()  # none pending any more
    for task_id in mine:
        assert (await node.live.task(task_id, key=key))["status"] == "cancelled"
    assert (await node.live.task(theirs[0], key=other_key))["status"] == "pending"
    again = await session.post("/console/tasks/retry?status=cancelled")
    assert again.location == "/console?status=cancelled&done=retry&matched=3&changed=3"
    for task_id in mine:  # called again now: its second attempt fails (500) and it waits
        again_waiting = await settled(node.live, task_id, key, second_attempt_settled)
        assert (again_waiting["status"], again_waiting["retry_count"]) == ("pending", 2)


def second_attempt_settled(task: dict[str, Any]) -> bool:
    return bool(task["retry_count"] >= 2 and task["status"] != "in_progress")


async def test_bulk_by_url_prefix_acts_on_that_prefix_only(node: Node, hooks: HookServer) -> None:
    key, session = await node.app()
    marker = uuid.uuid4().hex
    orders = await pending_tasks(node, hooks, key, f"/status/500/orders-{marker}", 2)
    emails = await pending_tasks(node, hooks, key, f"/status/500/emails-{marker}", 1)
    prefix = hooks.url(f"/status/500/orders-{marker}")
    view = f"/console?match=prefix&q={quote(prefix)}"
    page = await session.get(view)
    assert rows(page) == set(orders)
    assert "Filters look through" not in page.text  # the listing's index, not a span of ids
    upper = await session.get(f"/console?match=prefix&q={quote(prefix.upper())}")
    assert rows(upper) == set()  # starts with, exactly
    done = await session.post(f"/console/tasks/cancel?match=prefix&q={quote(prefix, safe='')}")
    assert done.status == 303 and "matched=2&changed=2" in done.location
    assert f"q={quote(prefix, safe='')}" in done.location and "match=prefix" in done.location
    for task_id in orders:
        assert (await node.live.task(task_id, key=key))["status"] == "cancelled"
    assert (await node.live.task(emails[0], key=key))["status"] == "pending"


async def test_an_admin_acts_on_every_applications_tasks(node: Node, hooks: HookServer) -> None:
    key, _ = await node.app()
    other_key, _ = await node.app()
    marker = uuid.uuid4().hex
    first = await pending_tasks(node, hooks, key, f"/status/500/admin-{marker}", 1)
    second = await pending_tasks(node, hooks, other_key, f"/status/500/admin-{marker}", 1)
    admin = await logged_in(node.live, node.admin)
    prefix = quote(hooks.url(f"/status/500/admin-{marker}"), safe="")
    done = await admin.post(f"/console/tasks/cancel?status=pending&match=prefix&q={prefix}")
    assert "matched=2&changed=2" in done.location
    assert (await node.live.task(first[0], key=key))["status"] == "cancelled"
    assert (await node.live.task(second[0], key=other_key))["status"] == "cancelled"
