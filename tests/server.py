"""Run `python -m ntorque` as a real subprocess and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

KEY_LINE = re.compile(r"its API key: (\S+)")
FINAL = ("completed", "failed", "cancelled")
REPOSITORY = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class NtorqueServer:
    """One ntorque process with its own port, working directory and logs."""

    def __init__(
        self,
        workdir: Path,
        environ: dict[str, str],
        args: tuple[str, ...] = (),
        installed: Path | None = None,
    ) -> None:
        """installed: the python of a virtualenv with ntorque installed, which then
        runs without this checkout on its path."""
        self.workdir = workdir
        self.environ = environ
        self.args = args
        self.python = str(installed or sys.executable)
        self.installed = installed is not None
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.key = ""
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "ntorque.out"

    @property
    def log_path(self) -> Path:
        return self.workdir / "ntorque.log"

    def command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run another ntorque command (create-app, migrate ...) on the same settings."""
        return subprocess.run(
            [self.python, "-m", "ntorque", *args],
            env=self.full_environ(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def full_environ(self) -> dict[str, str]:
        kept = ("PATH", "HOME", "LANG", "CI")
        env = {name: value for name, value in os.environ.items() if name in kept}
        env.update({"PYTHONUNBUFFERED": "1", "NTORQUE_SHUTDOWN_GRACE": "10"})
        if not self.installed:
            env["PYTHONPATH"] = str(REPOSITORY)  # this checkout's code, whatever is installed
        env.update(self.environ)
        return env

    def start(self, wait: bool = True) -> NtorqueServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [self.python, "-m", "ntorque", "serve", "--port", str(self.port), *self.args]
        with open(self.stdout_path, "ab") as out, open(self.log_path, "ab") as err:
            self.process = subprocess.Popen(
                args, env=self.full_environ(), cwd=self.workdir, stdout=out, stderr=err
            )
        self.starts += 1
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"ntorque exited {self.process.returncode}:\n{self.logs()}")
            try:
                if self.request("GET", "/").status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError(f"ntorque did not start in {timeout_s}s:\n{self.logs()}")
        match = KEY_LINE.search(self.stdout_path.read_text())
        self.key = match.group(1) if match else self.key

    def logs(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-6000:]

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, and the exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"ntorque did not stop in {timeout_s}s:\n{self.logs()}") from None

    def kill(self) -> None:
        """kill -9: no goodbye."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        timeout_s: float = 30,
    ) -> Response:
        """One HTTP request; `key` None means this server's default key, "" none at all."""
        sent = dict(headers or {})
        key = self.key if key is None else key
        if key:
            sent.setdefault("NTORQUE_API_KEY", key)
        request = urllib.request.Request(
            self.base_url + path, data=body, headers=sent, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                return Response(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, dict(error.headers), error.read())

    def enqueue(
        self,
        url: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        key: str | None = None,
        **query: Any,
    ) -> dict[str, Any]:
        """POST a task; assert the 201 and return its JSON."""
        path = "/?" + urlencode({"url": url, **{k: str(v) for k, v in query.items()}})
        response = self.request("POST", path, body, headers, key)
        assert response.status == 201, (response.status, response.body)
        task: dict[str, Any] = response.json
        return task

    def task(self, task_id: int, key: str | None = None) -> dict[str, Any]:
        response = self.request("GET", f"/task/{task_id}", key=key)
        assert response.status == 200, (response.status, response.body)
        task: dict[str, Any] = response.json
        return task

    def wait_for(
        self, task_id: int, statuses: tuple[str, ...] = FINAL, timeout_s: float = 30
    ) -> dict[str, Any]:
        """Poll the task until its status is one of statuses."""
        deadline = time.monotonic() + timeout_s
        task = self.task(task_id)
        while task["status"] not in statuses:
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} still {task} after {timeout_s}s")
            time.sleep(0.05)
            task = self.task(task_id)
        return task

    def __enter__(self) -> NtorqueServer:
        try:
            return self.start()
        except BaseException:  # never ready: stop it, or it outlives the test
            self.__exit__()
            raise

    def __exit__(self, *_: object) -> None:
        if self.process and self.process.poll() is None:
            self.stop()
