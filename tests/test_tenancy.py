"""Application A's key against application B's tasks, on every route: the
API, every console page and action, and the live socket. Nothing leaks
(404, like a missing task) and nothing changes. Queue names are each
application's own: A's requests on B's queue's name read and change A's
queue of that name, never B's (its settings, figures, tasks and limits).
B's schedules are B's alone: every schedule route is a 401 without a key
and a 404 with A's, B's schedule stays as it was, and the tasks its ticks
make are B's tasks (A's listings and actions never meet them).

The walk is checked against the server's own route table, so a route added
later without a place here fails this test.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
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
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode

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
# Routes of a queue, visited with the name of B's queue, in this order, and
# the status each gets: A has no queue of that name (404) until A's PUT
# makes A's own; A's pause and resume change A's own.
QUEUE_WALK: dict[str, list[tuple[str, str, bytes | None, int]]] = {
    r"/queues/([^/]+)": [
        ("GET", "/queues/{name}", None, 404),
        ("PATCH", "/queues/{name}", b'{"paused": false, "max_concurrency": 1}', 404),
        ("DELETE", "/queues/{name}", None, 404),
        ("PUT", "/queues/{name}", b'{"max_concurrency": 1}', 200),
    ],
    r"/queues/([^/]+)/(pause|resume)": [
        ("POST", "/queues/{name}/pause", b"", 200),
        ("POST", "/queues/{name}/resume", b"", 200),
        ("POST", "/queues/{name}/pause", b"", 200),
    ],
}
# Routes of a schedule, visited with the id of B's schedule: every one is a
# 404 for A (with bodies that would change a schedule of A's), and leaves
# B's schedule as it was.
SCHEDULE_WALK: dict[str, list[tuple[str, str, bytes | None]]] = {
    r"/schedules/(\d{1,18})": [
        ("GET", "/schedules/{id}", None),
        ("PATCH", "/schedules/{id}", b'{"paused": true, "name": "a", "every_s": 60}'),
        ("PATCH", "/schedules/{id}", b'{"task": {"url": "http://127.0.0.1:9/a-hook"}}'),
        ("PATCH", "/schedules/{id}", b'{"timezone": "Asia/Tokyo"}'),
        ("PATCH", "/schedules/{id}", b"{}"),
        ("DELETE", "/schedules/{id}", None),
    ],
    r"/schedules/(\d{1,18})/(pause|resume)": [
        ("POST", "/schedules/{id}/pause", b""),
        ("POST", "/schedules/{id}/resume", b""),
    ],
}
# The console's pause and resume of a schedule, in A's session with the id of
# B's schedule: 404 (tests/console/test_schedules.py has the rest).
CONSOLE_SCHEDULE_WALK = {
    r"/console/schedules/(\d{1,18})/(pause|resume)": [
        "/console/schedules/{id}/pause",
        "/console/schedules/{id}/resume",
    ],
}
# Every schedule route, without a key and with a wrong one: 401 (a body
# that would make or change one is not read).
KEYLESS_WALK: dict[str, list[tuple[str, str, bytes | None]]] = {
    r"/schedules": [
        ("GET", "/schedules", None),
        ("POST", "/schedules", b'{"every_s": 60, "task": {"url": "http://127.0.0.1:9/x"}}'),
    ],
    **SCHEDULE_WALK,
}
# Routes that take no task id: what they show is checked below.
NO_TASK_ID = {
    r"/",
    r"/console/?",
    r"/console/login",
    r"/console/logout",
    r"/tasks",
    r"/tasks/(cancel|retry)",
    r"/console/tasks/(cancel|retry)",
    r"/queues",
    # A queue name, in the viewer's own namespace: another application's queue
    # of the same name stays as it was (tests/console/test_queues.py).
    r"/console/queues/([A-Za-z0-9_.-]{1,64})/(pause|resume)",
    # The caller's own schedules (listing, create): B's never show in A's.
    r"/schedules",
    # The viewer's own schedules: B's never show in A's page (checked below).
    r"/console/schedules",
    # Health probes: no key, no task, nothing of any application's (tests/api/test_health.py).
    r"/healthz",
    r"/readyz",
    # Every application's figures: the metrics token's or an admin key's only
    # (tests/test_metrics.py).
    r"/metrics",
    # The OpenAPI document: the API's shape, nothing of any application's.
    r"/openapi\.json",
}


def route_patterns() -> set[str]:
    patterns = {spec.regex.pattern.rstrip("$") for spec in api.routes()}
    console_routes = console.routes(None)  # type: ignore[arg-type]
    patterns |= {spec.regex.pattern.rstrip("$") for spec in console_routes}
    return {p for p in patterns if not p.startswith(console.STATIC_PREFIX)}


def test_the_walk_covers_every_route() -> None:
    walks = set(API_WALK) | set(CONSOLE_WALK) | set(SOCKET_WALK) | set(QUEUE_WALK)
    walks |= set(SCHEDULE_WALK) | set(CONSOLE_SCHEDULE_WALK)
    assert route_patterns() == walks | NO_TASK_ID
    # Every schedule route is also walked without a key.
    assert {p for p in route_patterns() if p.startswith("/schedules")} == set(KEYLESS_WALK)


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
        queue_before = await b_configures_a_queue(node, key_b, secret_url)

        for walk in API_WALK.values():
            for method, path in walk:
                body = b"" if method == "POST" else None
                answer = await node.request(method, path.format(id=task["id"]), body, None, key_a)
                assert answer.status == 404, (method, path, answer.status)
                assert json.loads(answer.body)["status"] == 404
                assert secret_url.encode() not in answer.body

        await a_walks_the_queue_of_b(node, key_a, key_b, queue_before)
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
        assert await queue_of(node, B_QUEUE, key_b) == queue_before


# B's queue: its name, settings no default has (so they cannot be met by
# chance), and a task due in an hour (its figures do not age meanwhile).
B_QUEUE = "b-mail"
B_SETTINGS = {
    "max_concurrency": 7, "rate_per_s": 3.5, "burst": 5, "retries": 4, "backoff": "linear",
    "timeout": 9,
}  # fmt: skip


async def queue_of(node: LiveNode, name: str, key: str) -> dict[str, Any]:
    answer = await node.request("GET", f"/queues/{name}", None, None, key)
    assert answer.status == 200, (name, answer.status, answer.body)
    return dict(answer.json)


async def b_configures_a_queue(node: LiveNode, key_b: str, url: str) -> dict[str, Any]:
    put = await node.request(
        "PUT", f"/queues/{B_QUEUE}", json.dumps(B_SETTINGS).encode(), None, key_b
    )
    assert put.status == 200, put.body
    paused = await node.request("POST", f"/queues/{B_QUEUE}/pause", b"", None, key_b)
    assert paused.status == 200 and paused.json["paused"] is True
    await node.enqueue(url, b"b's", key=key_b, queue=B_QUEUE, delay=3600)
    queue = await queue_of(node, B_QUEUE, key_b)
    assert queue["figures"]["pending"] == 1 and queue["figures"]["oldest_due_age_s"] is None
    return queue


async def a_walks_the_queue_of_b(
    node: LiveNode, key_a: str, key_b: str, queue_before: dict[str, Any]
) -> None:
    """A's requests on B's queue's name meet A's own queue (none, until A
    makes it): B's settings, figures and times never show, nor change."""
    for walk in QUEUE_WALK.values():
        for method, path, body, status in walk:
            answer = await node.request(method, path.format(name=B_QUEUE), body, None, key_a)
            assert answer.status == status, (method, path, answer.status, answer.body)
            shown = json.loads(answer.body)
            if status == 404:
                assert shown["status"] == 404 and "figures" not in shown, (method, path)
            else:  # A's own: made by A's first PUT, after B's
                assert shown["name"] == B_QUEUE and shown["figures"]["pending"] == 0, shown
                assert shown["created"] > queue_before["created"], (method, path, shown)
                for setting in ("rate_per_s", "burst", "retries", "backoff", "timeout"):
                    assert shown[setting] is None, (method, path, setting, shown)
            assert await queue_of(node, B_QUEUE, key_b) == queue_before, (method, path)
    own = await queue_of(node, B_QUEUE, key_a)
    assert (own["paused"], own["max_concurrency"]) == (True, 1)
    listed = await node.request("GET", "/queues", None, None, key_a)
    by_name = {queue["name"]: queue for queue in listed.json["queues"]}
    assert set(by_name) == {"default", B_QUEUE} and by_name[B_QUEUE] == own
    deleted = await node.request("DELETE", f"/queues/{B_QUEUE}", None, None, key_a)
    assert deleted.status == 204
    assert (await node.request("GET", f"/queues/{B_QUEUE}", None, None, key_a)).status == 404
    assert await queue_of(node, B_QUEUE, key_b) == queue_before


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


