"""End-to-end delivery: `python -m ntorque` calls real web hooks, on both backends.

What each kind of answer comes to (completed, failed, retried), redirects,
HTTPS with and without a trusted CA, pass-through and task headers, bodies
byte for byte, every method, and the backoff schedule between retries.

One module-scoped fleet of servers per backend, one server per distinct set
of settings; each server has its own database (and Redis channel), so no
server ever performs another's tasks.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from uuid import uuid4

import pytest

from tests.conftest import BACKENDS, make_backend, server_for
from tests.hookserver import Call, HookServer, TLSFiles, make_tls_files
from tests.server import NtorqueServer, free_port

# Small, fast backoff: retries 0.2 s then 0.4 s after a failed attempt; 3 attempts in all.
FAST = {
    "NTORQUE_MIN_DUE_DELAY": "0.2",
    "NTORQUE_MAX_DUE_DELAY": "30",
    "NTORQUE_MAX_RETRIES": "3",
    "NTORQUE_REQUEUE_INTERVAL": "0.3",
    "NTORQUE_DEFAULT_TIMEOUT": "5",
}
MAX_RETRIES = 3
# The backoff schedule servers: 4 attempts, so 3 waits to measure.
SCHEDULE = {**FAST, "NTORQUE_MIN_DUE_DELAY": "0.3", "NTORQUE_MAX_RETRIES": "4"}
SCHEDULE_RETRIES = 4
# Waits are bounded below exactly; above, generously (this is not a speed test).
SCHEDULE_SLACK_S = 1.5
DEFAULT_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


@dataclass
class Fleet:
    """One backend's ntorque servers, each on its own database."""

    fast: NtorqueServer
    trusting: NtorqueServer  # FAST + NTORQUE_CA_CERTS + transient codes 400,408
    exponential: NtorqueServer
    linear: NtorqueServer


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_hooks(tls: TLSFiles) -> Iterator[HookServer]:
    """An HTTPS hook server whose certificate only our throw-away CA vouches for."""
    with HookServer(tls=tls) as server:
        yield server


@pytest.fixture(scope="module", params=BACKENDS)
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tls: TLSFiles
) -> Iterator[Fleet]:
    name: str = request.param
    configs: dict[str, dict[str, str]] = {
        "fast": FAST,
        "trusting": {
            **FAST,
            "NTORQUE_CA_CERTS": str(tls.ca_pem),
            "NTORQUE_TRANSIENT_REQUEST_ERRORS": "400,408",
        },
        "exponential": {**SCHEDULE, "NTORQUE_BACKOFF": "exponential"},
        "linear": {**SCHEDULE, "NTORQUE_BACKOFF": "linear"},
    }
    servers: dict[str, NtorqueServer] = {}
    try:
        for label, settings in configs.items():  # start them all, then wait for them all
            directory = tmp_path_factory.mktemp(f"{name}-{label}")
            backend = make_backend(request, name, directory)
            servers[label] = server_for(backend, directory, (), **settings).start(wait=False)
        for server in servers.values():
            server.wait_ready()
        yield Fleet(**servers)
    finally:
        for server in servers.values():  # SIGTERM them all, then wait for each
            if server.process is not None and server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in servers.values():
            server.stop()


def unique(route: str) -> str:
    """A hook path no other test uses: the hook server is shared by the session."""
    return f"{route}/{uuid4().hex}"


def deliver(
    server: NtorqueServer,
    hooks: HookServer,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    **query: Any,
) -> tuple[dict[str, Any], list[Call]]:
    """Enqueue a task for hooks' path, wait until it is final; (task, calls of path).

    Every attempt is one call: the task's retry_count is the hook's call count.
    """
    task = server.enqueue(hooks.url(path), body, headers, **query)
    assert task["status"] == "pending"
    done = server.wait_for(task["id"], timeout_s=40)
    calls = hooks.calls(path)
    assert done["retry_count"] == len(calls), (done, calls, server.logs())
    return done, calls


