"""The web console's pages, as a browser sees them: login and its end, what
each application sees, filters, one task and its actions, security headers,
HSTS and the login limit.

One node per backend in the module's event loop serves most tests (auth
cache off; a 500 leaves its task pending for five minutes); the login limit
and HSTS get a node of their own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
import tornado.httpclient

from tests.conftest import Backend, live_for
from tests.console_session import (
    Session,
    close,
    connected,
    logged_in,
    open_socket,
    retried,
    retrying,
    settled,
)
from tests.hookserver import HookServer
from tests.inprocess import LiveNode

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETTINGS = {
    "auth_cache_s": 0,
    "min_due_delay_s": 300,  # a 500 leaves its task pending for a while
    "hsts_protocol_header": "X-Forwarded-Proto",
}


@dataclass
class Apps:
    node: LiveNode
    a: str
    b: str
    admin: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def apps(module_backend: Backend) -> AsyncIterator[Apps]:
    async with live_for(module_backend, **SETTINGS) as node:
        _, a = await node.create_app("a")
        _, b = await node.create_app("b")
        _, admin = await node.create_app("root", admin=True)
        yield Apps(node, a, b, admin)


def hook(hooks: HookServer, code: int = 200) -> str:
    return hooks.url(f"/status/{code}/console-{uuid.uuid4().hex}")


def completed_count(page_text: str) -> int:
    found = re.search(r'data-stat="completed">([\d,]+)<', page_text)
    assert found, page_text
    return int(found.group(1).replace(",", ""))


def due_cell(page_text: str, task_id: int) -> str:
    row = re.search(rf'<tr id="task-{task_id}".*?</tr>', page_text, re.S)
    assert row, page_text
    cell = re.search(r'<td data-field="due"[^>]*>([^<]*)</td>', row.group(0))
    assert cell, row.group(0)
    return cell.group(1)


def rows(page_text: str) -> set[int]:
    return {int(n) for n in re.findall(r'<tr id="task-(\d+)"', page_text)}


# -- reaching the console ---------------------------------------------------


async def test_a_browser_asking_for_root_goes_to_the_console(apps: Apps) -> None:
    page = await Session(apps.node).get("/")
    assert page.status == 302 and page.location == "/console"
    api = await apps.node.request("GET", "/")  # a program still gets the JSON banner
    assert api.status == 200 and "ntorque" in api.json["message"]


async def test_pages_and_socket_need_a_login(apps: Apps) -> None:
    visitor = Session(apps.node)
    for path in ("/console", "/console/task/1"):
        page = await visitor.get(path)
        assert page.status == 302 and page.location == "/console/login", path
    assert (await visitor.get("/console/socket", Upgrade="websocket")).status in (400, 403)
    login = await visitor.get("/console/login")
    assert login.status == 200 and 'name="key"' in login.text


async def test_login_refuses_a_bad_key_and_a_missing_xsrf_token(apps: Apps) -> None:
    visitor = Session(apps.node)
    bad = await visitor.post("/console/login", {"key": "not-a-key"})
    assert bad.status == 401 and "not valid" in bad.text  # no valid key: 401, like the API
    assert 'name="key"' in bad.text  # the form again, to try another
    assert "ntorque_console" not in visitor.cookies
    forged = await Session(apps.node).post("/console/login", {"key": apps.a}, xsrf=False)
    assert forged.status == 403
    assert "ntorque_console" not in visitor.cookies


async def test_login_cookie_is_signed_httponly_samesite_and_secure_over_https(
    apps: Apps,
) -> None:
    session = Session(apps.node)
    page = await session.login(apps.a)
    (cookie,) = [c for c in page.cookies() if c.startswith("ntorque_console=")]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    behind_tls = Session(apps.node)
    token = await behind_tls.xsrf_token()
    answer = await behind_tls.request(
        "POST", "/console/login", {"key": apps.a, "_xsrf": token}, X_Forwarded_Proto="https"
    )
    (secure,) = [c for c in answer.cookies() if c.startswith("ntorque_console=")]
    assert "Secure" in secure
    tampered = Session(apps.node, {"ntorque_console": session.cookies["ntorque_console"] + "x"})
    assert (await tampered.get("/console")).status == 302


async def test_logout_ends_the_session(apps: Apps) -> None:
    session = await logged_in(apps.node, apps.a)
    assert (await session.get("/console")).status == 200
    out = await session.post("/console/logout")
    assert out.status == 303
    assert (await session.get("/console")).status == 302


async def assert_logged_out(session: Session, cookie: str) -> None:
    """The page sends the session to the login, an action is refused, the socket too."""
    page = await session.get("/console")
    assert page.status == 302 and page.location == "/console/login"
    assert (await session.post("/console/task/1/retry")).status == 403
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await open_socket(session.node, cookie)
    assert refused.value.code == 403


async def test_a_new_key_ends_the_applications_console_logins(apps: Apps) -> None:
    name, key = await apps.node.create_app()
    session = await logged_in(apps.node, key)
    cookie = session.cookie_header
    sock, _ = await connected(apps.node, cookie)  # the login works, socket included
    await close(sock)
    new_key = await apps.node.apps.rotate_key(name)  # as `rotate-key` does
    await assert_logged_out(session, cookie)
    assert (await Session(apps.node).post("/console/login", {"key": key})).status == 401
    again = await logged_in(apps.node, new_key)
    assert (await again.get("/console")).status == 200


async def test_deactivating_the_application_ends_its_console_logins(apps: Apps) -> None:
    name, key = await apps.node.create_app()
    session = await logged_in(apps.node, key)
    cookie = session.cookie_header
    sock, _ = await connected(apps.node, cookie)
    await close(sock)
    await apps.node.apps.set_active(name, False)  # as `deactivate-app` does
    await assert_logged_out(session, cookie)
    assert (await Session(apps.node).post("/console/login", {"key": key})).status == 401


async def test_pages_set_a_strict_content_security_policy_and_have_no_inline_code(
    apps: Apps, hooks: HookServer
) -> None:
    session = await logged_in(apps.node, apps.a)
    task = await apps.node.enqueue(hook(hooks), b"x", key=apps.a)
    for path in ("/console", f"/console/task/{task['id']}", "/console/login"):
        page = await session.get(path)
        csp = page.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp, csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Referrer-Policy"]
        assert not re.search(r"<script(?![^>]*\ssrc=)", page.text), path
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", page.text), path
    login = await Session(apps.node).get("/console/login")  # the session above is sent on
    for page in (login, await session.get("/console"), await session.get("/console/schedules")):
        assert '<a href="/openapi.json" id="nav-openapi"' in page.text  # in every page's nav
    api = await session.get("/openapi.json")  # where the link leads: the API's own document
    assert api.status == 200 and api.headers["Content-Type"].startswith("application/json")
    assert json.loads(api.text)["openapi"].startswith("3.")
    static = await session.get("/console/static/console.js")
    assert static.status == 200 and "WebSocket" in static.text
    assert (await session.get("/console/static/__init__.py")).status == 404


# -- what each application sees ---------------------------------------------


async def test_an_application_sees_only_its_own_tasks_and_an_admin_sees_all(
    apps: Apps, hooks: HookServer
) -> None:
    mine = await apps.node.enqueue(hook(hooks), b"a", key=apps.a)
    theirs = await apps.node.enqueue(hook(hooks), b"b", key=apps.b)
    a_page = await (await logged_in(apps.node, apps.a)).get("/console")
    assert a_page.status == 200
    assert mine["id"] in rows(a_page.text) and theirs["id"] not in rows(a_page.text)
    b = await logged_in(apps.node, apps.b)
    assert (await b.get(f"/console/task/{mine['id']}")).status == 404
    searched = await b.get(f"/console?q={mine['id']}")
    assert searched.status == 200 and searched.text.count(f'id="task-{mine["id"]}"') == 0
    admin = await (await logged_in(apps.node, apps.admin)).get("/console")
    assert {mine["id"], theirs["id"]} <= rows(admin.text)
    assert "admin" in admin.text


async def test_dashboard_shows_counts_throughput_and_recent_tasks(
    apps: Apps, hooks: HookServer
) -> None:
    task = await apps.node.enqueue(hook(hooks), key=apps.a)
    waiting = await apps.node.enqueue(hook(hooks, 500), key=apps.a)
    await settled(apps.node, task["id"], apps.a)
    waiting = await settled(apps.node, waiting["id"], apps.a, retrying)
    session = await logged_in(apps.node, apps.a)
    page = await session.get("/console")
    for stat in ("pending", "in_progress", "due_now", "oldest_due_age_s", "completed", "failed"):
        assert f'data-stat="{stat}"' in page.text
    deadline = time.monotonic() + 5  # the counts may be up to a second old
    while completed_count(page.text) < 1:
        assert time.monotonic() < deadline, page.text
        await asyncio.sleep(0.1)
        page = await session.get("/console")
    assert page.text.count('<rect class="completed"') == 30
    row = re.search(rf'<tr id="task-{task["id"]}".*?</tr>', page.text, re.S)
    assert row and "st-completed" in row.group(0) and ">200<" in row.group(0)
    # A finished task is due no more (its due date is its last lease): "-".
    assert due_cell(page.text, task["id"]) == "-"
    assert due_cell(page.text, waiting["id"]) == waiting["due"][:19].replace("T", " ")


async def test_throughput_chart_has_a_time_axis(apps: Apps) -> None:
    """Labels at the start and end of the chart's five minutes and every minute
    between (UTC, like every time in the console)."""
    page = await (await logged_in(apps.node, apps.a)).get("/console")
    now = time.time()
    axis = re.search(r'<div id="chart-axis".*?</div>', page.text, re.S)
    assert axis and "UTC" in axis.group(0)
    labels = re.findall(r'<span class="tick t\d">(\d\d):(\d\d):(\d\d)</span>', axis.group(0))
    seconds = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in labels]
    assert len(seconds) == 6
    assert [(b - a) % 86400 for a, b in itertools.pairwise(seconds)] == [60] * 5
    assert seconds[0] % 10 == 0  # a bucket's start
    end_offset = (seconds[-1] - now % 86400 + 43200) % 86400 - 43200
    assert -3 <= end_offset <= 10, end_offset  # the end of the current 10 s bucket


async def test_filter_by_status_search_by_url_or_id_and_page_through(
    apps: Apps, hooks: HookServer
) -> None:
    marker = "m" + uuid.uuid4().hex[:10]  # never all digits: that would be an id search
    made = [
        (await apps.node.enqueue(hooks.url(f"/status/400/{marker}-{n}"), key=apps.a))["id"]
        for n in range(3)
    ]
    for task_id in made:
        await settled(apps.node, task_id, apps.a)
    other = (await apps.node.enqueue(hook(hooks), key=apps.a))["id"]
    session = await logged_in(apps.node, apps.a)
    failed = await session.get("/console?status=failed")
    assert set(made) <= rows(failed.text) and other not in rows(failed.text)
    hint = "Filters look through the 100,000 most recent tasks at a time; Older looks further back."
    assert hint in failed.text and "task ids per page" not in failed.text
    assert "below id" not in failed.text
    found = await session.get(f"/console?q={marker.upper()}")  # case does not matter
    assert rows(found.text) == set(made)
    by_id = await session.get(f"/console?q={made[1]}")
    assert rows(by_id.text) == {made[1]}
    older = await session.get(f"/console?q={marker}&before={made[1]}")
    assert rows(older.text) == {made[0]}
    assert "Filters look through 100,000 tasks at a time, older ones here;" in older.text
    assert (await session.get("/console?status=nonsense")).status == 400


# -- one task and its actions -----------------------------------------------


async def test_task_page_shows_the_request_and_every_attempt(apps: Apps, hooks: HookServer) -> None:
    url = hook(hooks, 200)
    task = await apps.node.enqueue(
        url,
        b'{"hello": "console <b>"}',
        {"Content-Type": "application/json", "NTORQUE-PASSTHROUGH-X-Trace": "t-1"},
        key=apps.a,
    )
    await settled(apps.node, task["id"], apps.a)
    page = await (await logged_in(apps.node, apps.a)).get(f"/console/task/{task['id']}")
    assert page.status == 200
    for text in (url, "application/json", "X-Trace", "t-1", "24 bytes", "POST"):
        assert text in page.text, text
    assert "&lt;b&gt;" in page.text and "<b>" not in page.text  # escaped
    attempts = re.search(r'<table class="tasks" id="attempts">.*?</table>', page.text, re.S)
    assert attempts and attempts.group(0).count("<tr>") == 2  # a header and one attempt
    assert ">200<" in attempts.group(0)
    assert 'id="retry"' not in page.text and 'id="cancel"' not in page.text


async def test_cancel_a_pending_task(apps: Apps, hooks: HookServer) -> None:
    task = await apps.node.enqueue(hook(hooks, 500), key=apps.a)
    await settled(apps.node, task["id"], apps.a, retrying)
    b = await logged_in(apps.node, apps.b)
    assert (await b.post(f"/console/task/{task['id']}/cancel")).status == 404
    a = await logged_in(apps.node, apps.a)
    page = await a.get(f"/console/task/{task['id']}")
    form = re.search(r'<form[^>]*action="[^"]*/cancel"[^>]*>', page.text)
    assert form and 'id="cancel"' in page.text
    # console.js asks before it sends the form (CSP: no inline script, so no onsubmit=).
    assert 'data-confirm="Cancel task ' in form.group(0)
    script = await a.get("/console/static/console.js")
    assert "data-confirm" in script.text and "confirm(" in script.text
    assert (await a.post(f"/console/task/{task['id']}/cancel", xsrf=False)).status == 403
    done = await a.post(f"/console/task/{task['id']}/cancel")
    assert done.status == 303 and done.location == f"/console/task/{task['id']}"
    cancelled = await apps.node.task(task["id"], key=apps.a)
    assert cancelled["status"] == "cancelled" and cancelled["due"] is None
    again = await a.post(f"/console/task/{task['id']}/cancel")
    assert again.status == 409 and "cannot cancel" in again.text


async def test_retry_a_failed_task_now(apps: Apps, hooks: HookServer) -> None:
    path = f"/status/400/console-{uuid.uuid4().hex}"
    task = await apps.node.enqueue(hooks.url(path), key=apps.a)
    assert (await settled(apps.node, task["id"], apps.a))["status"] == "failed"
    b = await logged_in(apps.node, apps.b)
    assert (await b.post(f"/console/task/{task['id']}/retry")).status == 404
    a = await logged_in(apps.node, apps.a)
    assert (await a.post(f"/console/task/{task['id']}/retry")).status == 303
    await hooks.wait_for_calls_async(path, 2)
    again = await settled(apps.node, task["id"], apps.a, retried)
    assert again["retry_count"] == 2
    assert len(hooks.calls(path)) == 2
    answer = await apps.node.request("GET", f"/task/{task['id']}/attempts", key=apps.a)
    assert [a["number"] for a in answer.json["attempts"]] == [1, 2]


async def test_admin_may_act_on_any_task(apps: Apps, hooks: HookServer) -> None:
    task = await apps.node.enqueue(hook(hooks, 400), key=apps.b)
    await settled(apps.node, task["id"], apps.b)
    admin = await logged_in(apps.node, apps.admin)
    assert (await admin.get(f"/console/task/{task['id']}")).status == 200
    assert (await admin.post(f"/console/task/{task['id']}/retry")).status == 303


# -- limits and transport: a node of their own, on each backend ---------------


async def test_failed_logins_are_limited_per_address_like_the_api(backend: Backend) -> None:
    async with live_for(backend, auth_failure_limit=3, auth_failure_window_s=60) as node:
        _, key = await node.create_app("limited")
        session = Session(node)
        statuses = []
        for attempt in range(4):
            page = await session.post("/console/login", {"key": f"wrong-{attempt}"})
            statuses.append(page.status)
        assert statuses == [401, 401, 401, 429]
        assert int(page.headers["Retry-After"]) > 0
        # Even the right key waits now: guessing cannot go on meanwhile.
        assert (await session.post("/console/login", {"key": key})).status == 429
        # The API counts the same failures.
        assert (await node.request("GET", "/task/1", key="wrong")).status == 429


async def test_console_pages_follow_hsts(backend: Backend) -> None:
    settings = {"enable_hsts": True, "hsts_protocol_header": "X-Forwarded-Proto"}
    async with live_for(backend, **settings) as node:
        session = Session(node)
        plain = await session.get("/console/login")
        assert plain.status == 301
        assert plain.location == f"https://127.0.0.1:{node.port}/console/login"
        proxied = await session.get("/console/login", X_Forwarded_Proto="https")
        assert proxied.status == 200
        assert proxied.headers["Strict-Transport-Security"] == "max-age=31536000"
