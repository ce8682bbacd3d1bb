"""Signed calls (Standard Webhooks): the signature, our verifier and the
reference `standardwebhooks` package agree; a real ntorque signs every call
(retries keep their webhook-id, rotations send two signatures); the example
receivers verify real calls.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import standardwebhooks
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from examples import tornado_receiver, wsgi_receiver
from ntorque.client import SignatureError, verify
from ntorque.signing import (
    SERVER_SECRET,
    Signer,
    message_id,
    new_signing_secret,
    secret_key,
    signature,
    signature_headers,
)
from ntorque.store import Store
from ntorque.tasks import Status, Task
from tests.conftest import Backend, server_for
from tests.hookserver import Call, HookServer
from tests.server import NtorqueServer

NOW = 1_700_000_000
BODY = '{"order": 42, "note": "grüße"}'.encode()
SECRET_LINE = re.compile(r"signing secret: (whsec_\S+)")
NEW_SECRET_LINE = re.compile(r"new signing secret of .*: (whsec_\S+)")
KEY_LINE = re.compile(r"its API key: (\S+)")


def task(**changes: Any) -> Task:
    values: dict[str, Any] = {
        "id": 7, "app_id": None, "url": "http://127.0.0.1:9/hook", "method": "POST",
        "timeout_s": 10, "body": BODY, "content_type": "application/json", "charset": "utf-8",
        "headers": (), "status": Status.IN_PROGRESS, "retry_count": 1, "due": NOW + 10.0,
        "created": NOW - 0.123456, "modified": NOW, "last_status_code": None, "last_error": None,
    }  # fmt: skip
    values.update(changes)
    return Task(**values)


def reference(secret: str) -> standardwebhooks.Webhook:
    return standardwebhooks.Webhook(secret)


# -- the signature --------------------------------------------------------------


def test_secrets_are_standard_webhooks_secrets() -> None:
    secret = new_signing_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)
    assert len(secret_key(secret)) == 32
    assert new_signing_secret() != secret
    reference(secret)  # the reference accepts it
    for bad in ("whsec_", "whsec_not base64!", ""):
        with pytest.raises(ValueError):
            secret_key(bad)


def test_our_signature_is_the_references() -> None:
    secret = new_signing_secret()
    moment = datetime.fromtimestamp(NOW, tz=UTC)
    expected = reference(secret).sign("msg_1", moment, BODY.decode())
    assert signature(secret, "msg_1", NOW, BODY) == expected


def test_the_reference_verifies_our_headers() -> None:
    secret, other = new_signing_secret(), new_signing_secret()
    now = int(datetime.now(UTC).timestamp())
    headers = signature_headers([secret], task(), now)
    assert headers["webhook-id"] == message_id(task())
    assert reference(secret).verify(BODY, headers) == {"order": 42, "note": "grüße"}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        reference(other).verify(BODY, headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        reference(secret).verify(BODY + b" ", headers)


def test_our_verifier_accepts_the_references_signature() -> None:
    secret = new_signing_secret()
    given = reference(secret).sign("msg_x", datetime.fromtimestamp(NOW, tz=UTC), BODY.decode())
    headers = {"Webhook-Id": "msg_x", "Webhook-Timestamp": str(NOW), "Webhook-Signature": given}
    assert verify(secret, headers, BODY, now=NOW) == "msg_x"


def test_message_ids_are_stable_per_task() -> None:
    first = message_id(task())
    assert first == message_id(task(retry_count=5, due=NOW + 99.0))  # a later attempt
    assert first.startswith("msg_7_")
    assert message_id(task(id=8)) != first
    assert message_id(task(created=NOW + 1.0)) != first  # another deployment's task 7


# -- the verifier -----------------------------------------------------------------


def signed(secrets: list[str], body: bytes = BODY, at: int = NOW) -> dict[str, str]:
    return signature_headers(secrets, task(body=body), at)


def test_verify_checks_every_signature_of_a_rotation() -> None:
    old, new, stranger = new_signing_secret(), new_signing_secret(), new_signing_secret()
    headers = signed([new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secrets in ([old], [new], [stranger, new], (s for s in [old])):
        assert verify(secrets, headers, BODY, now=NOW) == message_id(task())
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(stranger, headers, BODY, now=NOW)


def test_verify_refuses_a_changed_call() -> None:
    secret = new_signing_secret()
    headers = signed([secret])
    changed = [
        ({**headers, "webhook-id": "msg_other"}, BODY),
        ({**headers, "webhook-timestamp": str(NOW + 1)}, BODY),
        (headers, BODY + b"\n"),
        (headers, b""),
    ]
    for sent, body in changed:
        with pytest.raises(SignatureError, match="no signature matches"):
            verify(secret, sent, body, now=NOW)


def test_verify_keeps_the_timestamp_within_the_tolerance() -> None:
    secret = new_signing_secret()
    headers = signed([secret])
    verify(secret, headers, BODY, now=NOW + 300)
    verify(secret, headers, BODY, now=NOW - 300)
    with pytest.raises(SignatureError, match="too old"):
        verify(secret, headers, BODY, now=NOW + 301)
    with pytest.raises(SignatureError, match="future"):
        verify(secret, headers, BODY, now=NOW - 301)
    with pytest.raises(SignatureError, match="too old"):
        verify(secret, headers, BODY, now=NOW + 11, tolerance_s=10)


def test_verify_refuses_malformed_headers() -> None:
    secret = new_signing_secret()
    headers = signed([secret])
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {key: value for key, value in headers.items() if key != name}
        with pytest.raises(SignatureError, match="headers are required"):
            verify(secret, partial, BODY, now=NOW)
    for stamp in ("1.5e9", "-1", "\uff11\uff17\uff10\uff10", "abc", "9" * 20):
        with pytest.raises(SignatureError, match="not a number"):
            verify(secret, {**headers, "webhook-timestamp": stamp}, BODY, now=NOW)
    good = headers["webhook-signature"]
    for junk in ("v1,", "v1,***", "v2," + good[3:], "nonsense", good[3:]):
        with pytest.raises(SignatureError, match="no signature matches"):
            verify(secret, {**headers, "webhook-signature": junk}, BODY, now=NOW)
        mixed = {**headers, "webhook-signature": f"{junk} {good}"}
        assert verify(secret, mixed, BODY, now=NOW)  # junk next to a good one is skipped
    with pytest.raises(ValueError):
        verify([], headers, BODY, now=NOW)


# -- the signer, on a real store ---------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_signer_signs_with_the_apps_secrets_cached(store: Store) -> None:
    secret = new_signing_secret()
    row = await store.apps.create("signed", "a" * 64, NOW, secret)
    clock = Clock()
    signer = Signer(store.apps, cache_s=5, clock=clock, wall=lambda: NOW + 0.9)
    headers = await signer.headers(task(app_id=row["id"]))
    assert headers["webhook-timestamp"] == str(NOW)
    assert verify(secret, headers, BODY, now=NOW) == message_id(task())

    new = new_signing_secret()
    assert await store.apps.rotate_signing_secret("signed", new)
    assert await signer.secrets_for(row["id"]) == (secret,)  # cached
    clock.now += 5.1
    assert await signer.secrets_for(row["id"]) == (new, secret)  # both sign now
    headers = await signer.headers(task(app_id=row["id"]))
    assert len(headers["webhook-signature"].split()) == 2
    for one in (new, secret):
        verify(one, headers, BODY, now=NOW)


async def test_signer_without_an_application_uses_the_server_secret(store: Store) -> None:
    headers = await Signer(store.apps, cache_s=5, wall=lambda: NOW).headers(task(app_id=None))
    server_secret = await store.apps.server_secret(SERVER_SECRET, new_signing_secret, NOW)
    assert server_secret.startswith("whsec_")
    verify(server_secret, headers, BODY, now=NOW)


async def test_an_application_without_a_secret_gets_one(store: Store) -> None:
    row = await store.apps.create("unsigned", "b" * 64, NOW)  # made by hand, no secret
    assert row["signing_secret"] is None
    headers = await Signer(store.apps, cache_s=0, wall=lambda: NOW).headers(task(app_id=row["id"]))
    stored = await store.apps.by_name("unsigned")
    assert stored and stored["signing_secret"]
    verify(stored["signing_secret"], headers, BODY, now=NOW)
    again = await store.apps.signing_secrets(row["id"], new_signing_secret)
    assert again == (stored["signing_secret"],)  # made once


# -- a real ntorque signs its calls -------------------------------------------------


@pytest.fixture(scope="module")
def server(
    module_backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NtorqueServer]:
    workdir = tmp_path_factory.mktemp(f"signing-{module_backend.name}")
    settings = {"NTORQUE_AUTH_CACHE": "0", "NTORQUE_MIN_DUE_DELAY": "1.5"}
    with server_for(module_backend, workdir, (), **settings) as running:
        yield running


def create_app(server: NtorqueServer) -> tuple[str, str, str]:
    """A new application: its name, key and signing secret."""
    name = f"app-{uuid.uuid4().hex[:10]}"
    done = server.command("create-app", "--name", name)
    key, secret = KEY_LINE.search(done.stdout), SECRET_LINE.search(done.stdout)
    assert key and secret, done.stdout
    return name, key.group(1), secret.group(1)


def finished(server: NtorqueServer, task_id: int, key: str) -> dict[str, Any]:
    """The task once completed or failed (polled with its application's key)."""
    deadline = time.monotonic() + 30
    while (found := server.task(task_id, key=key))["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


def deliver(
    server: NtorqueServer, hooks: HookServer, key: str, route: str, calls: int
) -> list[Call]:
    path = f"{route}/{uuid.uuid4().hex}"
    created = server.enqueue(hooks.url(path), BODY, {"Content-Type": "application/json"}, key)
    assert finished(server, created["id"], key)["status"] == "completed"
    return hooks.wait_for_calls(path, calls)


def assert_verified(call: Call, *secrets: str) -> str:
    """Both verifiers accept the call under each secret; its webhook-id."""
    assert call.body == BODY
    for secret in secrets:
        reference(secret).verify(call.body, call.headers)
        webhook_id = verify(secret, call.headers, call.body)
    return webhook_id


def test_every_call_is_signed(server: NtorqueServer, hooks: HookServer) -> None:
    _, key, secret = create_app(server)
    (call,) = deliver(server, hooks, key, "/status/200", 1)
    assert assert_verified(call, secret).startswith("msg_")
    with pytest.raises(SignatureError):
        verify(new_signing_secret(), call.headers, call.body)


def test_a_redirect_that_drops_the_body_is_signed_over_what_it_sends(
    server: NtorqueServer, hooks: HookServer
) -> None:
    _, key, secret = create_app(server)
    target = f"/status/200/{uuid.uuid4().hex}"
    created = server.enqueue(hooks.url(f"/redirect/303{target}"), BODY, None, key)
    assert finished(server, created["id"], key)["status"] == "completed"
    (first,) = hooks.wait_for_calls(f"/redirect/303{target}", 1)
    (moved,) = hooks.wait_for_calls(target, 1)
    assert (moved.method, moved.body) == ("GET", b"")
    # (The reference verifier parses the body as JSON, so it cannot take an empty one.)
    assert verify(secret, first.headers, first.body) == verify(secret, moved.headers, b"")


def test_a_retry_keeps_its_id_and_is_signed_anew(server: NtorqueServer, hooks: HookServer) -> None:
    _, key, secret = create_app(server)
    first, second = deliver(server, hooks, key, "/flaky/1", 2)
    assert assert_verified(first, secret) == assert_verified(second, secret)
    stamps = [int(call.headers["webhook-timestamp"]) for call in (first, second)]
    assert stamps[1] > stamps[0]  # a new timestamp (the retry came 1.5 s later) ...
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]  # ... signed


def test_a_rotation_signs_with_both_secrets(server: NtorqueServer, hooks: HookServer) -> None:
    name, key, old = create_app(server)
    rotated = server.command("rotate-secret", "--name", name)
    match = NEW_SECRET_LINE.search(rotated.stdout)
    assert match, rotated.stdout
    new = match.group(1)
    shown = server.command("show-secret", "--name", name).stdout
    assert shown.split(": ")[1].split() == [new, old]
    (call,) = deliver(server, hooks, key, "/status/200", 1)
    assert len(call.headers["webhook-signature"].split(" ")) == 2
    assert_verified(call, old, new)

    server.command("rotate-secret", "--name", name, "--finish")
    (call,) = deliver(server, hooks, key, "/status/200", 1)
    assert_verified(call, new)
    with pytest.raises(SignatureError):
        verify(old, call.headers, call.body)
    assert server.command("show-secret", "--name", name).stdout.split(": ")[1].split() == [new]


def test_secret_commands_name_a_missing_application(server: NtorqueServer) -> None:
    for args in (("rotate-secret",), ("rotate-secret", "--finish"), ("show-secret",)):
        done = server.command(*args, "--name", "nobody-here", check=False)
        assert done.returncode == 1
        assert "no application named 'nobody-here'" in done.stderr


def test_without_authentication_the_server_secret_signs(
    backend: Backend, tmp_path: Path, hooks: HookServer
) -> None:
    with server_for(backend, tmp_path, NTORQUE_AUTHENTICATE="false") as open_server:
        shown = open_server.command("show-secret").stdout
        secret = shown.rsplit(": ", 1)[1].strip()
        (call,) = deliver(open_server, hooks, "", "/status/200", 1)
    assert_verified(call, secret)
    assert open_server.command("show-secret").stdout == shown  # one secret, kept


# -- the example receivers verify real calls ----------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def wsgi_example(server: NtorqueServer) -> Iterator[tuple[str, str, list[str]]]:
    """The WSGI example, serving an application's secret; its url, key, handled ids."""
    _, key, secret = create_app(server)
    handled: list[str] = []
    app = wsgi_receiver.receiver(secret, lambda webhook_id, _: handled.append(webhook_id))
    with make_server("127.0.0.1", 0, app, handler_class=QuietHandler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_port}/hook", key, handled
        httpd.shutdown()
        thread.join(5)


@pytest.fixture
def tornado_example(server: NtorqueServer) -> Iterator[tuple[str, str, list[str]]]:
    """The Tornado example on a loop of its own (a thread), like wsgi_example."""
    _, key, secret = create_app(server)
    handled: list[str] = []
    app = tornado_receiver.receiver([secret], lambda webhook_id, _: handled.append(webhook_id))
    sockets = bind_sockets(0, "127.0.0.1")
    loop = asyncio.new_event_loop()
    stopped = asyncio.Event()

    async def serve() -> None:
        http = HTTPServer(app)
        http.add_sockets(sockets)
        await stopped.wait()
        http.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}/hook", key, handled
    loop.call_soon_threadsafe(stopped.set)
    thread.join(5)
    loop.close()