def enqueue_raw(server: NtorqueServer, url: str, body: bytes, headers: dict[str, str]) -> Any:
    """POST / with exactly these headers (urllib would add a Content-Type)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(
            "POST",
            "/?" + urlencode({"url": url}),
            body=body,
            headers={"NTORQUE-API-KEY": server.key, **headers},
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
def test_final_answers_are_not_retried(
    fleet: Fleet, hooks: HookServer, code: int, status: str
) -> None:
    done, calls = deliver(fleet.fast, hooks, unique(f"/status/{code}"), b"a=1")
    assert done["status"] == status
    assert len(calls) == 1
    assert done["retry_count"] == 1
    assert done["last_status_code"] == code
    if status == "completed":
        assert done["last_error"] is None
    else:
        assert done["last_error"].startswith(f"HTTP {code}")


@pytest.mark.parametrize("code", [408, 429, 500, 503])
def test_transient_answers_are_retried_until_the_limit(
    fleet: Fleet, hooks: HookServer, code: int
) -> None:
    done, calls = deliver(fleet.fast, hooks, unique(f"/status/{code}"), b"a=1")
    assert done["status"] == "failed"
    assert len(calls) == MAX_RETRIES
    assert done["retry_count"] == MAX_RETRIES
    assert done["last_status_code"] == code
    assert done["last_error"].startswith(f"HTTP {code}")
    assert [call.body for call in calls] == [b"a=1"] * MAX_RETRIES


def test_connection_refused_is_retried(fleet: Fleet) -> None:
    url = f"http://127.0.0.1:{free_port()}/{uuid4().hex}"  # nobody listens there
    task = fleet.fast.enqueue(url, b"a=1")
    done = fleet.fast.wait_for(task["id"], timeout_s=40)
    assert done["status"] == "failed"
    assert done["retry_count"] == MAX_RETRIES
    assert done["last_status_code"] is None
    assert "connect" in done["last_error"].lower(), done["last_error"]
    assert not done["last_error"].startswith("HTTP "), "not an HTTP answer"


def test_timeout_is_retried(fleet: Fleet, hooks: HookServer) -> None:
    done, calls = deliver(fleet.fast, hooks, unique("/slow/3"), b"a=1", timeout=1)
    assert done["status"] == "failed"
    assert done["timeout"] == 1
    assert len(calls) == MAX_RETRIES
    assert done["last_status_code"] is None
    assert "timed out" in done["last_error"].lower(), done["last_error"]
    assert not done["last_error"].startswith("HTTP "), "not an HTTP answer"


def test_flaky_hook_completes_on_the_third_call(fleet: Fleet, hooks: HookServer) -> None:
    done, calls = deliver(fleet.fast, hooks, unique("/flaky/2"), b"a=1")
    assert done["status"] == "completed"
    assert len(calls) == 3
    assert done["last_status_code"] == 200
    assert done["last_error"] is None
    assert [call.headers["ntorque-task-retry-count"] for call in calls] == ["0", "1", "2"]
    assert {call.headers["ntorque-task-retry-limit"] for call in calls} == {str(MAX_RETRIES)}
    assert {call.headers["ntorque-task-id"] for call in calls} == {str(done["id"])}


@pytest.mark.parametrize(("code", "calls_made"), [(400, MAX_RETRIES), (408, MAX_RETRIES), (429, 1)])
def test_transient_codes_are_configurable(
    fleet: Fleet, hooks: HookServer, code: int, calls_made: int
) -> None:
    """NTORQUE_TRANSIENT_REQUEST_ERRORS=400,408: those two are retried, 429 no longer."""
    done, calls = deliver(fleet.trusting, hooks, unique(f"/status/{code}"), b"a=1")
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
def test_redirects_are_followed(
    fleet: Fleet, hooks: HookServer, code: int, method: str, body_kept: bool
) -> None:
    target = unique("/status/200")
    body = "name=Zoë&n=1".encode()
    done, calls = deliver(fleet.fast, hooks, f"/redirect/{code}{target}", body)
    assert done["status"] == "completed"
    assert done["last_status_code"] == 200
    assert [(call.method, call.body) for call in calls] == [("POST", body)]
    (reached,) = hooks.calls(target)
    assert reached.method == method
    assert reached.body == (body if body_kept else b"")


# -- 3. HTTPS ---------------------------------------------------------------------


def test_https_hook_with_the_ca_configured(fleet: Fleet, tls_hooks: HookServer) -> None:
    done, calls = deliver(fleet.trusting, tls_hooks, unique("/status/200"), b"secret=1")
    assert tls_hooks.base_url.startswith("https://")
    assert done["status"] == "completed"
    assert [call.body for call in calls] == [b"secret=1"]


def test_https_hook_with_an_unknown_ca_is_not_trusted(fleet: Fleet, tls_hooks: HookServer) -> None:
    path = unique("/status/200")
    task = fleet.fast.enqueue(tls_hooks.url(path), b"secret=1")
    done = fleet.fast.wait_for(task["id"], timeout_s=40)
    # The handshake fails on every attempt: no request ever reaches the hook.
    assert tls_hooks.calls(path) == []
    assert done["status"] == "failed"
    assert done["retry_count"] == MAX_RETRIES
    assert done["last_status_code"] is None
    assert "certificate" in done["last_error"].lower(), done["last_error"]
    assert not done["last_error"].startswith("HTTP "), "not an HTTP answer"


# -- 4. headers -------------------------------------------------------------------


def test_passthrough_and_task_headers_arrive(fleet: Fleet, hooks: HookServer) -> None:
    headers = {
        "NTORQUE-PASSTHROUGH-X-Foo": "bar",
        "NTORQUE_PASSTHROUGH_X_Bar": "baz qux",
        "X-Not-Passed": "no",
    }
    done, (call,) = deliver(fleet.fast, hooks, unique("/status/200"), b"a=1", headers)
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
def test_bodies_arrive_byte_for_byte(fleet: Fleet, hooks: HookServer, kind: str) -> None:
    content_type, body = BODIES[kind]
    done, (call,) = deliver(
        fleet.fast, hooks, unique("/status/200"), body, {"Content-Type": content_type}
    )
    assert done["status"] == "completed"
    assert done["body_size"] == len(body)
    assert call.method == "POST"
    assert call.body == body
    assert call.headers["content-type"] == ARRIVING_TYPES[kind]


def test_without_content_type_the_default_is_sent(fleet: Fleet, hooks: HookServer) -> None:
    path = unique("/status/200")
    task = enqueue_raw(fleet.fast, hooks.url(path), b"user_id=1234", {})
    assert (task["content_type"], task["charset"]) == ("application/x-www-form-urlencoded", "utf-8")
    done = fleet.fast.wait_for(task["id"])
    (call,) = hooks.calls(path)
    assert done["status"] == "completed"
    assert call.body == b"user_id=1234"
    assert call.headers["content-type"] == DEFAULT_CONTENT_TYPE


# -- 6. methods -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "method"),
    [("POST", "POST"), ("PUT", "PUT"), ("PATCH", "PATCH"), ("DELETE", "DELETE"), ("put", "PUT")],
)
def test_every_method_reaches_the_hook(
    fleet: Fleet, hooks: HookServer, asked: str, method: str
) -> None:
    body = f"verb={asked}&é=1".encode()
    done, (call,) = deliver(fleet.fast, hooks, unique("/status/200"), body, method=asked)
    assert done["method"] == method
    assert done["status"] == "completed"
    assert call.method == method
    assert call.body == body


# -- 7. the backoff schedule ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "waits"), [("exponential", (0.3, 0.6, 1.2)), ("linear", (0.3, 0.6, 0.9))]
)
def test_backoff_schedule(
    fleet: Fleet, hooks: HookServer, kind: str, waits: tuple[float, ...]
) -> None:
    server: NtorqueServer = getattr(fleet, kind)
    done, calls = deliver(server, hooks, unique("/status/500"), b"a=1")
    assert done["status"] == "failed"
    assert len(calls) == SCHEDULE_RETRIES
    assert {call.headers["ntorque-task-retry-limit"] for call in calls} == {"4"}
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
    for gap, wait in zip(gaps, waits, strict=True):
        assert wait <= gap < wait + SCHEDULE_SLACK_S, (gaps, waits)


# -- 8. the attempt record ------------------------------------------------------------


def test_retry_count_is_the_number_of_calls(fleet: Fleet, hooks: HookServer) -> None:
    """(deliver() checks this for every task; here for each way a task ends.)"""
    cases = {unique("/flaky/1"): ("completed", 2), unique("/status/404"): ("failed", 1)}
    cases[unique("/status/500")] = ("failed", MAX_RETRIES)
    tasks = {path: fleet.fast.enqueue(hooks.url(path), b"a=1")["id"] for path in cases}
    for path, (status, count) in cases.items():
        done = fleet.fast.wait_for(tasks[path], timeout_s=40)
        assert (done["status"], done["retry_count"]) == (status, count)
        assert len(hooks.calls(path)) == count
