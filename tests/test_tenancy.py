"""Application A's key against application B's tasks, on every route: the
API, every console page and action, and the live socket. Nothing leaks
(404, like a missing task) and nothing changes.

The walk is checked against the server's own route table, so a route added
later without a place here fails this test.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import tornado.httpclient

from ntorque import api, console
from tests.conftest import Backend, live_for
from tests.console_session import (
    Session,
    close,
    connected,
    first_of,
    open_socket,
    read_until,
    shows,
    task_ids,
)
from tests.inprocess import LiveNode

# Every route pattern, and how this test visits it with B's task id.
API_WALK = {
    r"/tasks?/(\d{1,18})": [
        ("GET", "/task/{id}"),
        ("GET", "/tasks/{id}"),
        ("DELETE", "/tasks/{id}"),
    ],
    r"/tasks?/(\d{1,18})/(cancel|retry)": [
        ("POST", "/tasks/{id}/cancel"),
        ("POST", "/task/{id}/retry"),
    ],
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
# The live socket: what a page tells it it watches (a task page: its task).
SOCKET_WALK = {r"/console/socket": ["task={id}"]}
# Routes that take no task id: what they show is checked below.
NO_TASK_ID = {
    r"/",
    r"/console/?",
    r"/console/login",
    r"/console/logout",
    r"/tasks",
    r"/tasks/(cancel|retry)",
    r"/console/tasks/(cancel|retry)",
    # A queue name, in the viewer's own namespace: another application's queue
    # of the same name stays as it was (tests/console/test_queues.py).
    r"/console/queues/([A-Za-z0-9_.-]{1,64})/(pause|resume)",
}


def route_patterns() -> set[str]:
    patterns = {spec.regex.pattern.rstrip("$") for spec in api.routes()}
    console_routes = console.routes(None)  # type: ignore[arg-type]
    patterns |= {spec.regex.pattern.rstrip("$") for spec in console_routes}
    return {p for p in patterns if not p.startswith(console.STATIC_PREFIX)}


def test_the_walk_covers_every_route() -> None:
    assert route_patterns() == set(API_WALK) | set(CONSOLE_WALK) | set(SOCKET_WALK) | NO_TASK_ID


async def snapshot(node: LiveNode, task_id: int, key: str) -> dict[str, Any]:
    return await node.task(task_id, key=key)


async def test_application_a_sees_and_changes_nothing_of_application_b(
    backend: Backend,
) -> None:
    # A web-only node performs nothing, so B's task stays exactly as it was
    # unless a request of A's changes it.
    async with live_for(backend, loops=False, auth_cache_s=0) as node:
        _, key_a = await node.create_app("a")
        _, key_b = await node.create_app("b")
        secret_url = "http://127.0.0.1:9/b-only-hook"
        made = await node.request(
            "POST", f"/?url={secret_url}", b"b's body", {"Idempotency-Key": "shared"}, key_b
        )
        task = json.loads(made.body)
        before = await snapshot(node, task["id"], key_b)

        for walk in API_WALK.values():
            for method, path in walk:
                body = b"" if method == "POST" else None
                answer = await node.request(method, path.format(id=task["id"]), body, None, key_a)
                assert answer.status == 404, (method, path, answer.status)
                assert json.loads(answer.body)["status"] == 404
                assert secret_url.encode() not in answer.body

        await lists_and_bulk_actions_see_only_their_own(node, key_a, task["id"])

        session = Session(node)
        await session.login(key_a)
        for walk in CONSOLE_WALK.values():
            for method, path in walk:
                form = await session_form(session, method)
                page = await session.request(method, path.format(id=task["id"]), form)
                assert page.status == 404, (method, path, page.status)
                assert secret_url not in page.text
        await console_bulk_actions_see_only_their_own(session)
        cookie = session.cookie_header
        for walk in SOCKET_WALK.values():
            for watch in walk:
                with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
                    await open_socket(node, cookie, watch=watch.format(id=task["id"]))
                assert refused.value.code == 404, watch
        for query in ("", f"q={task['id']}", "q=b-only-hook", "status=pending"):
            page = await session.get(f"/console?{query}")
            assert page.status == 200 and secret_url not in page.text, query
            # The socket of that page starts with what the page shows: none of B's.
            sock, _ = await connected(node, cookie, query)
            rows = await first_of(sock, "page")
            assert task["id"] not in task_ids([rows]) and secret_url not in json.dumps(rows)
            await close(sock)

        sock, first = await connected(node, cookie)
        another = await node.enqueue(secret_url, b"more", key=key_b)
        # A's own task, enqueued after B's, reaches A's socket after B's change
        # was sent: A has then seen everything it could have seen of B's.
        own = await node.enqueue("http://127.0.0.1:9/a-hook", b"a's", key=key_a)
        messages = [first, *await read_until(sock, shows(own["id"], "pending"))]
        for message in messages:
            assert secret_url not in json.dumps(message)
        assert another["id"] not in task_ids(messages)
        await close(sock)

        assert await snapshot(node, task["id"], key_b) == before
        assert (await snapshot(node, another["id"], key_b))["status"] == "pending"


async def lists_and_bulk_actions_see_only_their_own(
    node: LiveNode, key_a: str, b_task_id: int
) -> None:
    """/tasks lists A's tasks only; A's bulk actions match none of B's; an
    idempotency key is A's own, whatever B sent with the same one."""
    own = await node.request(
        "POST", "/?url=http://127.0.0.1:9/a-hook", b"a", {"Idempotency-Key": "shared"}, key_a
    )
    assert own.status == 201
    own_id = json.loads(own.body)["id"]
    listed = json.loads((await node.request("GET", "/tasks", None, None, key_a)).body)
    assert [task["id"] for task in listed["tasks"]] == [own_id]
    assert b_task_id != own_id
    for action in ("retry", "cancel"):
        answer = await node.request("POST", f"/tasks/{action}", b"{}", None, key_a)
        assert json.loads(answer.body) == {"matched": 1, "changed": int(action == "cancel")}


async def console_bulk_actions_see_only_their_own(session: Session) -> None:
    """The console's "retry/cancel all shown" in A's session match A's tasks
    only (A's one task was cancelled above), whichever filter: B's pending
    task, whose url A names, stays as it was (checked at the end)."""
    expected = {
        "cancel?status=pending": (0, 0),
        "cancel?match=prefix&q=http://127.0.0.1:9/b-only": (0, 0),
        "cancel?match=prefix&q=http://127.0.0.1:9/": (1, 0),
        "retry?status=cancelled": (1, 1),
        "cancel?status=pending&match=prefix&q=http": (1, 1),
    }
    for action, (matched, changed) in expected.items():
        page = await session.post(f"/console/tasks/{action}")
        assert page.status == 303, (action, page.status)
        assert f"matched={matched}&changed={changed}" in page.location, (action, page.location)


async def session_form(session: Session, method: str) -> dict[str, str] | None:
    return {"_xsrf": await session.xsrf_token()} if method == "POST" else None
