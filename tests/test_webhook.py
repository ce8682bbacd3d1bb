"""What a hook's answer means, and the outgoing request (headers, timeouts
within the lease, certificates)."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from uuid import uuid4

import pytest
import pytest_asyncio
from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders

from ntorque.tasks import Status, Task, Verdict
from ntorque.webhook import MAX_REDIRECTS, MIN_CALL_S, Webhook, classify, make_client
from tests.conftest import Backend, live_for, make_backend
from tests.console_session import Session
from tests.hookserver import Call, HookServer, TLSFiles
from tests.inprocess import Clock, LiveNode
from tests.server import FINAL, free_port
from tests.test_tasks import stored_task

# -- what a hook's answer means ---------------------------------------------------

TRANSIENT = (408, 423, 429, 449)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (200, Verdict.COMPLETED),
        (201, Verdict.COMPLETED),
        (202, Verdict.FAILED),
        (204, Verdict.FAILED),
        (301, Verdict.FAILED),
        (304, Verdict.FAILED),
        (400, Verdict.FAILED),
        (401, Verdict.FAILED),
        (404, Verdict.FAILED),
        (408, Verdict.RETRY),
        (410, Verdict.FAILED),
        (423, Verdict.RETRY),
        (429, Verdict.RETRY),
        (449, Verdict.RETRY),
        (499, Verdict.FAILED),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (599, Verdict.RETRY),
    ],
)
def test_classify(code: int, verdict: Verdict) -> None:
    assert classify(code, TRANSIENT) is verdict


def test_classify_uses_the_configured_transient_codes() -> None:
    assert classify(418, {418}) is Verdict.RETRY
    assert classify(429, ()) is Verdict.FAILED
    assert classify(503, ()) is Verdict.RETRY  # server errors are always retried


async def test_webhook_request(tmp_path: Path) -> None:
    client = make_client(1)
    try:
        ca_file = tmp_path / "ca.pem"
        ca_file.write_text("", encoding="utf-8")
        webhook = Webhook(client, max_retries=36, transient_codes=TRANSIENT, ca_certs=str(ca_file))
        # Freshly leased: the lease (due) runs well past the 25 s timeout.
        request = webhook.request(stored_task(due=time.time() + 25 + 2))
    finally:
        client.close()

    assert isinstance(request, HTTPRequest)
    assert request.url == "https://example.com/hooks/send_email?x=1"
    assert request.method == "PUT"
    assert request.body == b'\x00{"user_id": 1234}\xff'
    assert {name.lower(): value for name, value in request.headers.items()} == {
        "x-foo": "Bar",
        "authorization": "Bearer t",
        "content-type": "application/json; charset=utf-8",
        "ntorque-task-id": "42",
        "ntorque-task-retry-count": "2",  # attempts before this one
        "ntorque-task-retry-limit": "36",
    }
    assert request.connect_timeout == 25
    assert request.request_timeout == 25
    # Webhook follows redirects itself, checking and pinning each hop's target
    # (tests/test_targets.py); curl must not follow them on its own.
    assert request.follow_redirects is False
    assert MAX_REDIRECTS == 10
    assert request.validate_cert is True
    assert request.ca_certs == str(ca_file)
    assert request.allow_nonstandard_methods is True  # a DELETE with a body


async def test_webhook_request_for_a_first_attempt_and_the_system_ca_bundle() -> None:
    client = make_client(1)
    try:
        webhook = Webhook(client, max_retries=5, transient_codes=TRANSIENT, ca_certs=None)
        request = webhook.request(stored_task(method="DELETE", retry_count=1, headers=()))
    finally:
        client.close()
    assert request.method == "DELETE"
    headers = HTTPHeaders(request.headers)
    assert headers["NTorque-Task-Retry-Count"] == "0"
    assert headers["NTorque-Task-Retry-Limit"] == "5"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.ca_certs is None or Path(request.ca_certs).is_file()


def response(code: int, body: bytes = b"", error: Exception | None = None) -> HTTPResponse:
    request = HTTPRequest("http://example.com/")
    return HTTPResponse(request, code, buffer=io.BytesIO(body), error=error)


async def test_webhook_outcome() -> None:
    client = make_client(1)
    try:
        webhook = Webhook(client, max_retries=5, transient_codes=TRANSIENT, ca_certs=None)
        done = webhook.outcome(response(201, b"created"), 100.0, 0.5)
        busy = webhook.outcome(response(503, b"  try later \n" + b"x" * 500), 100.0, 0.5)
        gone = webhook.outcome(response(404), 100.0, 0.5)
        down = webhook.outcome(
            response(599, error=ConnectionRefusedError("Connection refused")), 100.0, 0.5
        )
    finally:
        client.close()
    assert (done.verdict, done.status_code, done.error) == (Verdict.COMPLETED, 201, None)
    assert (done.started, done.duration_s) == (100.0, 0.5)
    assert (busy.verdict, busy.status_code) == (Verdict.RETRY, 503)
    assert busy.error == "HTTP 503 Service Unavailable: try later \n" + "x" * 187
    assert (gone.verdict, gone.status_code, gone.error) == (
        Verdict.FAILED,
        404,
        "HTTP 404 Not Found",
    )
    assert (down.verdict, down.status_code) == (Verdict.RETRY, None)
    assert down.error == "Connection refused"


@pytest.mark.parametrize("lease_left_s", [10.0, 0.5])
def test_webhook_call_never_outlasts_the_lease(lease_left_s: float) -> None:
    """A slow acquire can eat into the lease: the call is cut to what is left of it,
    so no other consumer can take the task while this call still runs."""
    webhook = Webhook(make_client(1), max_retries=36, transient_codes=TRANSIENT, ca_certs=None)
    try:
        request = webhook.request(stored_task(due=time.time() + lease_left_s))
    finally:
        webhook.client.close()
    assert request.request_timeout is not None and request.connect_timeout is not None
    assert lease_left_s - 0.5 < request.request_timeout <= lease_left_s
    assert request.connect_timeout == request.request_timeout


def test_webhook_call_with_its_lease_spent_still_happens_and_fails_fast() -> None:
    webhook = Webhook(make_client(1), max_retries=36, transient_codes=TRANSIENT, ca_certs=None)
    try:
        request = webhook.request(stored_task(due=time.time() - 5))
    finally:
        webhook.client.close()
    assert request.request_timeout == MIN_CALL_S


# -- labels and headers as a hook receives them --------------------------------

IN_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")  # the tests sharing the module's node

LATIN1 = "Crème brûlée, façon à part".encode("latin-1")
FORM = "application/x-www-form-urlencoded"


def shuffled_bytes() -> bytes:
    every = bytearray(range(256)) * 4
    random.Random(1234).shuffle(every)
    return bytes(every)


# kind: (Content-Type sent, body, Content-Type the hook gets, the task's "charset")
LABELS: dict[str, tuple[str, bytes, str, str | None]] = {
    "binary": ("application/octet-stream", shuffled_bytes(), "application/octet-stream", None),
    "ascii-octets": ("application/octet-stream", b"hello", "application/octet-stream", None),
    "image": ("image/png", b"\x89PNG\r\n\x1a\n", "image/png", None),
    "binary-declared": (
        "application/octet-stream; charset=utf-8",
        b"abc",
        "application/octet-stream; charset=utf-8",
        "utf-8",
    ),
    "utf8-text": ("text/plain", "Grüße 🎉".encode(), "text/plain; charset=utf-8", "utf-8"),
    "latin1-text": ("text/plain", LATIN1, "text/plain", None),
    "latin1-declared": (
        "text/plain; charset=latin1",
        LATIN1,
        "text/plain; charset=latin1",
        "latin1",
    ),
    "json": (
        "application/json",
        b'{"n": "Zo\xc3\xab"}',
        "application/json; charset=utf-8",
        "utf-8",
    ),
    "json-not-utf8": ("application/json", b'{"n": "Zo\xeb"}', "application/json", None),
    "problem+json": (
        "application/problem+json",
        b"{}",
        "application/problem+json; charset=utf-8",
        "utf-8",
    ),
    "form": ("", b"user_id=1234", f"{FORM}; charset=utf-8", "utf-8"),
    "form-latin1": (f"{FORM}; charset=latin1", b"a=caf\xe9", f"{FORM}; charset=latin1", "latin1"),
    "form-undeclared-latin1": (FORM, b"a=caf\xe9", FORM, None),
    "xml": ("application/xml", b"<a/>", "application/xml; charset=utf-8", "utf-8"),
    "text-xml": ("text/xml", b"<a/>", "text/xml; charset=utf-8", "utf-8"),
    "atom+xml": (
        "application/atom+xml",
        b"<feed/>",
        "application/atom+xml; charset=utf-8",
        "utf-8",
    ),
    "empty-text": ("text/plain", b"", "text/plain; charset=utf-8", "utf-8"),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(
    request: pytest.FixtureRequest,
    module_backend: Backend,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[LiveNode]:
    """A node with its loops running, on a database of its own."""
    backend = make_backend(request, module_backend.name, tmp_path_factory.mktemp("labels"))
    async with live_for(backend, auth_cache_s=0, min_due_delay_s=0.2) as running:
        yield running


def hook_path() -> str:
    return f"/status/200/{uuid.uuid4().hex}"


@IN_MODULE_LOOP
@pytest.mark.parametrize("kind", list(LABELS))
async def test_each_kind_of_body_gets_a_true_label(
    node: LiveNode, hooks: HookServer, kind: str
) -> None:
    sent_type, body, arriving_type, charset = LABELS[kind]
    path = hook_path()
    headers = {"Content-Type": sent_type} if sent_type else {}
    task = await node.enqueue(hooks.url(path), body, headers)
    assert task["charset"] == charset  # null: no charset is known
    assert task["content_type"] == arriving_type.partition(";")[0]
    assert (await node.wait_for(task["id"]))["status"] == "completed"
    (call,) = await hooks.wait_for_calls_async(path, 1)
    assert call.body == body
    assert call.headers["content-type"] == arriving_type


@IN_MODULE_LOOP
async def test_the_console_shows_the_label_the_hook_gets(node: LiveNode, hooks: HookServer) -> None:
    """No charset is known: none is shown (not "charset=None")."""
    session = Session(node)
    await session.login(node.key)
    for kind in ("binary", "latin1-declared", "json"):
        sent_type, body, arriving_type, _ = LABELS[kind]
        task = await node.enqueue(hooks.url(hook_path()), body, {"Content-Type": sent_type})
        page = await session.get(f"/console/task/{task['id']}")
        assert page.status == 200
        heading = next(line for line in page.text.splitlines() if "<h2>Body" in line)
        assert f"bytes · {arriving_type}</small>" in heading, heading


@IN_MODULE_LOOP
async def test_a_declared_charset_the_body_breaks_is_refused(node: LiveNode) -> None:
    answer = await node.request(
        "POST", "/?url=http://127.0.0.1:9/x", LATIN1, {"Content-Type": "text/plain; charset=utf-8"}
    )
    assert answer.status == 400
    assert answer.json == {
        "status": 400,
        "error": "the body is not valid utf-8",
        "field": "content_type",
    }


@IN_MODULE_LOOP
async def test_underscore_pass_through_headers_arrive_hyphenated(
    node: LiveNode, hooks: HookServer
) -> None:
    path = hook_path()
    sent = {
        "NTORQUE_PASSTHROUGH_X_Trace": "t",
        "NTORQUE_PASSTHROUGH_X_Request_Id": "r",
        "NTORQUE-PASSTHROUGH-X-Foo": "bar",
    }
    task = await node.enqueue(hooks.url(path), b"a=1", sent)
    assert task["headers"] == {"X-Trace": "t", "X-Request-Id": "r", "X-Foo": "bar"}
    assert (await node.wait_for(task["id"]))["status"] == "completed"
    (call,) = await hooks.wait_for_calls_async(path, 1)
    assert (call.headers["x-trace"], call.headers["x-request-id"]) == ("t", "r")
    assert call.headers["x-foo"] == "bar"
    assert not [name for name in call.headers if "_" in name or "passthrough" in name]


def stored(content_type: str, charset: str) -> Task:
    return Task(
        id=1, app_id=None, url="http://example.com/", method="POST", timeout_s=60, body=b"x",
        content_type=content_type, charset=charset, headers=(), status=Status.PENDING,
        retry_count=1, due=0.0, created=0.0, modified=0.0, last_status_code=None,
        last_error=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("content_type", "charset", "label"),
    [
        ("application/octet-stream", "", "application/octet-stream"),
        ("text/plain", "", "text/plain"),
        ("text/plain", "latin1", "text/plain; charset=latin1"),
    ],
)
async def test_the_first_hop_names_a_charset_only_when_known(
    content_type: str, charset: str, label: str
) -> None:
    task = stored(content_type, charset)
    webhook = Webhook(make_client(1), max_retries=3, transient_codes=(), ca_certs=None)
    try:
        assert webhook.first_hop(task).headers["Content-Type"] == label
        assert task.to_json()["charset"] == (charset or None)
    finally:
        webhook.client.close()


# -- from the delivery tests ---------------------------------------------------

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


@IN_MODULE_LOOP
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


@IN_MODULE_LOOP
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


@IN_MODULE_LOOP
async def test_connection_refused_is_retried(fast: LiveNode) -> None:
    url = f"http://127.0.0.1:{free_port()}/{uuid4().hex}"  # nobody listens there
    task = await fast.enqueue(url, b"a=1")
    (done,) = await perform(fast, task["id"])
    assert done["status"] == "failed"
    assert done["retry_count"] == MAX_RETRIES
    assert done["last_status_code"] is None
    assert "connect" in done["last_error"].lower(), done["last_error"]
    assert not done["last_error"].startswith("HTTP "), "not an HTTP answer"


@IN_MODULE_LOOP
async def test_timeout_is_retried(fast: LiveNode, hooks: HookServer) -> None:
    done, calls = await deliver(fast, hooks, unique("/slow/3"), b"a=1", timeout=1)
    assert done["status"] == "failed"
    assert done["timeout"] == 1
    assert len(calls) == MAX_RETRIES
    assert done["last_status_code"] is None
    assert "timed out" in done["last_error"].lower(), done["last_error"]
    assert not done["last_error"].startswith("HTTP "), "not an HTTP answer"


@IN_MODULE_LOOP
async def test_flaky_hook_completes_on_the_third_call(fast: LiveNode, hooks: HookServer) -> None:
    done, calls = await deliver(fast, hooks, unique("/flaky/2"), b"a=1")
    assert done["status"] == "completed"
    assert len(calls) == 3
    assert done["last_status_code"] == 200
    assert done["last_error"] is None
    assert [call.headers["ntorque-task-retry-count"] for call in calls] == ["0", "1", "2"]
    assert {call.headers["ntorque-task-retry-limit"] for call in calls} == {str(MAX_RETRIES)}
    assert {call.headers["ntorque-task-id"] for call in calls} == {str(done["id"])}


@IN_MODULE_LOOP
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


@IN_MODULE_LOOP
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


@IN_MODULE_LOOP
async def test_https_hook_with_the_ca_configured(trusting: LiveNode, tls_hooks: HookServer) -> None:
    done, calls = await deliver(trusting, tls_hooks, unique("/status/200"), b"secret=1")
    assert tls_hooks.base_url.startswith("https://")
    assert done["status"] == "completed"
    assert [call.body for call in calls] == [b"secret=1"]


@IN_MODULE_LOOP
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


@IN_MODULE_LOOP
async def test_passthrough_and_task_headers_arrive(fast: LiveNode, hooks: HookServer) -> None:
    headers = {
        "NTORQUE-PASSTHROUGH-X-Foo": "bar",
        "NTORQUE_PASSTHROUGH_X_Bar": "baz qux",
        "X-Not-Passed": "no",
    }
    done, (call,) = await deliver(fast, hooks, unique("/status/200"), b"a=1", headers)
    assert done["status"] == "completed"
    assert call.headers["x-foo"] == "bar"
    assert call.headers["x-bar"] == "baz qux"  # the underscore form arrives hyphenated
    assert "x-not-passed" not in call.headers
    assert not [name for name in call.headers if "passthrough" in name]
    assert call.headers["ntorque-task-id"] == str(done["id"])
    assert call.headers["ntorque-task-retry-count"] == "0"
    assert call.headers["ntorque-task-retry-limit"] == str(MAX_RETRIES)
    assert call.headers["content-type"] == DEFAULT_CONTENT_TYPE


# -- 5. bodies and their Content-Type -------------------------------------------------


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
    "binary": "application/octet-stream",  # no charset made up
    "empty": "text/plain; charset=utf-8",
    "900kb": "application/octet-stream",
}


@IN_MODULE_LOOP
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


@IN_MODULE_LOOP
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


@IN_MODULE_LOOP
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


@IN_MODULE_LOOP
async def test_retry_count_is_the_number_of_calls(fast: LiveNode, hooks: HookServer) -> None:
    """(deliver() checks this for every task; here for each way a task ends.)"""
    cases = {unique("/flaky/1"): ("completed", 2), unique("/status/404"): ("failed", 1)}
    cases[unique("/status/500")] = ("failed", MAX_RETRIES)
    tasks = {path: (await fast.enqueue(hooks.url(path), b"a=1"))["id"] for path in cases}
    done = await perform(fast, *tasks.values())
    for (path, (status, count)), task in zip(cases.items(), done, strict=True):
        assert (task["status"], task["retry_count"]) == (status, count)
        assert len(hooks.calls(path)) == count
