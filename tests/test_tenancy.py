"""Application A's key against application B's tasks, on every route: the
API, every console page and action, and the live socket. Nothing leaks
(404, like a missing task) and nothing changes.

The walk is checked against the server's own route table, so a route added
later without a place here fails this test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ntorque import api, console
from tests.conftest import Backend, server_for
from tests.console_session import Session, create_app
from tests.server import NtorqueServer
from tests.test_console_live import close, login_cookie, messages, open_socket

# Every route pattern, and how this test visits it with B's task id.
API_WALK = {
    r"/tasks?/(\d{1,18})": [("GET", "/task/{id}"), ("GET", "/tasks/{id}")],
    r"/tasks?/(\d{1,18})/push": [("POST", "/task/{id}/push")],
    r"/tasks?/(\d{1,18})/attempts": [("GET", "/task/{id}/attempts")],
}
CONSOLE_WALK = {
    r"/console/task/(\d{1,18})": [("GET", "/console/task/{id}")],
    r"/console/task/(\d{1,18})/(retry|cancel)": [
        ("POST", "/console/task/{id}/retry"),
        ("POST", "/console/task/{id}/cancel"),
    ],
}
# Routes that take no task id: what they show is checked below.
NO_TASK_ID = {
    r"/", r"/console/?", r"/console/login", r"/console/logout", r"/console/socket",
}  # fmt: skip


def route_patterns() -> set[str]:
    patterns = {spec.regex.pattern.rstrip("$") for spec in api.routes()}
    console_routes = console.routes(None)  # type: ignore[arg-type]
    patterns |= {spec.regex.pattern.rstrip("$") for spec in console_routes}
    return {p for p in patterns if not p.startswith(console.STATIC_PREFIX)}


def test_the_walk_covers_every_route() -> None:
    assert route_patterns() == set(API_WALK) | set(CONSOLE_WALK) | NO_TASK_ID


def snapshot(server: NtorqueServer, task_id: int, key: str) -> dict[str, Any]:
    return server.task(task_id, key=key)


async def test_application_a_sees_and_changes_nothing_of_application_b(
    backend: Backend, tmp_path: Path
) -> None:
    # A web-only node performs nothing, so B's task stays exactly as it was
    # unless a request of A's changes it.
    with server_for(backend, tmp_path, ("--role", "web"), NTORQUE_AUTH_CACHE="0") as server:
        key_a, key_b = create_app(server, "a"), create_app(server, "b")
        secret_url = "http://127.0.0.1:9/b-only-hook"
        task = server.enqueue(secret_url, b"b's body", key=key_b)
        before = snapshot(server, task["id"], key_b)

        for walk in API_WALK.values():
            for method, path in walk:
                body = b"" if method == "POST" else None
                answer = server.request(method, path.format(id=task["id"]), body, None, key_a)
                assert answer.status == 404, (method, path, answer.status)
                assert json.loads(answer.body)["status"] == 404
                assert secret_url.encode() not in answer.body

        session = Session(server)
        session.login(key_a)
        for walk in CONSOLE_WALK.values():
            for method, path in walk:
                page = session.request(
                    method, path.format(id=task["id"]), session_form(session, method)
                )
                assert page.status == 404, (method, path, page.status)
                assert secret_url not in page.text
        for listing in ("/console", f"/console?q={task['id']}", "/console?q=b-only-hook",
                        "/console?status=pending"):  # fmt: skip
            page = session.get(listing)
            assert page.status == 200 and secret_url not in page.text, listing

        sock = await open_socket(server, login_cookie(server, key_a))
        another = server.enqueue(secret_url, b"more", key=key_b)
        for message in await messages(sock, 2.0):
            assert secret_url not in json.dumps(message)
        await close(sock)

        assert snapshot(server, task["id"], key_b) == before
        assert snapshot(server, another["id"], key_b)["status"] == "pending"


def session_form(session: Session, method: str) -> dict[str, str] | None:
    return {"_xsrf": session.xsrf_token()} if method == "POST" else None
