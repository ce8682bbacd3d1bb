"""Delivery end to end: a node calls real web hooks, on both backends.

What each kind of answer comes to (completed, failed, retried), redirects,
HTTPS with and without a trusted CA, pass-through and task headers, bodies
byte for byte, every method, and the attempt record.

Each backend gets two nodes in the test's own event loop, one per set of
settings, each on its own database (and Redis channel), so no node ever
performs another's tasks. They run no loops of their own: `perform()` drives
the consumer and requeuer by hand and moves the node's clock to each retry's
due date, so retries cost no waiting.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode
from uuid import uuid4

import pytest
import pytest_asyncio

from tests.conftest import Backend, live_for, make_backend
from tests.hookserver import Call, HookServer, TLSFiles
from tests.inprocess import Clock, LiveNode
from tests.server import FINAL, free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Small backoff: retries 0.2 s then 0.4 s (of the node's clock) after a failed attempt.
MAX_RETRIES = 3
FAST: dict[str, Any] = {
    "min_due_delay_s": 0.2,
    "max_due_delay_s": 30,
    "max_retries": MAX_RETRIES,
    "default_timeout_s": 5,
}
DEFAULT_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fast(module_backend: Backend) -> AsyncIterator[LiveNode]:
    async with live_for(module_backend, loops=False, clock=Clock(), **FAST) as node:
        yield node


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def trusting(
    request: pytest.FixtureRequest,
    module_backend: Backend,
    tmp_path_factory: pytest.TempPathFactory,
    tls: TLSFiles,
) -> AsyncIterator[LiveNode]:
    """FAST, trusting our CA, and retrying 400 and 408 (only), on a database of its own."""
    backend = make_backend(request, module_backend.name, tmp_path_factory.mktemp("trusting"))
    settings = {**FAST, "ca_certs": str(tls.ca_pem), "transient_codes": (400, 408)}
    async with live_for(backend, loops=False, clock=Clock(), **settings) as node:
        yield node


def unique(route: str) -> str:
    """A hook path no other test uses: the hook server is shared by the session."""
    return f"{route}/{uuid4().hex}"


async def perform(node: LiveNode, *ids: int) -> list[dict[str, Any]]:
    """Drive the tasks to a final state: each round performs every unfinished
    one once, then the clock moves to the latest due date among them and the
    requeuer notifies them again. The tasks as the API shows them at the end."""
    assert node.clock is not None
    unfinished = list(ids)
    for _ in range(node.settings.max_retries):
        acquired = {task.id for task in await node.consume()}
        assert set(unfinished) <= acquired, (unfinished, acquired, node.logged.text)
        tasks = [await node.task(task_id) for task_id in ids]
        unfinished = [task["id"] for task in tasks if task["status"] not in FINAL]
        if not unfinished:
            return tasks
        due = [(await node.running.queue.get(task_id)).due for task_id in unfinished]
        node.clock.advance(max(due) - node.clock.now)
        await node.requeue()
    raise AssertionError(f"not final after {node.settings.max_retries} attempts: {tasks}")


async def deliver(
    node: LiveNode,
    hooks: HookServer,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    **query: Any,
) -> tuple[dict[str, Any], list[Call]]:
    """Enqueue a task for hooks' path and perform it until final; (task, calls of path).

    Every attempt is one call: the task's retry_count is the hook's call count.
    """
    task = await node.enqueue(hooks.url(path), body, headers, **query)
    assert task["status"] == "pending"
    (done,) = await perform(node, task["id"])
    calls = hooks.calls(path)
    assert done["retry_count"] == len(calls), (done, calls, node.logged.text)
    return done, calls


def enqueue_raw(node: LiveNode, url: str, body: bytes, headers: dict[str, str]) -> Any:
    """POST / with exactly these headers (a client would add a Content-Type).
    Blocking: call it in a thread, off the node's loop."""
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    try:
        connection.request(
            "POST",
            "/?" + urlencode({"url": url}),
            body=body,
            headers={"NTORQUE-API-KEY": node.key, **headers},
        )
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    assert response.status == 201, (response.status, answer)
    return json.loads(answer)


# -- 1. what each answer comes to -------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (200, "completed"),
        (201, "completed"),
        (202, "failed"),
        (204, "failed"),
        (400, "failed"),
        (404, "failed"),
    ],
)
async def test_final_answers_are_not_retried(
    fast: LiveNode, hooks: HookServer, code: int, status: str
) -> None:
    done, calls = await deliver(fast, hooks, unique(f"/status/{code}"), b"a=1")
    assert done["status"] == status
    assert len(calls) == 1
    assert done["retry_count"] == 1
    assert done["last_status_code"] == code
    if status == "completed":
        assert done["last_error"] is None
    else:
        assert done["last_error"].startswith(f"HTTP {code}")


