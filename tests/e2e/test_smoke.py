"""The README's first steps, on both backends."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Backend, server_for
from tests.hookserver import HookServer


def test_enqueue_then_completed(backend: Backend, hooks: HookServer, tmp_path: Path) -> None:
    with server_for(backend, tmp_path) as server:
        task = server.enqueue(hooks.url(f"/status/200/{backend.name}-smoke"), b"user_id=1234")
        assert task["status"] == "pending"
        done = server.wait_for(task["id"])
        assert done["status"] == "completed"
        (call,) = hooks.calls(f"/status/200/{backend.name}-smoke")
        assert call.body == b"user_id=1234"
