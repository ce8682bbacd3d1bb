"""The Procfile under honcho: one web process and two workers on PostgreSQL and
Redis deliver tasks, and all of them stop cleanly when honcho is told to."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import Backend, server_for
from tests.hookserver import HookServer
from tests.server import KEY_LINE, REPOSITORY, NtorqueServer
from tests.services import PostgresDatabases

PROCESSES = ("web.1", "worker.1", "worker.2")
STARTED = re.compile(r"(\S+) started \(pid=(\d+)\)")


@contextlib.contextmanager
def honcho(node: NtorqueServer) -> Iterator[subprocess.Popen[bytes]]:
    """`honcho start -c worker=2` on the repository's Procfile, the web process
    on node's port; every process it started is gone when this ends."""
    environ = node.full_environ()
    # The Procfile says `python`: this interpreter, with this checkout's code.
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ['PATH']}"
    command = [sys.executable, "-m", "honcho", "start", "--no-colour"]
    command += ["-f", str(REPOSITORY / "Procfile"), "-c", "worker=2", "-p", str(node.port)]
    with open(node.stdout_path, "wb") as out:
        process = subprocess.Popen(
            command, env=environ, cwd=node.workdir, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in started_pids(node).values():  # each leads a process group of its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def started_pids(node: NtorqueServer) -> dict[str, int]:
    return {name: int(pid) for name, pid in STARTED.findall(node.stdout_path.read_text())}


def wait_ready(node: NtorqueServer, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, node.stdout_path.read_text()
        with contextlib.suppress(OSError):
            if node.request("GET", "/").status == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"honcho's web process not up in {timeout_s}s")


def test_procfile_delivers_with_one_web_process_and_two_workers(
    postgres_databases: PostgresDatabases, redis_url: str, hooks: HookServer, tmp_path: Path
) -> None:
    backend = Backend("postgres", postgres_databases.new(migrated=False), redis_url)
    node = server_for(backend, tmp_path)
    assert "ntorque: applied" in node.command("migrate").stdout
    created = KEY_LINE.search(node.command("create-app", "--name", "procfile").stdout)
    assert created
    node.key = created.group(1)
    path = f"/status/200/procfile-{uuid.uuid4().hex}"
    bodies = [f"task {n}".encode() for n in range(6)]

    with honcho(node) as process:
        wait_ready(node, process, timeout_s=30)
        assert set(started_pids(node)) == set(PROCESSES)
        tasks = [node.enqueue(hooks.url(path), body) for body in bodies]
        for task in tasks:
            assert node.wait_for(task["id"], timeout_s=20)["status"] == "completed"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        output = node.stdout_path.read_text()
        for name, pid in started_pids(node).items():
            assert f"sending SIGTERM to {name}" in output  # still running until then
            assert f"{name} stopped (rc=0)" in output, output
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, 0)
                raise AssertionError(f"{name}'s process group (pid {pid}) outlived honcho")

    assert sorted(call.body for call in hooks.calls(path)) == bodies  # once each
    postgres_databases.give_back(backend.database_url)
