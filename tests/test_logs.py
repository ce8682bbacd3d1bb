"""Nothing secret reaches the logs: a full run (debug logs on) with bodies,
pass-through headers, failing and retried hooks, redirects, bad keys, requests
refused with secrets in their query string (logged by the access log) and a
signing-secret rotation, then a grep of everything the process wrote.

By design the `default` application's key is printed once, at the first
start, on stdout (like `create-app` prints its key): that one line is the
only place a key may appear, and never in the log (stderr).
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

from tests.conftest import Backend, server_for
from tests.hookserver import HookServer
from tests.server import NtorqueServer

KEY_LINE = re.compile(r"its API key: (\S+)")
SECRET_LINE = re.compile(r"(whsec_\S+)")


def marks() -> dict[str, str]:
    """Distinctive, secret-looking values; none may show up in the logs."""
    return {
        name: f"{name}-{uuid.uuid4().hex}"
        for name in (
            "body", "header", "authorization", "badkey", "query",
            "password", "token", "encoded", "querykey", "notfound",
        )
    }  # fmt: skip


def enqueue_everything(
    server: NtorqueServer, hooks: HookServer, key: str, secret: dict[str, str]
) -> list[int]:
    """Tasks that complete, fail, retry, redirect and cannot connect."""
    routes = ["/status/200", "/status/500", "/status/404", "/redirect/302/status/200", "/flaky/1"]
    urls = [hooks.url(f"{route}/{uuid.uuid4().hex}") for route in routes]
    urls.append("http://127.0.0.1:9/closed")  # a network error
    # A hook that quotes the body in its error answer; credentials and a
    # token in the url itself.
    urls.append(hooks.url(f"/echo/404/{uuid.uuid4().hex}"))
    port = hooks.url("/").split(":")[2].split("/")[0]
    urls.append(
        f"http://user:{secret['query']}x@127.0.0.1:{port}/status/200/{uuid.uuid4().hex}"
        f"?token={secret['query']}"
    )
    headers = {
        "Content-Type": "text/plain",
        "NTORQUE-PASSTHROUGH-X-Token": secret["header"],
        "NTORQUE-PASSTHROUGH-Authorization": f"Bearer {secret['authorization']}",
    }
    body = f"password={secret['body']}".encode()
    ids = [server.enqueue(url, body, headers, key)["id"] for url in urls]
    refused = server.request("POST", "/?" + urlencode({"url": "ftp://x"}), body, headers, key)
    assert refused.status == 400
    return ids


def finished(server: NtorqueServer, task_id: int, key: str) -> str:
    deadline = time.monotonic() + 60
    while (status := server.task(task_id, key=key)["status"]) not in ("completed", "failed"):
        assert time.monotonic() < deadline, (task_id, status)
        time.sleep(0.05)
    return str(status)


def rejected_requests(
    server: NtorqueServer, hooks: HookServer, key: str, secret: dict[str, str]
) -> None:
    """Refused requests with secrets in their query string: each one is
    logged by the access log (4xx: a warning), which must not show them."""
    port = hooks.url("/").split(":")[2].split("/")[0]
    hook = f"http://user:{secret['password']}@127.0.0.1:{port}/hooks/s?token={secret['token']}"
    plain = server.request("POST", f"/?url={hook}&method=GET", b"x", None, key)
    assert plain.status == 400, plain.body  # GET is not a task's method
    encoded_hook = hook.replace(secret["token"], secret["encoded"])
    encoded = "/?" + urlencode({"url": encoded_hook, "method": "GET"})
    assert server.request("POST", encoded, b"x", None, key).status == 400
    assert secret["encoded"] in encoded  # urlencode keeps it whole: only the rest is escaped
    in_query = "/?" + urlencode({"url": hooks.url("/status/200"), "key": secret["querykey"]})
    assert server.request("POST", in_query, b"x", None, "").status == 401
    missing = server.request("GET", f"/nowhere?token={secret['notfound']}", None, None, key)
    assert missing.status == 404


def bad_keys(server: NtorqueServer, secret: dict[str, str]) -> None:
    path = "/?" + urlencode({"url": "http://127.0.0.1:9/"})
    for number in range(5):  # 401s, then 429s
        answer = server.request("POST", path, b"x", None, f"{secret['badkey']}-{number}")
        assert answer.status in (401, 429)
        server.request("GET", "/task/1", None, None, f"{secret['badkey']}-get{number}")


def test_no_body_header_value_key_or_secret_is_logged(
    backend: Backend, tmp_path: Path, hooks: HookServer
) -> None:
    secret = marks()
    settings = {
        "MODE": "development",  # debug logs too
        "NTORQUE_MAX_RETRIES": "2",
        "NTORQUE_MIN_DUE_DELAY": "0.5",
        "NTORQUE_AUTH_FAILURE_LIMIT": "3",
        "NTORQUE_AUTH_CACHE": "0",
    }
    with server_for(backend, tmp_path, (), **settings) as server:
        created = server.command("create-app", "--name", "logged").stdout
        key = KEY_LINE.search(created)
        secrets = SECRET_LINE.findall(created)
        rotated = server.command("rotate-secret", "--name", "logged").stdout
        secrets += SECRET_LINE.findall(rotated)
        secrets += SECRET_LINE.findall(server.command("show-secret").stdout)
        assert key and len(secrets) == 3, (created, rotated)
        ids = enqueue_everything(server, hooks, key.group(1), secret)
        statuses = [finished(server, task_id, key.group(1)) for task_id in ids]
        rejected_requests(server, hooks, key.group(1), secret)
        bad_keys(server, secret)  # last: the address is limited afterwards
        assert statuses == [
            "completed", "failed", "failed", "completed", "completed", "failed", "failed",
            "completed",
        ]  # fmt: skip
    log = server.log_path.read_text(errors="replace")
    stdout = server.stdout_path.read_text(errors="replace")
    assert "task " in log and "DEBUG" in log, log[-3000:]  # the right stream was read
    access = [line for line in log.splitlines() if "tornado.access" in line]
    for logged in ("WARNING tornado.access 400 POST /?url=", "401 POST /?url=", "404 GET /nowhere"):
        assert any(logged in line for line in access), (logged, access)
    forbidden = [*secret.values(), key.group(1), server.key, *secrets]
    for value in forbidden:
        assert value not in log, f"{value!r} is in the log"
    default_key_lines = [line for line in stdout.splitlines() if server.key in line]
    assert default_key_lines == [
        f"ntorque: created application 'default'; its API key: {server.key}"
    ]
    for value in [*secret.values(), key.group(1), *secrets]:
        assert value not in stdout, f"{value!r} is on stdout"