@pytest.mark.parametrize("code", [408, 429, 500, 503])
async def test_transient_answers_are_retried_until_the_limit(
    fast: LiveNode, hooks: HookServer, code: int
) -> None:
    done, calls = await deliver(fast, hooks, unique(f"/status/{code}"), b"a=1")
    assert done["status"] == "failed"
    assert len(calls) == MAX_RETRIES
    assert done["retry_count"] == MAX_RETRIES
    assert done["last_status_code"] == code
    assert done["last_error"].startswith(f"HTTP {code}")
    assert [call.body for call in calls] == [b"a=1"] * MAX_RETRIES


async def test_connection_refused_is_retried(fast: LiveNode) -> None:
    url = f"http://127.0.0.1:{free_port()}/{uuid4().hex}"  # nobody listens there
    task = await fast.enqueue(url, b"a=1")
    (done,) = await perform(fast, task["id"])
    assert done["status"] == "failed"
    assert done["retry_count"] == MAX_RETRIES
    assert done["last_status_code"] is None
    assert "connect" in done["last_error"].lower(), done["last_error"]
    assert not done["last_error"].startswith("HTTP "), "not an HTTP answer"


async def test_timeout_is_retried(fast: LiveNode, hooks: HookServer) -> None:
    done, calls = await deliver(fast, hooks, unique("/slow/3"), b"a=1", timeout=1)
    assert done["status"] == "failed"
    assert done["timeout"] == 1
    assert len(calls) == MAX_RETRIES
    assert done["last_status_code"] is None
    assert "timed out" in done["last_error"].lower(), done["last_error"]
    assert not done["last_error"].startswith("HTTP "), "not an HTTP answer"


async def test_flaky_hook_completes_on_the_third_call(fast: LiveNode, hooks: HookServer) -> None:
    done, calls = await deliver(fast, hooks, unique("/flaky/2"), b"a=1")
    assert done["status"] == "completed"
    assert len(calls) == 3
    assert done["last_status_code"] == 200
    assert done["last_error"] is None
    assert [call.headers["ntorque-task-retry-count"] for call in calls] == ["0", "1", "2"]
    assert {call.headers["ntorque-task-retry-limit"] for call in calls} == {str(MAX_RETRIES)}
    assert {call.headers["ntorque-task-id"] for call in calls} == {str(done["id"])}


@pytest.mark.parametrize(("code", "calls_made"), [(400, MAX_RETRIES), (408, MAX_RETRIES), (429, 1)])
async def test_transient_codes_are_configurable(
    trusting: LiveNode, hooks: HookServer, code: int, calls_made: int
) -> None:
    """transient_codes=400,408: those two are retried, 429 no longer."""
    done, calls = await deliver(trusting, hooks, unique(f"/status/{code}"), b"a=1")
    assert done["status"] == "failed"
    assert len(calls) == calls_made
    assert done["last_status_code"] == code


# -- 2. redirects -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "method", "body_kept"),
    [
        (301, "GET", False),  # like curl and browsers: POST becomes GET, body dropped
        (302, "GET", False),
        (303, "GET", False),
        (307, "POST", True),  # method and body kept, byte for byte
        (308, "POST", True),
    ],
)
async def test_redirects_are_followed(
    fast: LiveNode, hooks: HookServer, code: int, method: str, body_kept: bool
) -> None:
    target = unique("/status/200")
    body = "name=Zoë&n=1".encode()
    done, calls = await deliver(fast, hooks, f"/redirect/{code}{target}", body)
    assert done["status"] == "completed"
    assert done["last_status_code"] == 200
    assert [(call.method, call.body) for call in calls] == [("POST", body)]
    (reached,) = hooks.calls(target)
    assert reached.method == method
    assert reached.body == (body if body_kept else b"")


# -- 3. HTTPS ---------------------------------------------------------------------


async def test_https_hook_with_the_ca_configured(trusting: LiveNode, tls_hooks: HookServer) -> None:
    done, calls = await deliver(trusting, tls_hooks, unique("/status/200"), b"secret=1")
    assert tls_hooks.base_url.startswith("https://")
    assert done["status"] == "completed"
    assert [call.body for call in calls] == [b"secret=1"]


async def test_https_hook_with_an_unknown_ca_is_not_trusted(
    fast: LiveNode, tls_hooks: HookServer
) -> None:
    path = unique("/status/200")
    task = await fast.enqueue(tls_hooks.url(path), b"secret=1")
    (done,) = await perform(fast, task["id"])
    # The handshake fails on every attempt: no request ever reaches the hook.
    assert tls_hooks.calls(path) == []
    assert done["status"] == "failed"
    assert done["retry_count"] == MAX_RETRIES
    assert done["last_status_code"] is None
    assert "certificate" in done["last_error"].lower(), done["last_error"]
    assert not done["last_error"].startswith("HTTP "), "not an HTTP answer"


