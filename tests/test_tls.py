"""The node's optional TLS listener (app.Node.http_server): certfile and
keyfile serve the whole API over https (with HSTS when enabled); plain http
gets no answer from that port; a certificate from another CA is refused by a
client that checks it; both files are needed, and readable ones. Nodes in the
test's own event loop, on both backends; one `python -m ntorque serve` checks
that the --certfile/--keyfile flags reach the node, and that it refuses them
cleanly (exit 2, no traceback).
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import pytest_asyncio

from ntorque.errors import ConfigError
from tests.conftest import Backend, live_for, server_for
from tests.hookserver import HookServer, TLSFiles, make_tls_files
from tests.inprocess import LiveNode
from tests.server import Response, free_port

HSTS = "max-age=31536000"
in_node_loop = pytest.mark.asyncio(loop_scope="module")  # the module's shared node


def tls_settings(tls: TLSFiles) -> dict[str, str]:
    return {"certfile": str(tls.cert_pem), "keyfile": str(tls.key_pem)}


def raw(port: int, method: str, path: str) -> Response:
    """One plain-http request (blocking: run it in a thread)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, b"" if method == "POST" else None)
        answer = connection.getresponse()
        return Response(answer.status, dict(answer.getheaders()), answer.read())
    finally:
        connection.close()


def enqueue_path(hooks: HookServer) -> tuple[str, str]:
    hook = f"/status/200/{uuid.uuid4().hex}"
    return hook, "/?" + urlencode({"url": hooks.url(hook)})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def https(
    module_backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveNode]:
    """https with HSTS on; its client trusts the test CA and checks the certificate."""
    tls = make_tls_files(tmp_path_factory.mktemp(f"https-{module_backend.name}"))
    async with live_for(module_backend, enable_hsts=True, **tls_settings(tls)) as node:
        node.trusted_ca = str(tls.ca_pem)
        yield node


@in_node_loop
async def test_the_api_is_served_over_https(https: LiveNode, hooks: HookServer) -> None:
    assert https.key
    assert https.base_url.startswith("https://")
    hook, path = enqueue_path(hooks)
    created = await https.request("POST", path, b"over tls")
    assert created.status == 201, created.body
    assert created.headers["Location"].startswith(f"https://127.0.0.1:{https.port}/task/")
    assert created.headers["Strict-Transport-Security"] == HSTS
    task_id = created.json["id"]
    assert (await https.wait_for(task_id))["status"] == "completed"
    assert (await hooks.wait_for_calls_async(hook, 1))[0].body == b"over tls"
    answer = await https.request("GET", f"/task/{task_id}")
    assert answer.headers["Strict-Transport-Security"] == HSTS


def open_untrusted(url: str) -> None:
    """urllib with the system's CAs, not the test CA (blocking: run it in a thread)."""
    urllib.request.urlopen(url, timeout=10, context=ssl.create_default_context())


@in_node_loop
async def test_plain_http_gets_no_answer_from_the_tls_port(https: LiveNode) -> None:
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        await asyncio.to_thread(raw, https.port, "GET", "/")
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.to_thread(open_untrusted, https.base_url + "/")


async def test_https_without_hsts(
    backend: Backend, tmp_path: Path, hooks: HookServer, caplog: pytest.LogCaptureFixture
) -> None:
    tls = make_tls_files(tmp_path / "certs")
    with caplog.at_level(logging.INFO, logger="ntorque.app"):
        async with live_for(backend, **tls_settings(tls)) as node:
            node.trusted_ca = str(tls.ca_pem)
            _, path = enqueue_path(hooks)
            created = await node.request("POST", path, b"")
            assert created.status == 201, created.body
            assert "Strict-Transport-Security" not in created.headers  # HSTS is off
            assert (await node.wait_for(created.json["id"]))["status"] == "completed"
    assert f"listening on https://127.0.0.1:{node.port}" in caplog.text


async def test_tls_needs_both_files_and_readable_ones(backend: Backend, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "certs")
    cases = [
        ({"certfile": str(tls.cert_pem)}, "certfile and keyfile go together"),
        ({"keyfile": str(tls.key_pem)}, "certfile and keyfile go together"),
        (
            {"certfile": str(tmp_path / "missing.pem"), "keyfile": str(tls.key_pem)},
            "cannot load certfile/keyfile",
        ),
    ]
    for files, message in cases:
        node = live_for(backend, **files)
        with pytest.raises(ConfigError, match=message):
            async with node:
                pass


def test_the_flags_reach_the_node_and_a_refusal_is_clean(tmp_path: Path) -> None:
    """The one process: `serve --certfile --keyfile` (flags, not settings) and
    the exit of a node that cannot start, as a user meets them."""
    tls = make_tls_files(tmp_path / "certs")
    backend = Backend("sqlite", f"sqlite:///{tmp_path / 'ntorque.db'}")
    missing, key = str(tmp_path / "missing.pem"), str(tls.key_pem)
    cli = server_for(backend, tmp_path)
    args = ("serve", "--port", str(free_port()), "--certfile", missing, "--keyfile", key)
    done = cli.command(*args, check=False)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "cannot load certfile/keyfile" in done.stderr
    assert "Traceback" not in done.stderr