@pytest.mark.parametrize("example", ["wsgi_example", "tornado_example"])
def test_example_receivers_verify_ntorques_calls(
    example: str, request: pytest.FixtureRequest, server: NtorqueServer
) -> None:
    url, key, handled = request.getfixturevalue(example)
    good = server.enqueue(url, BODY, {"Content-Type": "application/json"}, key)
    assert finished(server, good["id"], key)["status"] == "completed"
    assert handled == [f"msg_{good['id']}_{handled[0].rsplit('_', 1)[1]}"]

    _, other_key, _ = create_app(server)  # signed with another application's secret
    refused = server.enqueue(url, BODY, {"Content-Type": "application/json"}, other_key)
    done = finished(server, refused["id"], other_key)
    assert (done["status"], done["last_status_code"]) == ("failed", 400)
    assert "no signature matches" in done["last_error"]
    assert len(handled) == 1


def test_tampered_calls_get_400_from_the_examples(
    wsgi_example: tuple[str, str, list[str]], tornado_example: tuple[str, str, list[str]]
) -> None:
    for url, _, handled in (wsgi_example, tornado_example):
        forged = signed([new_signing_secret()], at=int(datetime.now(UTC).timestamp()))
        request = urllib.request.Request(url, BODY, forged, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400
        assert b"no signature matches" in refused.value.read()
        assert handled == []
