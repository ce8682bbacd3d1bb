"""The original's client cases: the plain client, and the hybrid (outbox) one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ntorque import config
from ntorque.client import Client, ClientError, transaction
from ntorque.store import engine as database
from tests.conftest import Backend, server_for
from tests.hookserver import HookServer
from tests.server import NtorqueServer


@pytest.fixture(scope="module")
def server(
    module_backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NtorqueServer]:
    with server_for(module_backend, tmp_path_factory.mktemp("client")) as running:
        yield running


def path(kind: str) -> str:
    return f"/status/200/client-{kind}-{uuid.uuid4().hex}"


def test_plain_client_creates_a_task_that_is_performed(
    server: NtorqueServer, hooks: HookServer
) -> None:
    client = Client(server.base_url, server.key)
    hook = path("plain")
    task = client.enqueue(hooks.url(hook), "user_id=1", headers={"X-Trace": "t1"}, timeout=9)
    assert task["status"] == "pending"
    assert task["timeout"] == 9
    assert client.task(task["id"])["id"] == task["id"]
    (call,) = hooks.wait_for_calls(hook, 1)
    assert call.body == b"user_id=1"
    assert call.headers["x-trace"] == "t1"
    assert server.wait_for(task["id"])["status"] == "completed"


def test_plain_client_raises_the_servers_error(server: NtorqueServer) -> None:
    with pytest.raises(ClientError) as raised:
        Client(server.base_url, server.key).enqueue("not a url")
    assert raised.value.status == 400
    assert "url" in raised.value.message
    with pytest.raises(ClientError) as raised:
        Client(server.base_url, "wrong-key").task(1)
    assert raised.value.status == 401


async def test_outbox_task_exists_only_after_commit_then_is_notified(
    server: NtorqueServer, module_backend: Backend, hooks: HookServer
) -> None:
    client = Client(server.base_url, server.key)
    engine = database.make_engine(config.Settings(database_url=module_backend.database_url))
    hook = path("outbox")
    try:
        async with transaction(client, engine) as outbox:
            task_id = await outbox.add(hooks.url(hook), b"in-transaction")
            with pytest.raises(ClientError) as raised:
                client.task(task_id)  # not committed: ntorque cannot see it
            assert raised.value.status == 404
    finally:
        await engine.dispose()
    done = server.wait_for(task_id)
    assert done["status"] == "completed"
    assert [call.body for call in hooks.calls(hook)] == [b"in-transaction"]


async def test_outbox_rolled_back_leaves_no_task(
    server: NtorqueServer, module_backend: Backend, hooks: HookServer
) -> None:
    client = Client(server.base_url, server.key)
    engine = database.make_engine(config.Settings(database_url=module_backend.database_url))
    hook = path("rollback")
    try:
        with pytest.raises(RuntimeError):
            async with transaction(client, engine) as outbox:
                task_id = await outbox.add(hooks.url(hook), b"never")
                raise RuntimeError("the caller's work failed")
    finally:
        await engine.dispose()
    with pytest.raises(ClientError) as raised:
        client.task(task_id)
    assert raised.value.status == 404
    assert hooks.calls(hook) == []


async def test_outbox_refuses_an_unknown_key(
    server: NtorqueServer, module_backend: Backend, hooks: HookServer
) -> None:
    engine = database.make_engine(config.Settings(database_url=module_backend.database_url))
    try:
        with pytest.raises(ClientError) as raised:
            async with transaction(Client(server.base_url, "not-a-key"), engine) as outbox:
                await outbox.add(hooks.url(path("badkey")))
    finally:
        await engine.dispose()
    assert raised.value.status == 401


def test_outbox_validates_like_the_api() -> None:
    from ntorque.errors import InvalidRequest
    from ntorque.intake import new_task
    from ntorque.targets import Policy

    with pytest.raises(InvalidRequest):
        new_task(app_id=None, query={"url": "ftp://x"}, headers={}, body=b"",
                 default_timeout_s=60, max_timeout_s=7200, policy=Policy())  # fmt: skip
