"""Signed calls (Standard Webhooks): the signature, our verifier and the
reference `standardwebhooks` package agree, and match the specification's
example computed by hand; a node signs every call (retries keep their
webhook-id, rotations send two signatures); the example receivers verify real
calls. The nodes run in the test's own event loop, on both backends; the
secret commands run in this process too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import pytest_asyncio
import standardwebhooks
import yaml
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from examples import tornado_receiver, wsgi_receiver
from ntorque import __main__ as cli
from ntorque.app import QUIET_LOGGERS
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
from tests.conftest import Backend, live_for
from tests.hookserver import Call, HookServer
from tests.inprocess import LiveNode

NOW = 1_700_000_000
BODY = '{"order": 42, "note": "grüße"}'.encode()
# task(): id 7, created NOW - 0.123456 -> 1699999999876544 microseconds
MESSAGE_ID = "msg_7_1699999999876544"
NEW_SECRET_LINE = re.compile(r"new signing secret of .*: (whsec_\S+)")
in_node_loop = pytest.mark.asyncio(loop_scope="module")  # the module's shared node


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


# The example of the Standard Webhooks specification (and of its reference libraries).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_specifications_example_signature() -> None:
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    content = b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330." + SPEC_BODY
    by_hand = "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    assert by_hand == SPEC_SIGNATURE
    assert secret_key(SPEC_SECRET) == key
    assert signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP) == SPEC_ID
    with pytest.raises(SignatureError):
        verify(SPEC_SECRET, headers, SPEC_BODY + b" ", now=SPEC_TIMESTAMP)


def test_our_signature_is_the_references() -> None:
    secret = new_signing_secret()
    moment = datetime.fromtimestamp(NOW, tz=UTC)
    expected = reference(secret).sign("msg_1", moment, BODY.decode())
    assert signature(secret, "msg_1", NOW, BODY) == expected


def test_the_reference_verifies_our_headers() -> None:
    secret, other = new_signing_secret(), new_signing_secret()
    now = int(datetime.now(UTC).timestamp())
    headers = signature_headers([secret], task(), now)
    assert headers["webhook-id"] == MESSAGE_ID
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
    assert first == MESSAGE_ID  # msg_<id>_<created in µs>
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
        assert verify(secrets, headers, BODY, now=NOW) == MESSAGE_ID
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
    assert verify(secret, headers, BODY, now=NOW) == MESSAGE_ID

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


# -- a node signs its calls -----------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[LiveNode]:
    """A retry falls due 1 s after its failure: a new whole second, a new timestamp."""
    async with live_for(module_backend, auth_cache_s=0, min_due_delay_s=1.0) as running:
        yield running


@pytest.fixture(scope="module")
def config(module_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A configuration file for the command line on the node's database."""
    return config_file(tmp_path_factory.mktemp(f"signing-{module_backend.name}"), module_backend)


def config_file(directory: Path, backend: Backend) -> Path:
    path = directory / "ntorque.yml"
    path.write_text(yaml.safe_dump({"database_url": backend.database_url}))
    return path


@contextlib.contextmanager
def logging_kept() -> Iterator[None]:
    """The command line sets up logging for its process: undo it for ours."""
    root = logging.getLogger()
    names = ("tornado.access", *QUIET_LOGGERS)
    levels = {name: logging.getLogger(name).level for name in names}
    root_level, root_handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        root.setLevel(root_level)
        root.handlers[:] = root_handlers


async def command(
    capsys: pytest.CaptureFixture[str], config: Path, *args: str, check: bool = True
) -> tuple[int, str, str]:
    """`python -m ntorque <args> --config <config>`, run in this process (in a
    thread: the command runs an event loop of its own); exit status, stdout,
    stderr. With check, the status must be 0."""
    capsys.readouterr()
    with logging_kept():
        status = await asyncio.to_thread(cli.main, [*args, "--config", str(config)])
    out, err = capsys.readouterr()
    assert status == 0 or not check, (args, status, out, err)
    return status, out, err


