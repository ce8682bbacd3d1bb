"""Calls never go through a proxy: `python -m ntorque` started with
HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (both spellings) pointing at a listener
of the test's own calls its hooks directly, over http and https, and the
listener sees nothing. (curl, left to itself, would use them.)
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, make_backend, server_for
from tests.hookserver import HookServer, TLSFiles

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class Listener:
    """A TCP listener on 127.0.0.1 that records whatever connects and closes it."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.05)
        self.port = self.socket.getsockname()[1]
        self.received: list[bytes] = []
        self._open = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while self._open:
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(1)
                try:
                    self.received.append(connection.recv(4096))
                except OSError as error:
                    self.received.append(repr(error).encode())

    def close(self) -> None:
        self._open = False
        self._thread.join(5)
        self.socket.close()


@pytest.fixture
def proxy() -> Iterator[Listener]:
    listener = Listener()
    try:
        yield listener
    finally:
        listener.close()


def test_calls_never_go_through_a_proxy(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    proxy: Listener,
    hooks: HookServer,
    tls: TLSFiles,
    tls_hooks: HookServer,
) -> None:
    proxy_url = f"http://127.0.0.1:{proxy.port}"
    environ = {name: proxy_url for name in PROXY_VARIABLES}
    environ |= {name.lower(): proxy_url for name in PROXY_VARIABLES}
    backend = make_backend(request, BACKENDS[0], tmp_path)
    path = f"/status/200/{uuid.uuid4().hex}"
    with server_for(backend, tmp_path, NTORQUE_CA_CERTS=str(tls.ca_pem), **environ) as server:
        tasks = [server.enqueue(each.url(path), b"a=1")["id"] for each in (hooks, tls_hooks)]
        done = [server.wait_for(task_id, timeout_s=15) for task_id in tasks]
    assert [task["status"] for task in done] == ["completed", "completed"], done
    assert [call.body for call in hooks.calls(path)] == [b"a=1"]
    assert [call.body for call in tls_hooks.calls(path)] == [b"a=1"]
    assert proxy.received == []
