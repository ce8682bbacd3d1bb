"""Faults a test can cause on 127.0.0.1: its own redis-server to stop and
restart, a TCP proxy to cut the database off, and polling helpers."""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis

POLL_S = 0.05


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll check() until it is true; fail saying what did not happen."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        time.sleep(POLL_S)


# Ports below the kernel's ephemeral range: bind(0) and outgoing connections
# never take them, so a service that closes its port can have it back.
REOPENABLE_PORTS = range(20000, 30000)


def reopenable_port() -> int:
    """A free port a service may close and open again (outside the ephemeral range)."""
    for port in random.sample(REOPENABLE_PORTS, 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


class RedisProcess:
    """A redis-server of this test's own on 127.0.0.1, stopped and restarted by pid."""

    def __init__(self, workdir: Path, *options: str) -> None:
        self.workdir = workdir
        self.options = options  # more redis-server options
        self.port = reopenable_port()  # stopped and started again on it
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no", *self.options]
        with open(self.workdir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                args, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(self._answers, 10, f"redis-server on port {self.port} answering")

    def _answers(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, (self.workdir / "redis.log").read_text()
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; close() cuts every connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = reopenable_port()  # closed and opened again on it
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._open = False

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
        except OSError:
            listener.close()  # or it lingers, unclosed, until a later test collects it
            raise
        listener.settimeout(0.05)
        self._listener = listener
        self._open = True
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while self._open:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
                pumps = [
                    threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True),
                    threading.Thread(
                        target=self._pump, args=(upstream, client, False), daemon=True
                    ),
                ]
                self._threads += pumps
            for pump in pumps:
                pump.start()

    def _pump(self, source: socket.socket, sink: socket.socket, to_target: bool) -> None:
        try:
            while data := source.recv(65536):
                self.passing(to_target)
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):  # one side gone: end the other direction too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def passing(self, to_target: bool) -> None:
        """Data is about to be forwarded, to the target or back from it."""

    def close(self) -> None:
        """Stop listening and cut every open connection."""
        self._open = False
        if self._acceptor is not None:
            self._acceptor.join(5)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
            threads, self._threads = self._threads, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)
        for sock in sockets:
            sock.close()


Proxy = TypeVar("Proxy", bound=TcpProxy)


@contextlib.contextmanager
def database_through(database_url: str, kind: type[Proxy]) -> Iterator[tuple[str, Proxy]]:
    """The database's url through a proxy of this kind (opened), and the proxy."""
    parts = urlsplit(database_url)
    proxy = kind(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.open()
    try:
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
        yield urlunsplit(parts._replace(netloc=netloc)), proxy
    finally:
        proxy.close()


class RoundTripCounter(TcpProxy):
    """A TcpProxy that counts round trips: each time the client speaks again
    after the target answered (or first) is one. However a request is cut into
    packets, it counts once; a reply only ends the client's turn."""

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self.round_trips = 0
        self._client_speaking = False

    def passing(self, to_target: bool) -> None:
        with self._lock:  # recorded before forwarding: a reply cannot overtake its request
            if to_target and not self._client_speaking:
                self.round_trips += 1
            self._client_speaking = to_target
