"""Transport: the optional TLS listener (--certfile/--keyfile or the settings)
serves the whole API over https; HSTS answers as the settings say, directly
or behind a TLS proxy (HSTS_PROTOCOL_HEADER).
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import Backend, server_for
from tests.hookserver import HookServer, TLSFiles, make_tls_files
from tests.server import KEY_LINE, NtorqueServer, Response

HSTS = "max-age=31536000"


class TlsServer(NtorqueServer):
    """An ntorque serving https, trusted through the test CA."""

    tls: TLSFiles

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        timeout_s: float = 30,
    ) -> Response:
        sent = dict(headers or {})
        key = self.key if key is None else key
        if key:
            sent.setdefault("NTORQUE_API_KEY", key)
        request = urllib.request.Request(self.base_url + path, body, sent, method=method)
        context = self.tls.client_context()
        try:
            with urllib.request.urlopen(request, timeout=timeout_s, context=context) as answer:
                return Response(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, dict(error.headers), error.read())


def tls_server(
    workdir: Path, tls: TLSFiles, args: tuple[str, ...] = (), **settings: str
) -> TlsServer:
    """On SQLite: TLS does not depend on the backend."""
    backend = Backend("sqlite", f"sqlite:///{workdir / 'ntorque.db'}")
    plain = server_for(backend, workdir, args, **settings)
    server = TlsServer(plain.workdir, plain.environ, plain.args)
    server.tls = tls
    return server


def raw(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> Response:
    """One plain-http request, redirects not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, b"" if method == "POST" else None, headers or {})
        answer = connection.getresponse()
        return Response(answer.status, dict(answer.getheaders()), answer.read())
    finally:
        connection.close()


def enqueue_path(hooks: HookServer) -> tuple[str, str]:
    hook = f"/status/200/{uuid.uuid4().hex}"
    return hook, "/?" + urlencode({"url": hooks.url(hook)})


# -- the TLS listener -----------------------------------------------------------------


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """Started with the flags, and HSTS on."""
    workdir = tmp_path_factory.mktemp("https")
    tls = make_tls_files(workdir / "tls")
    args = ("--certfile", str(tls.cert_pem), "--keyfile", str(tls.key_pem))
    server = tls_server(workdir, tls, args, NTORQUE_ENABLE_HSTS="true")
    with server:
        yield server


def test_the_api_is_served_over_https(https: TlsServer, hooks: HookServer) -> None:
    assert https.key
    hook, path = enqueue_path(hooks)
    created = https.request("POST", path, b"over tls")
    assert created.status == 201, created.body
    assert created.headers["Location"].startswith(f"https://127.0.0.1:{https.port}/task/")
    assert created.headers["Strict-Transport-Security"] == HSTS
    task_id = created.json["id"]
    assert https.wait_for(task_id)["status"] == "completed"
    assert hooks.wait_for_calls(hook, 1)[0].body == b"over tls"
    assert https.request("GET", f"/task/{task_id}").headers["Strict-Transport-Security"] == HSTS
    assert "listening on https://" in https.logs()


def test_plain_http_gets_no_answer_from_the_tls_port(https: TlsServer) -> None:
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        raw(https.port, "GET", "/")
    untrusted = ssl.create_default_context()  # the system's CAs: not our test CA
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(https.base_url + "/", timeout=10, context=untrusted)


def test_the_settings_enable_tls_too(tmp_path: Path, hooks: HookServer) -> None:
    tls = make_tls_files(tmp_path / "certs")
    files = {"NTORQUE_CERTFILE": str(tls.cert_pem), "NTORQUE_KEYFILE": str(tls.key_pem)}
    with tls_server(tmp_path, tls, (), **files) as server:
        _, path = enqueue_path(hooks)
        created = server.request("POST", path, b"")
        assert created.status == 201, created.body
        assert "Strict-Transport-Security" not in created.headers  # HSTS is off
        assert server.wait_for(created.json["id"])["status"] == "completed"


def test_tls_needs_both_files_and_readable_ones(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "certs")
    server = tls_server(tmp_path, tls)
    cases = [
        (("--certfile", str(tls.cert_pem)), "certfile and keyfile go together"),
        (("--keyfile", str(tls.key_pem)), "certfile and keyfile go together"),
        (
            ("--certfile", str(tmp_path / "missing.pem"), "--keyfile", str(tls.key_pem)),
            "cannot load certfile/keyfile",
        ),
    ]
    for args, message in cases:
        done = server.command("serve", "--port", str(server.port), *args, check=False)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert message in done.stderr
        assert "Traceback" not in done.stderr


# -- HSTS on plain http, directly or behind a TLS proxy ------------------------------


@pytest.fixture(scope="module")
def hsts_behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NtorqueServer]:
    workdir = tmp_path_factory.mktemp("hsts")
    backend = Backend("sqlite", f"sqlite:///{workdir / 'ntorque.db'}")
    settings = {"NTORQUE_ENABLE_HSTS": "true", "HSTS_PROTOCOL_HEADER": "X-Forwarded-Proto"}
    server = server_for(backend, workdir, (), **settings)
    # wait_ready's plain GET / is redirected (and the redirect fails): start by hand.
    server.start(wait=False)
    try:
        wait_until_listening(server)
        yield server
    finally:
        server.stop()


def wait_until_listening(server: NtorqueServer) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            raw(server.port, "GET", "/")
            break
        except OSError:
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.05)
    match = KEY_LINE.search(server.stdout_path.read_text())
    assert match, server.logs()
    server.key = match.group(1)


def test_hsts_redirects_plain_gets_and_refuses_plain_posts(
    hsts_behind_proxy: NtorqueServer, hooks: HookServer
) -> None:
    port = hsts_behind_proxy.port
    moved = raw(port, "GET", "/task/1?x=1")
    assert moved.status == 301
    assert moved.headers["Location"] == f"https://127.0.0.1:{port}/task/1?x=1"
    assert "Strict-Transport-Security" not in moved.headers  # only ever sent over https
    _, path = enqueue_path(hooks)
    refused = raw(port, "POST", path, {"NTORQUE_API_KEY": hsts_behind_proxy.key})
    assert refused.status == 400
    assert json.loads(refused.body) == {
        "status": 400,
        "error": "this server takes requests over https only",
    }


def test_hsts_trusts_the_proxys_protocol_header(
    hsts_behind_proxy: NtorqueServer, hooks: HookServer
) -> None:
    proxied = {"X-Forwarded-Proto": "https", "NTORQUE_API_KEY": hsts_behind_proxy.key}
    banner = raw(hsts_behind_proxy.port, "GET", "/", proxied)
    assert banner.status == 200
    assert banner.headers["Strict-Transport-Security"] == HSTS
    hook, path = enqueue_path(hooks)
    created = raw(hsts_behind_proxy.port, "POST", path, proxied)
    assert created.status == 201, created.body
    assert created.headers["Strict-Transport-Security"] == HSTS
    assert len(hooks.wait_for_calls(hook, 1)) == 1
    plain = {"X-Forwarded-Proto": "http"}
    assert raw(hsts_behind_proxy.port, "GET", "/", plain).status == 301


def test_without_hsts_plain_http_is_served(tmp_path: Path) -> None:
    backend = Backend("sqlite", f"sqlite:///{tmp_path / 'ntorque.db'}")
    with server_for(backend, tmp_path) as server:
        banner = raw(server.port, "GET", "/", {"X-Forwarded-Proto": "https"})
        assert banner.status == 200
        assert "Strict-Transport-Security" not in banner.headers
