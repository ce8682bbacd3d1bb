"""Each error answer raises its own ClientError subclass, from a real answer
of a node in the test's own event loop, with both clients (see tests/clients.py).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio

from ntorque import client_errors
from ntorque.client import (
    ClientError,
    Conflict,
    KeyReused,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from ntorque.handlers import RETRY_AFTER_UNAVAILABLE_S
from tests.clients import Clients, client_for
from tests.conftest import Backend, give_back, live_for, make_backend
from tests.hookserver import HookServer
from tests.inprocess import LiveNode
from tests.netfaults import TcpProxy

in_node_loop = pytest.mark.asyncio(loop_scope="module")  # the module's shared node
MAX_BODY_BYTES = 1024
KINDS = ["async", "sync"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[LiveNode]:
    async with live_for(module_backend, max_body_bytes=MAX_BODY_BYTES) as running:
        yield running


@pytest.fixture(params=KINDS)
def api(request: pytest.FixtureRequest, node: LiveNode) -> Clients:
    return client_for(request.param, node.base_url, node.key)


def hook(hooks: HookServer) -> str:
    return hooks.url(f"/status/200/client-errors-{uuid.uuid4().hex}")


@in_node_loop
async def test_a_bad_request_is_a_validation_error_naming_the_field(api: Clients) -> None:
    with pytest.raises(ValidationError) as raised:
        await api.enqueue("not a url")
    assert (raised.value.status, raised.value.field, raised.value.data["status"]) == (
        400,
        "url",
        400,
    )
    with pytest.raises(ValidationError) as raised:
        await api.batch([{"url": "ftp://nowhere"}])
    assert [error["field"] for error in raised.value.errors] == ["url"]


@in_node_loop
async def test_a_wrong_key_is_unauthorized(api: Clients, node: LiveNode) -> None:
    with pytest.raises(Unauthorized) as raised:
        await client_for(api, node.base_url, "wrong-key").get(1)
    assert raised.value.status == 401


@in_node_loop
async def test_a_missing_task_queue_or_schedule_is_not_found(api: Clients) -> None:
    for method, missing in (("get", 999_999_999), ("queue", "none"), ("schedule", 999_999_999)):
        with pytest.raises(NotFound) as raised:
            await getattr(api, method)(missing)
        assert raised.value.status == 404


@in_node_loop
async def test_cancelling_a_finished_task_is_a_conflict(api: Clients, hooks: HookServer) -> None:
    task = await api.enqueue(hook(hooks), delay=600)
    await api.cancel(task["id"])
    with pytest.raises(Conflict) as raised:
        await api.cancel(task["id"])
    assert (raised.value.status, "cancelled" in raised.value.message) == (409, True)


@in_node_loop
async def test_a_key_reused_with_another_body_is_key_reused(
    api: Clients, hooks: HookServer
) -> None:
    url, key = hook(hooks), f"order-{uuid.uuid4().hex}"
    await api.enqueue(url, b"one", idempotency_key=key, delay=600)
    with pytest.raises(KeyReused) as raised:
        await api.enqueue(url, b"two", idempotency_key=key, delay=600)
    assert raised.value.status == 422
    assert isinstance(raised.value, ValidationError)  # the request itself is at fault


@in_node_loop
async def test_a_body_over_the_limit_is_payload_too_large(api: Clients, hooks: HookServer) -> None:
    with pytest.raises(PayloadTooLarge) as raised:
        await api.enqueue(hook(hooks), b"x" * (MAX_BODY_BYTES + 1))
    assert raised.value.status == 413


@pytest.mark.parametrize("kind", KINDS)
async def test_too_many_wrong_keys_are_too_many_requests(
    kind: str, sqlite_backend: Backend
) -> None:
    async with live_for(sqlite_backend, auth_failure_limit=1, auth_failure_window_s=60) as node:
        wrong = client_for(kind, node.base_url, "wrong-key")
        with pytest.raises(Unauthorized):
            await wrong.get(1)
        with pytest.raises(TooManyRequests) as raised:
            await wrong.get(1)
    assert raised.value.status == 429
    assert raised.value.retry_after_s is not None and 0 < raised.value.retry_after_s <= 60


@pytest.fixture
def sqlite_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request, "sqlite", tmp_path)


@pytest.fixture
def proxied_postgres(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Backend, TcpProxy]]:
    """A fresh PostgreSQL backend reached through a proxy the test can cut."""
    backend = make_backend(request, "postgres", tmp_path)
    original = backend.database_url
    parts = urlsplit(original)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.open()
    user, at, _ = parts.netloc.rpartition("@")
    backend.database_url = urlunsplit(parts._replace(netloc=f"{user}{at}127.0.0.1:{proxy.port}"))
    try:
        yield backend, proxy
    finally:
        proxy.close()
        backend.database_url = original
        give_back(request, backend)


@pytest.mark.postgres
async def test_the_database_away_is_unavailable_with_retry_after(
    proxied_postgres: tuple[Backend, TcpProxy], hooks: HookServer
) -> None:
    backend, proxy = proxied_postgres
    async with live_for(backend, db_timeout_s=1) as node:
        await asyncio.to_thread(proxy.close)
        for kind in KINDS:
            with pytest.raises(Unavailable) as raised:
                await client_for(kind, node.base_url, node.key).enqueue(hook(hooks))
            assert (raised.value.status, raised.value.retry_after_s) == (
                503, RETRY_AFTER_UNAVAILABLE_S,
            )  # fmt: skip


# -- the answers read, without a server ---------------------------------------------


def error_for(status: int, body: bytes, **headers: str) -> ClientError:
    return client_errors.client_error(status, headers, body)


def test_each_status_has_its_class_and_any_other_is_a_client_error() -> None:
    for status, kind in client_errors.BY_STATUS.items():
        error = error_for(status, json.dumps({"status": status, "error": "why"}).encode())
        assert (type(error), error.status, error.message) == (kind, status, "why")
    for status in (405, 500, 502):
        assert type(error_for(status, b"{}")) is ClientError


def test_retry_after_is_read_in_seconds_and_a_date_is_left_out() -> None:
    assert error_for(503, b"{}", **{"retry-after": "5"}).retry_after_s == 5.0
    assert (
        error_for(429, b"{}", **{"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}).retry_after_s
        is None
    )
    assert error_for(503, b"{}").retry_after_s is None


def test_an_answer_that_is_not_json_is_quoted() -> None:
    error = error_for(404, b"<html>Not found</html>")
    assert (type(error), error.message, error.data) == (NotFound, "<html>Not found</html>", {})