# -- 4. headers -------------------------------------------------------------------


async def test_passthrough_and_task_headers_arrive(fast: LiveNode, hooks: HookServer) -> None:
    headers = {
        "NTORQUE-PASSTHROUGH-X-Foo": "bar",
        "NTORQUE_PASSTHROUGH_X_Bar": "baz qux",
        "X-Not-Passed": "no",
    }
    done, (call,) = await deliver(fast, hooks, unique("/status/200"), b"a=1", headers)
    assert done["status"] == "completed"
    assert call.headers["x-foo"] == "bar"
    assert call.headers["x_bar"] == "baz qux"
    assert "x-not-passed" not in call.headers
    assert not [name for name in call.headers if "passthrough" in name]
    assert call.headers["ntorque-task-id"] == str(done["id"])
    assert call.headers["ntorque-task-retry-count"] == "0"
    assert call.headers["ntorque-task-retry-limit"] == str(MAX_RETRIES)
    assert call.headers["content-type"] == DEFAULT_CONTENT_TYPE


# -- 5. bodies and their Content-Type -------------------------------------------------


def shuffled_bytes() -> bytes:
    every = bytearray(range(256)) * 4
    random.Random(1234).shuffle(every)
    return bytes(every)


BODIES = {
    "utf8-text": ("text/plain; charset=utf-8", "Grüße, 世界! 🎉".encode()),
    "json": ("application/json", json.dumps({"name": "Zoë", "n": 1}).encode()),
    "latin1-text": ("text/plain; charset=latin1", "Crème brûlée, façon à part".encode("latin-1")),
    "binary": ("application/octet-stream", shuffled_bytes()),
    "empty": ("text/plain", b""),
    "900kb": ("application/octet-stream", os.urandom(900 * 1024)),
}
ARRIVING_TYPES = {
    "utf8-text": "text/plain; charset=utf-8",
    "json": "application/json; charset=utf-8",
    "latin1-text": "text/plain; charset=latin1",
    "binary": "application/octet-stream; charset=utf-8",
    "empty": "text/plain; charset=utf-8",
    "900kb": "application/octet-stream; charset=utf-8",
}


@pytest.mark.parametrize("kind", list(BODIES))
async def test_bodies_arrive_byte_for_byte(fast: LiveNode, hooks: HookServer, kind: str) -> None:
    content_type, body = BODIES[kind]
    done, (call,) = await deliver(
        fast, hooks, unique("/status/200"), body, {"Content-Type": content_type}
    )
    assert done["status"] == "completed"
    assert done["body_size"] == len(body)
    assert call.method == "POST"
    assert call.body == body
    assert call.headers["content-type"] == ARRIVING_TYPES[kind]


async def test_without_content_type_the_default_is_sent(fast: LiveNode, hooks: HookServer) -> None:
    path = unique("/status/200")
    task = await asyncio.to_thread(enqueue_raw, fast, hooks.url(path), b"user_id=1234", {})
    assert (task["content_type"], task["charset"]) == ("application/x-www-form-urlencoded", "utf-8")
    (done,) = await perform(fast, task["id"])
    (call,) = hooks.calls(path)
    assert done["status"] == "completed"
    assert call.body == b"user_id=1234"
    assert call.headers["content-type"] == DEFAULT_CONTENT_TYPE


# -- 6. methods -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "method"),
    [("POST", "POST"), ("PUT", "PUT"), ("PATCH", "PATCH"), ("DELETE", "DELETE"), ("put", "PUT")],
)
async def test_every_method_reaches_the_hook(
    fast: LiveNode, hooks: HookServer, asked: str, method: str
) -> None:
    body = f"verb={asked}&é=1".encode()
    done, (call,) = await deliver(fast, hooks, unique("/status/200"), body, method=asked)
    assert done["method"] == method
    assert done["status"] == "completed"
    assert call.method == method
    assert call.body == body


# -- 7. the attempt record ------------------------------------------------------------


async def test_retry_count_is_the_number_of_calls(fast: LiveNode, hooks: HookServer) -> None:
    """(deliver() checks this for every task; here for each way a task ends.)"""
    cases = {unique("/flaky/1"): ("completed", 2), unique("/status/404"): ("failed", 1)}
    cases[unique("/status/500")] = ("failed", MAX_RETRIES)
    tasks = {path: (await fast.enqueue(hooks.url(path), b"a=1"))["id"] for path in cases}
    done = await perform(fast, *tasks.values())
    for (path, (status, count)), task in zip(cases.items(), done, strict=True):
        assert (task["status"], task["retry_count"]) == (status, count)
        assert len(hooks.calls(path)) == count