# -- one queue name, two applications ---------------------------------------------------


def figures_now(queue: dict[str, Any]) -> dict[str, Any]:
    """A queue's JSON without the one figure that moves with the clock."""
    figures = {k: v for k, v in queue["figures"].items() if k != "oldest_due_age_s"}
    return {**queue, "figures": figures}


async def test_a_queue_name_is_each_applications_own(backend: Backend) -> None:
    """B configures and pauses "mail" and has tasks in it; A's requests on
    "mail" read and change A's own "mail": its settings, its figures, its
    tasks (listing and bulk actions by queue), its defaults for new tasks."""
    async with live_for(backend, loops=False, auth_cache_s=0) as node:
        _, key_a = await node.create_app("a")
        _, key_b = await node.create_app("b")
        url = "http://127.0.0.1:9/hook"
        settings = {"max_concurrency": 2, "rate_per_s": 5, "retries": 4, "backoff": "linear",
                    "timeout": 9}  # fmt: skip
        made = await node.request("PUT", "/queues/mail", json.dumps(settings).encode(), None, key_b)
        assert made.status == 200
        await node.request("POST", "/queues/mail/pause", b"", None, key_b)
        b_tasks = [await node.enqueue(url, key=key_b, queue="mail") for _ in range(2)]
        # B's queue's defaults are B's tasks', not A's.
        assert {(t["timeout"], t["retries"], t["backoff"]) for t in b_tasks} == {(9, 4, "linear")}
        b_mail = figures_now(await queue_of(node, "mail", key_b))
        assert (b_mail["paused"], b_mail["figures"]["pending"]) == (True, 2)

        assert (await node.request("GET", "/queues/mail", None, None, key_a)).status == 404
        a_task = await node.enqueue(url, key=key_a, queue="mail")
        assert (a_task["timeout"], a_task["retries"], a_task["backoff"]) == (60, None, None)
        a_mail = await queue_of(node, "mail", key_a)  # A's task named A's own, unconfigured
        assert a_mail["paused"] is False and a_mail["created"] > b_mail["created"]
        assert a_mail["max_concurrency"] is None and a_mail["rate_per_s"] is None
        assert a_mail["figures"]["pending"] == 1

        changes = [
            ("PUT", "/queues/mail", b'{"max_concurrency": 1, "timeout": 3}'),
            ("PATCH", "/queues/mail", b'{"rate_per_s": 1, "burst": 1}'),
            ("POST", "/queues/mail/resume", b""),
            ("POST", "/queues/mail/pause", b""),
            ("POST", "/queues/mail/resume", b""),
        ]
        for method, path, body in changes:
            answer = await node.request(method, path, body, None, key_a)
            assert answer.status == 200 and answer.json["figures"]["pending"] == 1, answer.body
            assert figures_now(await queue_of(node, "mail", key_b)) == b_mail, (method, path)
        a_mail = await queue_of(node, "mail", key_a)
        assert [a_mail[k] for k in ("paused", "max_concurrency", "rate_per_s", "timeout")] == [
            False,
            1,
            1.0,
            3,
        ]

        for key, ids in ((key_a, [a_task["id"]]), (key_b, [t["id"] for t in b_tasks])):
            listed = await node.request("GET", "/tasks?queue=mail", None, None, key)
            assert [t["id"] for t in listed.json["tasks"]] == sorted(ids, reverse=True)

        # A's bulk actions on "mail" match A's one task, never B's two.
        for action, changed in (("cancel", 1), ("retry", 1), ("cancel", 1)):
            in_query = await node.request("POST", f"/tasks/{action}?queue=mail", b"", None, key_a)
            assert in_query.json == {"matched": 1, "changed": changed}, (action, in_query.body)
        in_body = await node.request("POST", "/tasks/cancel", b'{"queue": "mail"}', None, key_a)
        assert in_body.json == {"matched": 1, "changed": 0}

        # A's delete forgets A's queue; B's, with unfinished tasks, is B's to delete.
        assert (await node.request("DELETE", "/queues/mail", None, None, key_a)).status == 204
        assert (await node.request("DELETE", "/queues/mail", None, None, key_a)).status == 404
        assert figures_now(await queue_of(node, "mail", key_b)) == b_mail
        for task in b_tasks:
            assert (await node.task(task["id"], key=key_b))["status"] == "pending"
        assert (await node.request("DELETE", "/queues/mail", None, None, key_b)).status == 409


