"""The processes under test: ntorque (`python -m ntorque serve`) and the hook
receiver, each started as a subprocess and watched through /proc.

The bench knows ntorque only from the outside: its command line, its
environment variables, the API key it prints on first start and its HTTP API.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

REPOSITORY = Path(__file__).resolve().parent.parent
KEY_LINE = re.compile(r"its API key: (\S+)")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime (fields 14, 15)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_clock_s(pid: int) -> float:
    """The process's CPU clock, all its threads, in nanoseconds' resolution (Linux).

    /proc's utime + stime count 10 ms ticks: too coarse for an idle process
    over 10 s. The clock id is what clock_getcpuclockid(pid) returns: ~pid << 3
    with CPUCLOCK_SCHED (2). 0 once the process is gone."""
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except OSError:
        return 0.0


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (the state is [0])."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every live process below pid, with its start time (to tell a reused pid)."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat(int(entry.name))
            except OSError:
                continue  # gone meanwhile
            parents.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += [child for child, _ in children]
    return found


def kill_if_same(pid: int, started: str) -> None:
    """SIGKILL pid if it is still the process that started at `started`."""
    try:
        if _stat(pid)[19] == started:
            os.kill(pid, signal.SIGKILL)
    except (OSError, IndexError):
        pass  # gone already


class Watched(Protocol):
    """What a measured run reads of the system under test."""

    def cpu_s(self) -> float: ...

    def rss_mb(self) -> float: ...


class Tree:
    """A process and all its descendants, measured together: Celery's pool
    children, or ntorque's own processes should it start some."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def pids(self) -> list[int]:
        return [self.pid, *(child for child, _ in descendants(self.pid))]

    def cpu_s(self) -> float:
        return sum(cpu_clock_s(pid) for pid in self.pids())

    def rss_mb(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                total += rss_mb(pid)
            except OSError:
                pass  # gone meanwhile
        return total


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class Child:
    """A subprocess with its own output file, stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str], workdir: Path, name: str) -> None:
        self.output = workdir / f"{name}.out"
        workdir.mkdir(parents=True, exist_ok=True)
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen(
                args, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until(self, url: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not answers(url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.output.stem} did not start:\n{self.tail()}")
            time.sleep(0.05)

    def wait_for_output(self, pattern: str, timeout_s: float = 60) -> None:
        """Wait until the child printed a line matching pattern (a worker that is ready)."""
        deadline = time.monotonic() + timeout_s
        while not re.search(pattern, self.output.read_text(errors="replace")):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.output.stem} did not start:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self) -> str:
        return self.output.read_text(errors="replace")[-4000:]

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM, SIGKILL after timeout_s; then SIGKILL whatever it had started
        and left behind (a worker pool's children)."""
        if self.process.poll() is not None:
            return
        left = descendants(self.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pid, started in left:
            kill_if_same(pid, started)


def base_environ() -> dict[str, str]:
    kept = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {name: value for name, value in os.environ.items() if name in kept}
    env["PYTHONPATH"] = str(REPOSITORY)
    return env


def start_receiver(workdir: Path) -> tuple[Child, int]:
    port = free_port()
    args = [sys.executable, "-m", "bench.receiver", "--port", str(port)]
    child = Child(args, base_environ(), workdir, "receiver")
    child.wait_until(f"http://127.0.0.1:{port}/_stats")
    return child, port


# The receiver listens on 127.0.0.1: allow it, should the default ever forbid private targets.
LOOPBACK_HOOKS = {"NTORQUE_ALLOW_PRIVATE_TARGETS": "true"}


class Ntorque(Child):
    """`python -m ntorque serve --migrate` with the given settings in its environment.

    The first node on a new database prints the API key; a further node on
    the same database is given it (`key`)."""

    def __init__(self, workdir: Path, settings: dict[str, str], key: str = "") -> None:
        self.port = free_port()
        env = {**base_environ(), **LOOPBACK_HOOKS, **settings, "NTORQUE_PORT": str(self.port)}
        args = [sys.executable, "-m", "ntorque", "serve", "--migrate"]
        super().__init__(args, env, workdir, "ntorque")
        self.wait_until(f"http://127.0.0.1:{self.port}/")
        self.key = key or self._printed_key()

    def _printed_key(self) -> str:
        match = KEY_LINE.search(self.output.read_text())
        if not match:
            self.stop()
            raise RuntimeError(f"ntorque printed no API key (not a new database?)\n{self.tail()}")
        return match.group(1)

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.pid)