async def create_app(node: LiveNode) -> tuple[str, str, str]:
    """A new application (as `create-app` makes it): its name, key and signing secret."""
    created = await node.apps.create(f"app-{uuid.uuid4().hex[:10]}")
    return created.app.name, created.key, created.signing_secret


async def finished(node: LiveNode, task_id: int, key: str) -> dict[str, Any]:
    """The task once completed or failed (polled with its application's key)."""
    deadline = time.monotonic() + 30
    while (found := await node.task(task_id, key=key))["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.02)
    return found


async def webhook_id(node: LiveNode, task_id: int) -> str:
    """What the calls of a task must carry, worked out by hand from the stored
    task: msg_<task id>_<created, in microseconds>."""
    task = await node.running.queue.get(task_id)
    assert task is not None
    return f"msg_{task_id}_{round(task.created * 1_000_000)}"


async def deliver(
    node: LiveNode, hooks: HookServer, key: str, route: str, calls: int
) -> tuple[list[Call], str]:
    """The calls of a new task to route, and the webhook-id they must carry."""
    path = f"{route}/{uuid.uuid4().hex}"
    created = await node.enqueue(hooks.url(path), BODY, {"Content-Type": "application/json"}, key)
    assert (await finished(node, created["id"], key))["status"] == "completed"
    return await hooks.wait_for_calls_async(path, calls), await webhook_id(node, created["id"])


def assert_verified(call: Call, *secrets: str) -> str:
    """Both verifiers accept the call under each secret; its webhook-id."""
    assert call.body == BODY
    for secret in secrets:
        reference(secret).verify(call.body, call.headers)
        webhook_id = verify(secret, call.headers, call.body)
    return webhook_id


@in_node_loop
async def test_every_call_is_signed(node: LiveNode, hooks: HookServer) -> None:
    _, key, secret = await create_app(node)
    (call,), expected = await deliver(node, hooks, key, "/status/200", 1)
    assert assert_verified(call, secret) == expected
    assert expected.startswith("msg_")
    with pytest.raises(SignatureError):
        verify(new_signing_secret(), call.headers, call.body)


@in_node_loop
async def test_a_redirect_that_drops_the_body_is_signed_over_what_it_sends(
    node: LiveNode, hooks: HookServer
) -> None:
    _, key, secret = await create_app(node)
    target = f"/status/200/{uuid.uuid4().hex}"
    created = await node.enqueue(hooks.url(f"/redirect/303{target}"), BODY, None, key)
    assert (await finished(node, created["id"], key))["status"] == "completed"
    (first,) = await hooks.wait_for_calls_async(f"/redirect/303{target}", 1)
    (moved,) = await hooks.wait_for_calls_async(target, 1)
    assert (moved.method, moved.body) == ("GET", b"")
    # (The reference verifier parses the body as JSON, so it cannot take an empty one.)
    first_id = verify(secret, first.headers, first.body)
    assert first_id == verify(secret, moved.headers, b"")
    assert first_id == await webhook_id(node, created["id"])


@in_node_loop
async def test_a_retry_keeps_its_id_and_is_signed_anew(node: LiveNode, hooks: HookServer) -> None:
    _, key, secret = await create_app(node)
    (first, second), expected = await deliver(node, hooks, key, "/flaky/1", 2)
    assert assert_verified(first, secret) == assert_verified(second, secret) == expected
    stamps = [int(call.headers["webhook-timestamp"]) for call in (first, second)]
    assert stamps[1] > stamps[0]  # a new timestamp (the retry came 1 s later) ...
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]  # ... signed


