"""The original's hybrid client, the transactional outbox: tasks written in
the caller's own transaction, against a node in the test's own event loop, on
both backends. The blocking client is pushed from a thread, the async one awaited.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from ntorque import config
from ntorque.applications import Applications
from ntorque.client import AsyncClient, Client, ClientError, Outbox, Unauthorized, transaction
from ntorque.keys import legacy_hash, new_key
from ntorque.store import Store
from ntorque.store import engine as database
from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import LiveNode

NOW = 1_700_000_000.0
in_node_loop = pytest.mark.asyncio(loop_scope="module")  # the module's shared node


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_backend: Backend) -> AsyncIterator[LiveNode]:
    async with live_for(module_backend) as running:
        yield running


def path(kind: str) -> str:
    return f"/status/200/outbox-{kind}-{uuid.uuid4().hex}"


@pytest_asyncio.fixture(loop_scope="module")
async def caller_engine(module_backend: Backend) -> AsyncIterator[AsyncEngine]:
    """The caller's own engine on ntorque's database (the outbox writes with it)."""
    made = database.make_engine(config.Settings(database_url=module_backend.database_url))
    yield made
    await made.dispose()


@in_node_loop
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_outbox_task_exists_only_after_commit_then_is_notified(
    kind: str,
    node: LiveNode,
    caller_engine: AsyncEngine,
    hooks: HookServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plain = Client(node.base_url, node.key)
    client = plain if kind == "sync" else AsyncClient(node.base_url, node.key)
    hook = path(kind)
    async with transaction(client, caller_engine) as outbox:
        task_id = await outbox.add(hooks.url(hook), b"in-transaction")
        with pytest.raises(ClientError) as raised:
            await asyncio.to_thread(plain.task, task_id)  # not committed: ntorque cannot see it
        assert raised.value.status == 404
    assert "not pushed" not in caplog.text  # pushed (in a thread, or awaited) and answered
    done = await node.wait_for(task_id)
    assert done["status"] == "completed"
    assert [call.body for call in hooks.calls(hook)] == [b"in-transaction"]


@in_node_loop
async def test_outbox_rolled_back_leaves_no_task(
    node: LiveNode, caller_engine: AsyncEngine, hooks: HookServer
) -> None:
    client = Client(node.base_url, node.key)
    hook = path("rollback")
    with pytest.raises(RuntimeError):
        async with transaction(client, caller_engine) as outbox:
            task_id = await outbox.add(hooks.url(hook), b"never")
            raise RuntimeError("the caller's work failed")
    with pytest.raises(ClientError) as raised:
        await asyncio.to_thread(client.task, task_id)
    assert raised.value.status == 404
    assert hooks.calls(hook) == []


@in_node_loop
async def test_outbox_refuses_an_unknown_key(
    node: LiveNode, caller_engine: AsyncEngine, hooks: HookServer
) -> None:
    with pytest.raises(Unauthorized) as raised:
        async with transaction(Client(node.base_url, "not-a-key"), caller_engine) as outbox:
            await outbox.add(hooks.url(path("badkey")))
    assert raised.value.status == 401


async def test_the_outbox_finds_keyed_and_legacy_keys(store: Store) -> None:
    created = await Applications(store.apps).create("outbox")
    legacy_key = new_key()
    legacy = await store.apps.create("outbox-legacy", legacy_hash(legacy_key), NOW)
    for key, app_id in ((created.key, created.app.id), (legacy_key, legacy["id"])):
        async with store.engine.begin() as connection:
            outbox = Outbox(Client("http://127.0.0.1:9", key), connection)
            assert await outbox._app_id() == app_id
    async with store.engine.begin() as connection:
        with pytest.raises(Unauthorized, match="no active application"):
            await Outbox(Client("http://127.0.0.1:9", new_key()), connection)._app_id()


def test_outbox_validates_like_the_api() -> None:
    from ntorque.errors import InvalidRequest
    from ntorque.intake import new_task
    from ntorque.targets import Policy

    with pytest.raises(InvalidRequest):
        new_task(app_id=None, query={"url": "ftp://x"}, headers={}, body=b"",
 max_timeout_s=7200, policy=Policy())  # fmt: skip
