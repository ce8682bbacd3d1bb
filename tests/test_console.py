"""The web console's pages, as a browser sees them: login, tenancy, filters,
actions, security headers. One real `python -m ntorque` per backend."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Backend, server_for
from tests.console_session import Session, create_app
from tests.hookserver import HookServer
from tests.server import NtorqueServer

SETTINGS = {
    "NTORQUE_AUTH_CACHE": "0",
    "NTORQUE_MIN_DUE_DELAY": "300",  # a 500 leaves its task pending for a while
    "HSTS_PROTOCOL_HEADER": "X-Forwarded-Proto",
}


@dataclass
class Apps:
    server: NtorqueServer
    a: str
    b: str
    admin: str


@pytest.fixture(scope="module")
def apps(module_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    workdir = tmp_path_factory.mktemp(f"console-{module_backend.name}")
    with server_for(module_backend, workdir, (), **SETTINGS) as server:
        suffix = uuid.uuid4().hex[:6]
        yield Apps(
            server,
            create_app(server, f"a-{suffix}"),
            create_app(server, f"b-{suffix}"),
            create_app(server, f"root-{suffix}", "--admin"),
        )


def logged_in(apps: Apps, key: str) -> Session:
    session = Session(apps.server)
    session.login(key)
    return session


def hook(hooks: HookServer, code: int = 200) -> str:
    return hooks.url(f"/status/{code}/console-{uuid.uuid4().hex}")


def wait(
    apps: Apps, task_id: int, key: str, statuses: tuple[str, ...] = ("completed", "failed")
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    task = apps.server.task(task_id, key=key)
    while task["status"] not in statuses:
        assert time.monotonic() < deadline, task
        time.sleep(0.05)
        task = apps.server.task(task_id, key=key)
    return task


def completed_count(page_text: str) -> int:
    found = re.search(r'data-stat="completed">([\d,]+)<', page_text)
    assert found, page_text
    return int(found.group(1).replace(",", ""))


def rows(page_text: str) -> set[int]:
    return {int(n) for n in re.findall(r'<tr id="task-(\d+)"', page_text)}


# -- reaching the console ---------------------------------------------------


def test_a_browser_asking_for_root_goes_to_the_console(apps: Apps) -> None:
    page = Session(apps.server).get("/")
    assert page.status == 302 and page.location == "/console"
    api = apps.server.request("GET", "/")  # a program still gets the JSON banner
    assert api.status == 200 and "ntorque" in api.json["message"]


def test_pages_and_socket_need_a_login(apps: Apps) -> None:
    visitor = Session(apps.server)
    for path in ("/console", "/console/task/1"):
        page = visitor.get(path)
        assert page.status == 302 and page.location == "/console/login", path
    assert visitor.get("/console/socket", Upgrade="websocket").status in (400, 403)
    login = visitor.get("/console/login")
    assert login.status == 200 and 'name="key"' in login.text


def test_login_refuses_a_bad_key_and_a_missing_xsrf_token(apps: Apps) -> None:
    visitor = Session(apps.server)
    bad = visitor.post("/console/login", {"key": "not-a-key"})
    assert bad.status == 403 and "not valid" in bad.text
    assert "ntorque_console" not in visitor.cookies
    forged = Session(apps.server).post("/console/login", {"key": apps.a}, xsrf=False)
    assert forged.status == 403
    assert "ntorque_console" not in visitor.cookies


def test_login_cookie_is_signed_httponly_samesite_and_secure_over_https(apps: Apps) -> None:
    session = Session(apps.server)
    page = session.login(apps.a)
    (cookie,) = [c for c in page.cookies() if c.startswith("ntorque_console=")]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    behind_tls = Session(apps.server)
    token = behind_tls.xsrf_token()
    answer = behind_tls.request(
        "POST", "/console/login", {"key": apps.a, "_xsrf": token}, X_Forwarded_Proto="https"
    )
    (secure,) = [c for c in answer.cookies() if c.startswith("ntorque_console=")]
    assert "Secure" in secure
    tampered = Session(apps.server, {"ntorque_console": session.cookies["ntorque_console"] + "x"})
    assert tampered.get("/console").status == 302


def test_logout_ends_the_session(apps: Apps) -> None:
    session = logged_in(apps, apps.a)
    assert session.get("/console").status == 200
    out = session.post("/console/logout")
    assert out.status == 303
    assert session.get("/console").status == 302


def test_pages_set_a_strict_content_security_policy_and_have_no_inline_code(
    apps: Apps, hooks: HookServer
) -> None:
    session = logged_in(apps, apps.a)
    task = apps.server.enqueue(hook(hooks), b"x", key=apps.a)
    for path in ("/console", f"/console/task/{task['id']}", "/console/login"):
        page = session.get(path)
        csp = page.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp, csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Referrer-Policy"]
        assert not re.search(r"<script(?![^>]*\ssrc=)", page.text), path
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", page.text), path
    static = session.get("/console/static/console.js")
    assert static.status == 200 and "WebSocket" in static.text
    assert session.get("/console/static/__init__.py").status == 404


# -- what each application sees ---------------------------------------------


def test_an_application_sees_only_its_own_tasks_and_an_admin_sees_all(
    apps: Apps, hooks: HookServer
) -> None:
    mine = apps.server.enqueue(hook(hooks), b"a", key=apps.a)
    theirs = apps.server.enqueue(hook(hooks), b"b", key=apps.b)
    a_page = logged_in(apps, apps.a).get("/console")
    assert a_page.status == 200
    assert mine["id"] in rows(a_page.text) and theirs["id"] not in rows(a_page.text)
    b = logged_in(apps, apps.b)
    assert b.get(f"/console/task/{mine['id']}").status == 404
    assert b.get(f"/console?q={mine['id']}").text.count(f'id="task-{mine["id"]}"') == 0
    admin = logged_in(apps, apps.admin).get("/console")
    assert {mine["id"], theirs["id"]} <= rows(admin.text)
    assert "admin" in admin.text


def test_dashboard_shows_counts_throughput_and_recent_tasks(apps: Apps, hooks: HookServer) -> None:
    task = apps.server.enqueue(hook(hooks), key=apps.a)
    wait(apps, task["id"], apps.a)
    session = logged_in(apps, apps.a)
    page = session.get("/console")
    for stat in ("pending", "in_progress", "due_now", "oldest_due_age_s", "completed", "failed"):
        assert f'data-stat="{stat}"' in page.text
    deadline = time.monotonic() + 5  # the counts may be up to a second old
    while completed_count(page.text) < 1:
        assert time.monotonic() < deadline, page.text
        time.sleep(0.2)
        page = session.get("/console")
    assert page.text.count('<rect class="completed"') == 30
    row = re.search(rf'<tr id="task-{task["id"]}".*?</tr>', page.text, re.S)
    assert row and "st-completed" in row.group(0) and ">200<" in row.group(0)


def test_filter_by_status_search_by_url_or_id_and_page_through(
    apps: Apps, hooks: HookServer
) -> None:
    marker = uuid.uuid4().hex[:10]
    made = [
        apps.server.enqueue(hooks.url(f"/status/400/{marker}-{n}"), key=apps.a)["id"]
        for n in range(3)
    ]
    for task_id in made:
        wait(apps, task_id, apps.a)
    other = apps.server.enqueue(hook(hooks), key=apps.a)["id"]
    session = logged_in(apps, apps.a)
    failed = session.get("/console?status=failed")
    assert set(made) <= rows(failed.text) and other not in rows(failed.text)
    found = session.get(f"/console?q={marker.upper()}")  # case does not matter
    assert rows(found.text) == set(made)
    by_id = session.get(f"/console?q={made[1]}")
    assert rows(by_id.text) == {made[1]}
    older = session.get(f"/console?q={marker}&before={made[1]}")
    assert rows(older.text) == {made[0]}
    assert session.get("/console?status=nonsense").status == 400


# -- one task and its actions -----------------------------------------------


def test_task_page_shows_the_request_and_every_attempt(apps: Apps, hooks: HookServer) -> None:
    url = hook(hooks, 200)
    task = apps.server.enqueue(
        url,
        b'{"hello": "console <b>"}',
        {"Content-Type": "application/json", "NTORQUE-PASSTHROUGH-X-Trace": "t-1"},
        key=apps.a,
    )
    wait(apps, task["id"], apps.a)
    page = logged_in(apps, apps.a).get(f"/console/task/{task['id']}")
    assert page.status == 200
    for text in (url, "application/json", "X-Trace", "t-1", "24 bytes", "POST"):
        assert text in page.text, text
    assert "&lt;b&gt;" in page.text and "<b>" not in page.text  # escaped
    attempts = re.search(r'<table class="tasks" id="attempts">.*?</table>', page.text, re.S)
    assert attempts and attempts.group(0).count("<tr>") == 2  # a header and one attempt
    assert ">200<" in attempts.group(0)
    assert 'id="retry"' not in page.text and 'id="cancel"' not in page.text


def test_cancel_a_pending_task(apps: Apps, hooks: HookServer) -> None:
    task = apps.server.enqueue(hook(hooks, 500), key=apps.a)
    wait(apps, task["id"], apps.a, ("pending",))
    pending = apps.server.task(task["id"], key=apps.a)
    while pending["retry_count"] == 0:  # wait for the first attempt to be settled
        pending = apps.server.task(task["id"], key=apps.a)
    b = logged_in(apps, apps.b)
    assert b.post(f"/console/task/{task['id']}/cancel").status == 404
    a = logged_in(apps, apps.a)
    assert 'id="cancel"' in a.get(f"/console/task/{task['id']}").text
    assert a.post(f"/console/task/{task['id']}/cancel", xsrf=False).status == 403
    done = a.post(f"/console/task/{task['id']}/cancel")
    assert done.status == 303 and done.location == f"/console/task/{task['id']}"
    cancelled = apps.server.task(task["id"], key=apps.a)
    assert cancelled["status"] == "failed" and "cancelled" in cancelled["last_error"]
    again = a.post(f"/console/task/{task['id']}/cancel")
    assert again.status == 409 and "cannot cancel" in again.text


def test_retry_a_failed_task_now(apps: Apps, hooks: HookServer) -> None:
    path = f"/status/400/console-{uuid.uuid4().hex}"
    task = apps.server.enqueue(hooks.url(path), key=apps.a)
    assert wait(apps, task["id"], apps.a)["status"] == "failed"
    assert logged_in(apps, apps.b).post(f"/console/task/{task['id']}/retry").status == 404
    a = logged_in(apps, apps.a)
    assert a.post(f"/console/task/{task['id']}/retry").status == 303
    deadline = time.monotonic() + 30
    while len(hooks.calls(path)) < 2 or wait(apps, task["id"], apps.a)["retry_count"] < 2:
        assert time.monotonic() < deadline, hooks.calls(path)
        time.sleep(0.05)
    assert len(hooks.calls(path)) == 2
    attempts = apps.server.request("GET", f"/task/{task['id']}/attempts", key=apps.a).json
    assert [a["number"] for a in attempts["attempts"]] == [1, 2]


def test_admin_may_act_on_any_task(apps: Apps, hooks: HookServer) -> None:
    task = apps.server.enqueue(hook(hooks, 400), key=apps.b)
    wait(apps, task["id"], apps.b)
    admin = logged_in(apps, apps.admin)
    assert admin.get(f"/console/task/{task['id']}").status == 200
    assert admin.post(f"/console/task/{task['id']}/retry").status == 303


def test_failed_logins_are_limited_per_address_like_the_api(
    backend: Backend, tmp_path: Path
) -> None:
    settings = {"NTORQUE_AUTH_FAILURE_LIMIT": "3", "NTORQUE_AUTH_FAILURE_WINDOW": "60"}
    with server_for(backend, tmp_path, (), **settings) as server:
        key = create_app(server, "limited")
        session = Session(server)
        statuses = []
        for attempt in range(4):
            page = session.post("/console/login", {"key": f"wrong-{attempt}"})
            statuses.append(page.status)
        assert statuses == [403, 403, 403, 429]
        assert int(page.headers["Retry-After"]) > 0
        # Even the right key waits now: guessing cannot go on meanwhile.
        assert session.post("/console/login", {"key": key}).status == 429
        # The API counts the same failures.
        assert server.request("GET", "/task/1", None, None, "wrong").status == 429


class BehindTlsProxy(NtorqueServer):
    """Its own requests come through a TLS proxy that says so."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        headers = {"X-Forwarded-Proto": "https", **(kwargs.pop("headers", None) or {})}
        if len(args) > 3:
            args = (*args[:3], {**headers, **(args[3] or {})}, *args[4:])
        else:
            kwargs["headers"] = headers
        return super().request(*args, **kwargs)


def test_console_pages_follow_hsts(backend: Backend, tmp_path: Path) -> None:
    settings = {"NTORQUE_ENABLE_HSTS": "true", "HSTS_PROTOCOL_HEADER": "X-Forwarded-Proto"}
    with BehindTlsProxy(tmp_path, {**backend.environ(), **settings}, ()) as server:
        session = Session(server)
        plain = session.get("/console/login")
        assert plain.status == 301
        assert plain.location == f"https://127.0.0.1:{server.port}/console/login"
        proxied = session.get("/console/login", X_Forwarded_Proto="https")
        assert proxied.status == 200
        assert proxied.headers["Strict-Transport-Security"] == "max-age=31536000"