async def wait_until_finished(
    node: LiveNode, key: str, ids: list[int], timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    for task_id in ids:
        while (await node.task(task_id, key=key))["status"] != "completed":
            assert time.monotonic() < deadline, f"task {task_id} not completed"
            await asyncio.sleep(0.02)


async def test_a_queues_pause_and_limits_hold_only_its_own_applications_tasks(
    backend: Backend, hooks: HookServer
) -> None:
    """On a live node: B's "mail" is paused, one call at a time, one call a
    day; A's tasks in A's "mail" all run, at once. Then A pauses its "mail"
    and B resumes B's: B's task runs, A's pause holds none of B's."""
    async with live_for(backend, concurrency=20, auth_cache_s=0) as node:
        _, key_a = await node.create_app("a")
        _, key_b = await node.create_app("b")
        limits = b'{"paused": true, "max_concurrency": 1, "rate_per_s": 0.00001, "burst": 1}'
        assert (await node.request("PUT", "/queues/mail", limits, None, key_b)).status == 200
        b_path = f"/status/200/{uuid.uuid4().hex}"
        b_task = await node.enqueue(hooks.url(b_path), key=key_b, queue="mail")

        a_path = f"/slow/0.3/{uuid.uuid4().hex}"
        a_ids = [(await node.enqueue(hooks.url(a_path), key=key_a, queue="mail"))["id"]
                 for _ in range(5)]  # fmt: skip
        await wait_until_finished(node, key_a, a_ids)
        assert len(hooks.calls(a_path)) == 5 and hooks.most_at_once(a_path) > 1
        a_figures = (await queue_of(node, "mail", key_a))["figures"]
        b_figures = (await queue_of(node, "mail", key_b))["figures"]
        assert (a_figures["completed_5m"], a_figures["pending"]) == (5, 0)
        assert (b_figures["completed_5m"], b_figures["pending"]) == (0, 1)
        assert hooks.calls(b_path) == []

        assert (await node.request("POST", "/queues/mail/pause", b"", None, key_a)).status == 200
        resumed = await node.request("POST", "/queues/mail/resume", b"", None, key_b)
        assert resumed.json["paused"] is False
        await wait_until_finished(node, key_b, [b_task["id"]])
        assert len(hooks.calls(b_path)) == 1
        assert (await queue_of(node, "mail", key_a))["paused"] is True


# -- schedules ------------------------------------------------------------------------

B_HOOK = "http://127.0.0.1:9/b-only-schedule"
B_SCHEDULE = {
    "name": "b-minutely", "cron": "* * * * *", "timezone": "Europe/Paris", "catch_up": "all",
    "task": {"url": B_HOOK, "body": "b's body", "headers": {"X-B": "b-only"}, "queue": B_QUEUE,
             "retries": 4},
}  # fmt: skip
A_SCHEDULE = {"every_s": 60, "task": {"url": "http://127.0.0.1:9/a-hook"}}


async def make_schedule(node: LiveNode, body: dict[str, Any], key: str) -> int:
    made = await node.request("POST", "/schedules", json.dumps(body).encode(), None, key)
    assert made.status == 201, made.body
    return int(made.json["id"])


async def schedule_of(node: LiveNode, schedule_id: int, key: str) -> dict[str, Any]:
    answer = await node.request("GET", f"/schedules/{schedule_id}", None, None, key)
    assert answer.status == 200, (schedule_id, answer.status, answer.body)
    return dict(answer.json)


async def ids_listed(node: LiveNode, path: str, key: str, plural: str = "tasks") -> list[int]:
    answer = await node.request("GET", path, None, None, key)
    assert answer.status == 200, (path, answer.status, answer.body)
    assert answer.json["next_cursor"] is None, (path, answer.json)
    return [item["id"] for item in answer.json[plural]]


async def tick(node: LiveNode, clock: Clock) -> None:
    """A minute on: one tick of each schedule (the node's loops do not run)."""
    clock.advance(60)
    await node.running.ticker.round()


async def test_application_a_sees_and_changes_nothing_of_application_bs_schedules(
    backend: Backend,
) -> None:
    """B's schedule and the task its tick made: every schedule route is a
    401 without a valid key and a 404 for A (in the API and in A's console),
    and after each B's schedule is as it was (not paused, deleted or changed:
    it still ticks). A's listings, pages and bulk actions, by schedule or
    not, never meet B's schedule or its tasks."""
    clock = Clock()
    settings = {"auth_cache_s": 0, "auth_failure_limit": 0}  # 401s on purpose: no lock-out
    async with live_for(backend, loops=False, clock=clock, **settings) as node:
        _, key_a = await node.create_app("a")
        _, key_b = await node.create_app("b")
        b_id = await make_schedule(node, B_SCHEDULE, key_b)
        a_id = await make_schedule(node, A_SCHEDULE, key_a)
        await tick(node, clock)
        (b_task,) = await ids_listed(node, f"/tasks?schedule_id={b_id}", key_b)
        (a_task,) = await ids_listed(node, f"/tasks?schedule_id={a_id}", key_a)
        before = await schedule_of(node, b_id, key_b)
        assert [made["id"] for made in before["last_tasks"]] == [b_task]
        task_before = await node.task(b_task, key=key_b)

        await the_schedule_routes_refuse(node, key_a, key_b, b_id, before)
        # The task B's tick made is B's: A's task routes do not find it.
        for walk in API_WALK.values():
            for method, path in walk:
                body = b"" if method == "POST" else None
                answer = await node.request(method, path.format(id=b_task), body, None, key_a)
                assert answer.status == 404, (method, path, answer.status)
                assert B_HOOK.encode() not in answer.body
        assert await ids_listed(node, "/schedules", key_a, "schedules") == [a_id]
        assert await ids_listed(node, "/schedules", key_b, "schedules") == [b_id]
        assert await ids_listed(node, f"/tasks?schedule_id={b_id}", key_a) == []
        assert await ids_listed(node, f"/tasks?schedule_id={a_id}", key_b) == []
        assert await ids_listed(node, "/tasks", key_a) == [a_task]
        for action in ("retry", "cancel"):
            for path, body in (
                (f"/tasks/{action}?schedule_id={b_id}", b""),
                (f"/tasks/{action}", json.dumps({"schedule_id": b_id}).encode()),
            ):
                answer = await node.request("POST", path, body, None, key_a)
                assert answer.json == {"matched": 0, "changed": 0}, (path, answer.body)

        assert await schedule_of(node, b_id, key_b) == before
        assert await node.task(b_task, key=key_b) == task_before
        # Still B's, active and unchanged: it ticks again, as A's does.
        await tick(node, clock)
        b_tasks = await ids_listed(node, f"/tasks?schedule_id={b_id}", key_b)
        assert len(b_tasks) == 2 and b_tasks[1] == b_task
        assert len(await ids_listed(node, f"/tasks?schedule_id={a_id}", key_a)) == 2
        after = await schedule_of(node, b_id, key_b)
        assert {k: v for k, v in after.items() if "tick" not in k and k != "last_tasks"} == {
            k: v for k, v in before.items() if "tick" not in k and k != "last_tasks"
        }


async def the_schedule_routes_refuse(
    node: LiveNode, key_a: str, key_b: str, b_id: int, before: dict[str, Any]
) -> None:
    """Without a valid key every schedule route is a 401; with A's key (or
    in A's console) B's schedule is a 404 on each; after each it is as it
    was. A's page of schedules shows none of B's."""
    for key in ("", "not-a-key"):
        for walk in KEYLESS_WALK.values():
            for method, path, body in walk:
                answer = await node.request(method, path.format(id=b_id), body, None, key)
                assert answer.status == 401, (key, method, path, answer.status)
                assert answer.json["status"] == 401 and B_HOOK.encode() not in answer.body
                assert await schedule_of(node, b_id, key_b) == before, (key, method, path)
    for walk in SCHEDULE_WALK.values():
        for method, path, body in walk:
            answer = await node.request(method, path.format(id=b_id), body, None, key_a)
            assert answer.status == 404, (method, path, answer.status, answer.body)
            assert answer.json["status"] == 404 and B_HOOK.encode() not in answer.body
            assert await schedule_of(node, b_id, key_b) == before, (method, path)
    session = Session(node)
    await session.login(key_a)
    for console_walk in CONSOLE_SCHEDULE_WALK.values():
        for path in console_walk:
            page = await session.post(path.format(id=b_id))
            assert page.status == 404, (path, page.status)
            assert await schedule_of(node, b_id, key_b) == before, path
    page = await session.get("/console/schedules")
    assert page.status == 200 and B_HOOK not in page.text
    assert str(B_SCHEDULE["name"]) not in page.text