@in_node_loop
async def test_a_rotation_signs_with_both_secrets(
    node: LiveNode, config: Path, hooks: HookServer, capsys: pytest.CaptureFixture[str]
) -> None:
    name, key, old = await create_app(node)
    _, rotated, _ = await command(capsys, config, "rotate-secret", "--name", name)
    match = NEW_SECRET_LINE.search(rotated)
    assert match, rotated
    new = match.group(1)
    _, shown, _ = await command(capsys, config, "show-secret", "--name", name)
    assert shown.split(": ")[1].split() == [new, old]
    (call,), _ = await deliver(node, hooks, key, "/status/200", 1)
    assert len(call.headers["webhook-signature"].split(" ")) == 2
    assert_verified(call, old, new)

    await command(capsys, config, "rotate-secret", "--name", name, "--finish")
    (call,), _ = await deliver(node, hooks, key, "/status/200", 1)
    assert_verified(call, new)
    with pytest.raises(SignatureError):
        verify(old, call.headers, call.body)
    _, shown, _ = await command(capsys, config, "show-secret", "--name", name)
    assert shown.split(": ")[1].split() == [new]


@in_node_loop
async def test_secret_commands_name_a_missing_application(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (("rotate-secret",), ("rotate-secret", "--finish"), ("show-secret",)):
        status, _, err = await command(capsys, config, *args, "--name", "nobody-here", check=False)
        assert status == 1
        assert "no application named 'nobody-here'" in err


async def test_without_authentication_the_server_secret_signs(
    backend: Backend, tmp_path: Path, hooks: HookServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, backend)
    async with live_for(backend, authenticate=False) as open_node:
        _, shown, _ = await command(capsys, config, "show-secret")
        secret = shown.rsplit(": ", 1)[1].strip()
        (call,), expected = await deliver(open_node, hooks, "", "/status/200", 1)
    assert assert_verified(call, secret) == expected
    assert (await command(capsys, config, "show-secret"))[1] == shown  # one secret, kept


# -- the example receivers verify real calls ----------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


Handled = list[str]


@contextlib.asynccontextmanager
async def wsgi_example(secret: str, handled: Handled) -> AsyncIterator[str]:
    """The WSGI example serving secret (on a thread: WSGI blocks); its url."""
    app = wsgi_receiver.receiver(secret, lambda webhook_id, _: handled.append(webhook_id))
    with make_server("127.0.0.1", 0, app, handler_class=QuietHandler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_port}/hook"
        finally:
            await asyncio.to_thread(httpd.shutdown)
            thread.join(5)


@contextlib.asynccontextmanager
async def tornado_example(secret: str, handled: Handled) -> AsyncIterator[str]:
    """The Tornado example serving secret, on this event loop; its url."""
    app = tornado_receiver.receiver([secret], lambda webhook_id, _: handled.append(webhook_id))
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}/hook"
    finally:
        server.stop()
        await server.close_all_connections()


Example = Callable[[str, Handled], contextlib.AbstractAsyncContextManager[str]]


@in_node_loop
@pytest.mark.parametrize("example", [wsgi_example, tornado_example], ids=["wsgi", "tornado"])
async def test_example_receivers_verify_ntorques_calls(example: Example, node: LiveNode) -> None:
    _, key, secret = await create_app(node)
    handled: Handled = []
    async with example(secret, handled) as url:
        good = await node.enqueue(url, BODY, {"Content-Type": "application/json"}, key)
        assert (await finished(node, good["id"], key))["status"] == "completed"
        assert handled == [await webhook_id(node, good["id"])]

        _, other_key, _ = await create_app(node)  # signed with another application's secret
        refused = await node.enqueue(url, BODY, {"Content-Type": "application/json"}, other_key)
        done = await finished(node, refused["id"], other_key)
    assert (done["status"], done["last_status_code"]) == ("failed", 400)
    assert "no signature matches" in done["last_error"]
    assert len(handled) == 1


def post_forged(url: str) -> tuple[int, bytes]:
    """A call signed with a stranger's secret (blocking: run it in a thread);
    the answer's status and body."""
    forged = signed([new_signing_secret()], at=int(datetime.now(UTC).timestamp()))
    request = urllib.request.Request(url, BODY, forged, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    return refused.value.code, refused.value.read()


async def test_tampered_calls_get_400_from_the_examples() -> None:
    for example in (wsgi_example, tornado_example):
        handled: Handled = []
        async with example(new_signing_secret(), handled) as url:
            status, body = await asyncio.to_thread(post_forged, url)
        assert status == 400
        assert b"no signature matches" in body
        assert handled == []
