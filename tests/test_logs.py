"""Nothing secret reaches the logs: a full run (debug logs on) with bodies,
pass-through headers, failing and retried hooks, redirects, bad keys, requests
refused with secrets in their query string (logged by the access log) and a
signing-secret rotation, then a grep of everything the process wrote.

By design the `default` application's key is printed once, at the first
start, on stdout (like `create-app` prints its key): that one line is the
only place a key may appear, and never in the log (stderr).

And the two formats of a line: the text stays as it was; with
NTORQUE_LOG_FORMAT=json every line is one JSON object, a task's lines with
its fields (task_id, queue, app, attempt, status, code, duration_s).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from ntorque import logs
from tests.conftest import Backend, live_for, server_for
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


# -- the format of a line: text (the default) or JSON -----------------------------


class JsonLines(logging.Handler):
    """Every record, formatted as NTORQUE_LOG_FORMAT=json writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logs.formatter("json"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def of_task(self, task_id: int) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.lines]
        return [line for line in parsed if line.get("task_id") == task_id]


@contextlib.contextmanager
def json_lines() -> Iterator[JsonLines]:
    """Info lines of ntorque, as JSON, while the block runs."""
    handler = JsonLines()
    logger = logging.getLogger("ntorque")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_json_lines_carry_a_tasks_fields_from_enqueue_to_settle(
    backend: Backend, hooks: HookServer
) -> None:
    with json_lines() as lines:
        async with live_for(backend) as node:
            task = await node.enqueue(hooks.url(f"/status/201/{uuid.uuid4().hex}"))
            await node.wait_for(task["id"])
            assert node.running.created is not None
            app_id = node.running.created.app.id
    assert all("\n" not in line for line in lines.lines)
    enqueued, calling, settled = lines.of_task(task["id"])
    common = {"task_id": task["id"], "queue": "default", "app": app_id}
    assert enqueued.items() >= {**common, "logger": "ntorque.queue", "level": "INFO"}.items()
    assert enqueued["event"].startswith(f"task {task['id']} enqueued POST http://127.0.0.1:")
    assert calling.items() >= {**common, "attempt": 1, "logger": "ntorque.consumer"}.items()
    assert settled.items() >= {**common, "attempt": 1, "status": "completed", "code": 201}.items()
    assert 0 <= settled["duration_s"] < 5
    assert settled["event"].startswith(f"task {task['id']} completed attempt=1 code=201 error=None")
    when = datetime.fromisoformat(settled["time"])
    assert when.utcoffset() == timedelta(0) and abs(when.timestamp() - time.time()) < 60
    assert JSON_TIME.fullmatch(settled["time"]), settled["time"]


JSON_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


def test_an_exception_is_one_json_line_with_its_traceback() -> None:
    record = logging.LogRecord(
        "ntorque.consumer", logging.ERROR, __file__, 1, "boom %s", (1,), None
    )
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        record.exc_info = sys.exc_info()
    line = logs.formatter("json", processes=2).format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["event"] == "boom 1" and parsed["level"] == "ERROR"
    assert parsed["traceback"].startswith("Traceback (most recent call last):")
    assert parsed["traceback"].endswith("ZeroDivisionError: division by zero")
    assert parsed["pid"] == os.getpid()  # several processes: whose line


def test_the_text_format_is_unchanged() -> None:
    record = logging.LogRecord("ntorque.queue", logging.INFO, __file__, 1, "task %s x", (7,), None)
    record.__dict__.update(task_id=7, code=200)  # a task's fields: not in the text
    one, several = logs.formatter("text"), logs.formatter("text", processes=2)
    assert one._fmt == "%(asctime)s %(levelname)s %(name)s %(message)s"
    assert several._fmt == "%(asctime)s %(levelname)s [%(process)d] %(name)s %(message)s"
    assert one.format(record).endswith(" INFO ntorque.queue task 7 x")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_server_with_log_format_json_writes_only_json_lines(
    backend: Backend, tmp_path: Path, hooks: HookServer
) -> None:
    settings = {"NTORQUE_LOG_FORMAT": "json", "NTORQUE_MAX_RETRIES": "2"}
    settings["NTORQUE_MIN_DUE_DELAY"] = "0.2"
    with server_for(backend, tmp_path, (), **settings) as server:
        task = server.enqueue(hooks.url(f"/status/500/{uuid.uuid4().hex}"))
        assert finished(server, task["id"], server.key) == "failed"
        assert server.request("GET", "/nowhere", None, None, server.key).status == 404
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line]
    assert {line["logger"] for line in lines} >= {"ntorque.app", "ntorque.queue", "tornado.access"}
    settled = [line for line in lines if line.get("task_id") == task["id"] and "code" in line]
    assert [(line["attempt"], line["code"], line["status"]) for line in settled] == [
        (1, 500, "pending"),
        (2, 500, "failed"),
    ]
