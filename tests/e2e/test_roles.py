"""Splitting a deployment: web-only and worker-only processes on one PostgreSQL and Redis."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import Backend, make_backend, server_for
from tests.hookserver import HookServer


@pytest.fixture
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request, "postgres", tmp_path)


def test_web_and_worker_roles_share_the_work(
    shared: Backend, hooks: HookServer, tmp_path: Path
) -> None:
    web = server_for(shared, tmp_path / "web", ("--role", "web"))
    # The worker also shows that SQLALCHEMY_POOL_CLASS=sqlalchemy.pool.NullPool
    # (for pgbouncer, as the original nTorque spells it) works.
    worker = server_for(
        shared,
        tmp_path / "worker",
        ("--role", "worker"),
        SQLALCHEMY_POOL_CLASS="sqlalchemy.pool.NullPool",
    )
    hook = f"/status/200/roles-{uuid.uuid4().hex}"
    with web:
        task = web.enqueue(hooks.url(hook), b"split")
        time.sleep(1.5)  # a web-only node never calls hooks
        assert hooks.calls(hook) == []
        assert web.task(task["id"])["status"] == "pending"
        worker.start(wait=False)
        try:
            hooks.wait_for_calls(hook, 1, timeout_s=20)
            assert web.wait_for(task["id"])["status"] == "completed"
            with pytest.raises(OSError):  # a worker has no HTTP API
                worker.request("GET", "/", timeout_s=2)
        finally:
            assert worker.stop() == 0
    assert [call.body for call in hooks.calls(hook)] == [b"split"]
