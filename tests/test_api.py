"""The JSON API, as a client sees it: enqueue, task status, push, auth and errors.

The original nTorque's test cases serve as a conformance list; every case runs
against a node in the test's own event loop, on both backends, over HTTP. One
node per backend is shared by the module (auth cache off, small body limit,
short maximum delay).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import pytest_asyncio

from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode
from tests.server import Response

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_BODY = 1000
MAX_DUE_DELAY = 600
SETTINGS = {"auth_cache_s": 0, "max_body_bytes": MAX_BODY, "max_due_delay_s": MAX_DUE_DELAY}
TASK_KEYS = {
    "id",
    "url",
    "status",
    "retry_count",
    "timeout",
    "due",
    "method",
    "created",
    "modified",
    "last_status_code",
    "last_error",
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(module_backend: Backend) -> AsyncIterator[LiveNode]:
    async with live_for(module_backend, **SETTINGS) as running:
        assert running.key
        yield running


def hook_path(prefix: str = "/status/200") -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


async def post(
    server: LiveNode,
    query: dict[str, str],
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    key: str | None = None,
) -> Response:
    return await server.request("POST", "/?" + urlencode(query), body, headers, key)


async def create_app(server: LiveNode) -> tuple[str, str]:
    """A new application (unique name) and its key, made as the command line does."""
    return await server.create_app()


def assert_json_error(response: Response, status: int) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body)
    assert response.headers["Content-Type"].startswith("application/json")
    assert b"Traceback" not in response.body
    data: dict[str, Any] = response.json
    assert data["status"] == status
    assert isinstance(data["error"], str) and data["error"].strip()
    return data


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text
    return moment


async def quiesce(server: LiveNode, hooks: HookServer) -> None:
    """Let the consumer work through everything notified so far.

    The channel is FIFO: once a task enqueued now has completed, every id
    pushed before it has been popped and (if it was due) acquired.
    """
    path = hook_path()
    sentinel = await server.enqueue(hooks.url(path))
    assert (await server.wait_for(sentinel["id"]))["status"] == "completed"


# -- banner, enqueue, status ---------------------------------------------------


async def test_banner(server: LiveNode) -> None:
    response = await server.request("GET", "/", key="")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert "installed" in response.json["message"]


async def test_enqueue_answers_location_and_task(server: LiveNode, hooks: HookServer) -> None:
    path = hook_path()
    before = datetime.now(UTC)
    response = await post(server, {"url": hooks.url(path)}, b"user_id=1234")
    assert response.status == 201, response.body
    created = response.json
    location = response.headers["Location"]
    assert location == f"{server.base_url}/task/{created['id']}"
    assert urlsplit(location).scheme == "http" and urlsplit(location).netloc

    for task_path in (urlsplit(location).path, f"/tasks/{created['id']}"):
        answer = await server.request("GET", task_path)
        assert answer.status == 200, answer.body
        assert answer.headers["Content-Type"].startswith("application/json")
        task = answer.json
        assert TASK_KEYS <= set(task)
        assert task["id"] == created["id"]
        assert task["url"] == hooks.url(path)
        assert task["method"] == "POST"
        assert task["timeout"] == 60
        assert task["status"] in ("pending", "in_progress", "completed")
        for name in ("created", "modified"):
            parse_time(task[name])
        if task["status"] == "completed":
            assert task["due"] is None  # due no more
        else:
            parse_time(task["due"])
        assert abs(parse_time(task["created"]) - before) < timedelta(minutes=5)

    assert created["status"] == "pending"
    assert created["retry_count"] == 0
    assert created["last_status_code"] is None and created["last_error"] is None
    done = await server.wait_for(created["id"])
    assert done["status"] == "completed"
    assert done["retry_count"] == 1
    assert done["last_status_code"] == 200
    (call,) = await hooks.wait_for_calls_async(path, 1)
    assert call.method == "POST"
    assert call.body == b"user_id=1234"


async def test_missing_task_is_404(server: LiveNode) -> None:
    data = assert_json_error(await server.request("GET", "/task/987654321"), 404)
    assert "987654321" in data["error"]
    assert_json_error(await server.request("POST", "/task/987654321/push"), 404)


async def test_post_without_url_is_400(server: LiveNode) -> None:
    data = assert_json_error(await server.request("POST", "/", b"a=1"), 400)
    assert "url" in data["error"]


async def test_not_a_url_is_400(server: LiveNode) -> None:
    data = assert_json_error(await post(server, {"url": "not a url"}), 400)
    assert "url" in data["error"]


async def test_without_authentication_no_key_is_needed(backend: Backend, hooks: HookServer) -> None:
    async with live_for(backend, authenticate=False) as server:
        assert server.key == ""
        data = assert_json_error(await server.request("POST", "/", b"a=1", key=""), 400)
        assert "url" in data["error"]
        path = hook_path()
        task = await server.enqueue(hooks.url(path), b"a=1", key="")
        assert (await server.wait_for(task["id"]))["status"] == "completed"
        assert len(await hooks.wait_for_calls_async(path, 1)) == 1


# -- bodies, content types, methods ----------------------------------------------


async def test_form_body_keeps_its_charset(server: LiveNode, hooks: HookServer) -> None:
    path = hook_path()
    content_type = "application/x-www-form-urlencoded; charset=latin1"
    body = "name=café".encode("latin1")
    task = await server.enqueue(hooks.url(path), body, {"Content-Type": content_type})
    assert task["content_type"] == "application/x-www-form-urlencoded"
    assert task["charset"] == "latin1"
    assert task["body_size"] == len(body)
    assert (await server.wait_for(task["id"]))["status"] == "completed"
    (call,) = await hooks.wait_for_calls_async(path, 1)
    assert call.body == body
    assert call.headers["content-type"] == content_type


async def test_json_body_defaults_to_utf8(server: LiveNode, hooks: HookServer) -> None:
    path = hook_path()
    body = '{"name": "café"}'.encode()
    task = await server.enqueue(hooks.url(path), body, {"Content-Type": "application/json"})
    assert task["content_type"] == "application/json"
    assert task["charset"] == "utf-8"
    assert (await server.wait_for(task["id"]))["status"] == "completed"
    (call,) = await hooks.wait_for_calls_async(path, 1)
    assert call.body == body
    assert call.headers["content-type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize(
    ("given", "stored"),
    [("PUT", "PUT"), ("put", "PUT"), ("PATCH", "PATCH"), ("DELETE", "DELETE")],
)
async def test_method_is_stored_and_used(
    server: LiveNode, hooks: HookServer, given: str, stored: str
) -> None:
    path = hook_path()
    task = await server.enqueue(hooks.url(path), b"a=1", method=given)
    assert task["method"] == stored
    assert (await server.task(task["id"]))["method"] == stored
    assert (await server.wait_for(task["id"]))["status"] == "completed"
    (call,) = await hooks.wait_for_calls_async(path, 1)
    assert call.method == stored


async def test_method_get_is_400(server: LiveNode, hooks: HookServer) -> None:
    data = assert_json_error(
        await post(server, {"url": hooks.url(hook_path()), "method": "GET"}), 400
    )
    assert "method" in data["error"]


# -- authentication and ownership ------------------------------------------------


async def test_no_key_or_bad_key_is_401(server: LiveNode, hooks: HookServer) -> None:
    query = {"url": hooks.url(hook_path())}
    for key in ("", "not-a-key", "x" * 500):
        data = assert_json_error(await post(server, query, key=key), 401)
        assert "NTORQUE_API_KEY" in data["error"]
    task = await server.enqueue(hooks.url(hook_path()))
    for key in ("", "not-a-key"):
        assert_json_error(await server.request("GET", f"/task/{task['id']}", key=key), 401)
        assert_json_error(await server.request("POST", f"/task/{task['id']}/push", key=key), 401)


async def test_hyphenated_key_header_works(server: LiveNode, hooks: HookServer) -> None:
    header = {"NTORQUE-API-KEY": server.key}
    response = await post(server, {"url": hooks.url(hook_path())}, headers=header, key="")
    assert response.status == 201, response.body
    task_id = response.json["id"]
    assert (await server.request("GET", f"/task/{task_id}", headers=header, key="")).status == 200


async def test_another_applications_task_is_not_found(server: LiveNode, hooks: HookServer) -> None:
    _, other_key = await create_app(server)
    mine = await server.enqueue(hooks.url(hook_path()))
    missing_id = mine["id"] + 10**9
    missing = assert_json_error(await server.request("GET", f"/task/{missing_id}"), 404)

    def as_missing(data: dict[str, Any], task_id: int) -> dict[str, Any]:
        return {**data, "error": data["error"].replace(str(task_id), str(missing_id))}

    for method, suffix in (("GET", ""), ("POST", "/push")):
        response = await server.request(method, f"/task/{mine['id']}{suffix}", key=other_key)
        assert as_missing(assert_json_error(response, 404), mine["id"]) == missing

    theirs = await server.enqueue(hooks.url(hook_path()), key=other_key)
    assert (await server.task(theirs["id"], key=other_key))["id"] == theirs["id"]
    assert_json_error(await server.request("GET", f"/task/{theirs['id']}"), 404)
    assert (await server.task(mine["id"]))["id"] == mine["id"]


async def test_deactivated_application_is_401(server: LiveNode, hooks: HookServer) -> None:
    name, key = await create_app(server)
    task = await server.enqueue(hooks.url(hook_path()), key=key)
    await server.apps.set_active(name, False)  # as `deactivate-app` does
    assert_json_error(await post(server, {"url": hooks.url(hook_path())}, key=key), 401)
    assert_json_error(await server.request("GET", f"/task/{task['id']}", key=key), 401)
    await server.enqueue(hooks.url(hook_path()))  # the other applications go on


async def test_rotated_key_replaces_the_old_one(server: LiveNode, hooks: HookServer) -> None:
    name, old_key = await create_app(server)
    await server.enqueue(hooks.url(hook_path()), key=old_key)
    new_key = await server.apps.rotate_key(name)  # as `rotate-key` does
    assert new_key != old_key
    assert_json_error(await post(server, {"url": hooks.url(hook_path())}, key=old_key), 401)
    task = await server.enqueue(hooks.url(hook_path()), key=new_key)
    assert (await server.task(task["id"], key=new_key))["id"] == task["id"]


# -- every 4xx answer: JSON, a clear message, nothing stored ---------------------


@dataclass(frozen=True)
class Bad:
    name: str
    status: int
    words: tuple[str, ...]  # the message mentions one of these (case-insensitive)
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    method: str = "POST"
    path: str = ""  # instead of /?<query>


HOOK = "HOOK"  # replaced by a hook server url
BAD_REQUESTS = [
    Bad("no key", 401, ("NTORQUE_API_KEY",), {"url": HOOK}, key=""),
    Bad("bad key", 401, ("NTORQUE_API_KEY",), {"url": HOOK}, key="nope"),
    Bad("relative url", 400, ("url",), {"url": "/hook"}),
    Bad("ftp url", 400, ("url",), {"url": "ftp://127.0.0.1/hook"}),
    Bad("javascript url", 400, ("url",), {"url": "javascript:alert(1)"}),
    Bad("url with spaces", 400, ("url",), {"url": "http://127.0.0.1:9/a hook"}),
    Bad("timeout abc", 400, ("timeout",), {"url": HOOK, "timeout": "abc"}),
    Bad("timeout 0", 400, ("timeout",), {"url": HOOK, "timeout": "0"}),
    Bad("timeout -1", 400, ("timeout",), {"url": HOOK, "timeout": "-1"}),
    Bad("timeout too long", 400, ("timeout",), {"url": HOOK, "timeout": str(MAX_DUE_DELAY + 1)}),
    Bad("method GET", 400, ("method",), {"url": HOOK, "method": "GET"}),
    Bad("method bogus", 400, ("method",), {"url": HOOK, "method": "FETCH"}),
    Bad(
        "unknown charset",
        400,
        ("charset",),
        {"url": HOOK},
        b"a=1",
        {"Content-Type": "text/plain; charset=nope"},
    ),
    Bad(
        "undecodable body",
        400,
        ("utf-8",),
        {"url": HOOK},
        b"\xff\xfe",
        {"Content-Type": "text/plain; charset=utf-8"},
    ),
    Bad("body too large", 413, ("large", str(MAX_BODY)), {"url": HOOK}, b"x" * (MAX_BODY + 1)),
    Bad(
        "pass-through Host",
        400,
        ("host",),
        {"url": HOOK},
        headers={"NTORQUE-PASSTHROUGH-Host": "evil.example"},
    ),
    Bad("unknown path", 404, ("no such",), method="GET", path="/no/such/thing"),
    Bad("POST to unknown path", 404, ("no such",), {"url": HOOK}, path="/enqueue"),
    Bad("task id not a number", 404, ("no such",), method="GET", path="/task/abc"),
    Bad("PUT /", 405, ("not allowed",), {"url": HOOK}, method="PUT"),
]


async def send(server: LiveNode, bad: Bad, hook: str) -> Response:
    query = {name: hook if value == HOOK else value for name, value in bad.query.items()}
    path = bad.path or "/?" + urlencode(query)
    if bad.path and query:
        path += "?" + urlencode(query)
    return await server.request(bad.method, path, bad.body or None, bad.headers, bad.key)


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[bad.name for bad in BAD_REQUESTS])
async def test_bad_request_is_json_and_stores_nothing(
    server: LiveNode, hooks: HookServer, bad: Bad
) -> None:
    logged = len(server.logged.text)
    path = hook_path()
    before = await server.enqueue(hooks.url(hook_path()))
    data = assert_json_error(await send(server, bad, hooks.url(path)), bad.status)
    assert any(word.lower() in data["error"].lower() for word in bad.words), data
    after = await server.enqueue(hooks.url(hook_path()))
    assert after["id"] == before["id"] + 1
    assert (await server.wait_for(after["id"]))["status"] == "completed"
    assert hooks.calls(path) == []
    assert "Traceback" not in server.logged.text[logged:]


async def test_body_at_the_limit_is_accepted(server: LiveNode, hooks: HookServer) -> None:
    path = hook_path()
    task = await server.enqueue(hooks.url(path), b"x" * MAX_BODY)
    assert task["body_size"] == MAX_BODY
    assert (await server.wait_for(task["id"]))["status"] == "completed"
    assert (await hooks.wait_for_calls_async(path, 1))[0].body == b"x" * MAX_BODY


def post_chunked(server: LiveNode, path: str, chunks: list[bytes]) -> Response:
    """A POST whose body comes in chunks, with no Content-Length (a blocking
    client: call it in a thread, off the node's loop)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        headers = {"NTORQUE_API_KEY": server.key}
        connection.request("POST", path, body=iter(chunks), headers=headers, encode_chunked=True)
        answer = connection.getresponse()
        return Response(answer.status, dict(answer.getheaders()), answer.read())
    finally:
        connection.close()


async def test_chunked_body_too_large_is_413(server: LiveNode, hooks: HookServer) -> None:
    """Without a Content-Length the limit holds all the same."""
    logged = len(server.logged.text)
    before = await server.enqueue(hooks.url(hook_path()))
    path = "/?" + urlencode({"url": hooks.url(hook_path())})
    response = await asyncio.to_thread(post_chunked, server, path, [b"x" * 600, b"y" * 600])
    data = assert_json_error(response, 413)
    assert str(MAX_BODY) in data["error"]
    after = await server.enqueue(hooks.url(hook_path()))
    assert after["id"] == before["id"] + 1
    assert "Traceback" not in server.logged.text[logged:]


# -- push (re-notify) ------------------------------------------------------------


async def test_push_answers_201_and_the_task_runs_once(server: LiveNode, hooks: HookServer) -> None:
    path = hook_path()
    task = await server.enqueue(hooks.url(path), b"a=1")
    response = await server.request("POST", f"/task/{task['id']}/push")
    assert response.status == 201, response.body
    assert response.json["id"] == task["id"]
    done = await server.wait_for(task["id"])
    assert done["status"] == "completed"
    await quiesce(server, hooks)
    assert len(hooks.calls(path)) == 1
    assert (await server.task(task["id"]))["retry_count"] == 1


@pytest.mark.parametrize(("code", "status"), [(200, "completed"), (404, "failed")])
async def test_push_of_a_finished_task_does_not_run_it_again(
    server: LiveNode, hooks: HookServer, code: int, status: str
) -> None:
    """Original bug W3: pushing a completed task performed it again."""
    path = hook_path(f"/status/{code}")
    task = await server.enqueue(hooks.url(path))
    finished = await server.wait_for(task["id"])
    assert finished["status"] == status
    assert len(await hooks.wait_for_calls_async(path, 1)) == 1
    for suffix in ("/task", "/tasks"):
        response = await server.request("POST", f"{suffix}/{task['id']}/push")
        assert response.status == 201, response.body
        assert response.json["status"] == status
    await quiesce(server, hooks)
    after = await server.task(task["id"])
    assert after["status"] == status
    assert after["retry_count"] == finished["retry_count"] == 1
    assert after["modified"] == finished["modified"]
    assert len(hooks.calls(path)) == 1


# -- attempts --------------------------------------------------------------------


async def test_attempts_list_every_call(backend: Backend, hooks: HookServer) -> None:
    hook = f"/flaky/2/attempts-{uuid.uuid4().hex}"
    clock = Clock()
    async with live_for(backend, loops=False, clock=clock) as server:
        task = await server.enqueue(hooks.url(hook), b"x")
        for _ in range(3):  # 500, 500, 200: each retry falls due once the clock has moved
            await server.requeue()
            assert [t.id for t in await server.consume()] == [task["id"]]
            clock.advance(server.settings.max_due_delay_s)
        assert (await server.task(task["id"]))["status"] == "completed"
        answer = await server.request("GET", f"/task/{task['id']}/attempts")
        assert answer.status == 200
        attempts = answer.json["attempts"]
        assert [a["number"] for a in attempts] == [1, 2, 3]
        assert [a["status_code"] for a in attempts] == [500, 500, 200]
        assert attempts[0]["error"].startswith("HTTP 500")
        assert attempts[2]["error"] is None
        starts = [datetime.fromisoformat(a["started"]) for a in attempts]
        assert starts == sorted(starts)
        calls = hooks.calls(hook)
        assert len(calls) == len(attempts)
        _, other = await server.create_app()
        stranger = await server.request("GET", f"/task/{task['id']}/attempts", key=other)
        assert stranger.status == 404


# -- task control: inputs the fuzz test found breaking it ------------------------


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        # tornado's query reading turned control characters into stripped
        # spaces: a blank filter, which selects every task
        ("POST", "/tasks/cancel?url_prefix=%00", b"", "url_prefix"),
        ("POST", "/tasks/cancel?url_prefix=http%3A%2F%2F127.0.0.1%01", b"", "url_prefix"),
        ("POST", "/tasks/cancel?status=%20", b"", "status"),
        ("GET", "/tasks?url_prefix=%00", b"", "url_prefix"),
        ("POST", "/tasks/cancel?limit=5", b"", "limit"),
        # 500s: a ValueError, a database error, an OverflowError, a RecursionError
        ("GET", "/tasks?cursor=" + cursor_of("t²"), b"", "cursor"),
        ("GET", "/tasks?cursor=" + cursor_of("t" + "9" * 19), b"", "cursor"),
        ("POST", "/tasks/cancel", b'{"created_after": 1' + b"0" * 400 + b"}", "created_after"),
        ("POST", "/tasks/cancel", b'{"url_prefix": "\\u0000"}', "url_prefix"),
        ("POST", "/tasks/cancel", b'{"url_prefix": "\\ud800"}', None),
        ("POST", "/tasks/retry", b"[" * 5000, None),
        ("POST", "/tasks", b"[" * 5000, None),
    ],
)
async def test_bad_control_input_is_a_400_and_changes_nothing(
    server: LiveNode, hooks: HookServer, method: str, path: str, body: bytes, field: str | None
) -> None:
    logged = len(server.logged.text)
    waiting = await server.enqueue(hooks.url(hook_path()), delay=600)
    data = assert_json_error(await server.request(method, path, body or None), 400)
    assert data.get("field") == field, data
    assert (await server.task(waiting["id"]))["status"] == "pending"
    assert "Traceback" not in server.logged.text[logged:]
