"""What a hook receives: the Content-Type label of each kind of body, and
pass-through headers, through a real node (one per backend, in the test's
event loop) and the recording hook server.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ntorque.tasks import Status, Task
from ntorque.webhook import Webhook, make_client
from tests.conftest import Backend, live_for
from tests.console_session import Session
from tests.hookserver import HookServer
from tests.inprocess import LiveNode

pytestmark = pytest.mark.asyncio(loop_scope="module")

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
async def node(module_backend: Backend) -> AsyncIterator[LiveNode]:
    async with live_for(module_backend, auth_cache_s=0, min_due_delay_s=0.2) as running:
        yield running


def hook_path() -> str:
    return f"/status/200/{uuid.uuid4().hex}"


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


async def test_the_console_shows_the_label_the_hook_gets(node: LiveNode, hooks: HookServer) -> None:
    """No charset is known: none is shown (not "charset=None")."""
    session = Session(node)  # type: ignore[arg-type]  # a server with a port will do
    await asyncio.to_thread(session.login, node.key)
    for kind in ("binary", "latin1-declared", "json"):
        sent_type, body, arriving_type, _ = LABELS[kind]
        task = await node.enqueue(hooks.url(hook_path()), body, {"Content-Type": sent_type})
        page = await asyncio.to_thread(session.get, f"/console/task/{task['id']}")
        assert page.status == 200
        heading = next(line for line in page.text.splitlines() if "<h2>Body" in line)
        assert f"bytes · {arriving_type}</small>" in heading, heading


async def test_a_declared_charset_the_body_breaks_is_refused(node: LiveNode) -> None:
    answer = await node.request(
        "POST", "/?url=http://127.0.0.1:9/x", LATIN1, {"Content-Type": "text/plain; charset=utf-8"}
    )
    assert answer.status == 400
    assert answer.json == {"status": 400, "error": "the body is not valid utf-8"}


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
