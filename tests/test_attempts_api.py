"""GET /task/<id>/attempts: every call of the hook, in order, owner only."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from tests.conftest import Backend, server_for
from tests.hookserver import HookServer
from tests.test_api import create_app


def test_attempts_list_every_call(backend: Backend, hooks: HookServer, tmp_path: Path) -> None:
    hook = f"/flaky/2/attempts-{uuid.uuid4().hex}"
    settings = {"NTORQUE_MIN_DUE_DELAY": "0.2", "NTORQUE_REQUEUE_INTERVAL": "0.3"}
    with server_for(backend, tmp_path, **settings) as server:
        task = server.enqueue(hooks.url(hook), b"x")
        assert server.wait_for(task["id"])["status"] == "completed"
        answer = server.request("GET", f"/task/{task['id']}/attempts")
        assert answer.status == 200
        attempts = answer.json["attempts"]
        assert [a["number"] for a in attempts] == [1, 2, 3]
        assert [a["status_code"] for a in attempts] == [500, 500, 200]
        assert attempts[0]["error"].startswith("HTTP 500")
        assert attempts[2]["error"] is None
        starts = [datetime.fromisoformat(a["started"]) for a in attempts]
        assert starts == sorted(starts)
        calls = hooks.calls(hook)
        assert len(calls) == len(attempts)
        _, other = create_app(server)
        stranger = server.request("GET", f"/task/{task['id']}/attempts", key=other)
        assert stranger.status == 404
