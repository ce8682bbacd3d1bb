"""What every handler shares, checked in-process: the access log's request
line (never a query value: url credentials, tokens, keys sent by mistake)
at tornado's levels, and the log line of an uncaught exception.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlencode

import pytest
import pytest_asyncio
import tornado.httpclient
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from ntorque import handlers
from ntorque.console import live
from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import LiveNode
from tests.server import free_port

SECRETS = ("PASSW0RD", "TOKEN", "S3CRETKEY", "hunter2")


class Answered:
    """What the log function reads of a finished handler."""

    def __init__(self, status: int, method: str, uri: str) -> None:
        self.status = status
        start = RequestStartLine(method, uri, "HTTP/1.1")
        self.request = HTTPServerRequest(start_line=start, headers=HTTPHeaders(Host="h"))
        self.request.remote_ip = "127.0.0.1"

    def get_status(self) -> int:
        return self.status


def logged(caplog: pytest.LogCaptureFixture, status: int, method: str, uri: str) -> tuple[int, str]:
    """(level, message) of the access log's line for one answered request."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="tornado.access"):
        handlers.log_request(cast(tornado.web.RequestHandler, Answered(status, method, uri)))
    (record,) = caplog.records
    assert record.name == "tornado.access"
    return record.levelno, record.getMessage()


@pytest.mark.parametrize(
    ("method", "uri", "shown"),
    [
        (
            "POST",
            "/?url=http://user:PASSW0RD@127.0.0.1:9101/hooks/s?token=TOKEN&method=GET",
            "POST /?url=***&method=***",
        ),
        (
            "POST",
            "/?url=http%3A%2F%2Fuser%3APASSW0RD%40127.0.0.1%2Fs%3Ftoken%3DTOKEN&method=GET",
            "POST /?url=***&method=***",
        ),
        ("POST", "/?url=http%3A%2F%2Fh%2F&key=S3CRETKEY", "POST /?url=***&key=***"),
        ("GET", "/nowhere?token=TOKEN", "GET /nowhere?token=***"),
        ("GET", "/tasks?limit=10&cursor=TOKEN", "GET /tasks?limit=***&cursor=***"),
        # Only short snake_case names are shown: anything else may be a value.
        ("GET", "/?hunter2&Bad-Name=TOKEN&%6Bey=S3CRETKEY&=TOKEN", "GET /?***&***&***&***"),
        ("GET", "/?" + "a" * 40 + "=x", "GET /?***"),
        ("GET", "/task/7", "GET /task/7"),
        ("GET", "/task/7?", "GET /task/7"),
    ],
)
def test_the_request_line_shows_no_query_value(
    caplog: pytest.LogCaptureFixture, method: str, uri: str, shown: str
) -> None:
    _, message = logged(caplog, 400, method, uri)
    assert message.startswith(f"400 {shown} (127.0.0.1) "), message
    assert message.endswith("ms")
    for secret in SECRETS:
        assert secret not in message


@pytest.mark.parametrize(
    ("status", "level"),
    [
        (200, logging.INFO),
        (201, logging.INFO),
        (302, logging.INFO),
        (304, logging.INFO),
        (400, logging.WARNING),
        (401, logging.WARNING),
        (404, logging.WARNING),
        (429, logging.WARNING),
        (499, logging.WARNING),
        (500, logging.ERROR),
        (503, logging.ERROR),
    ],
)
def test_levels_are_tornados(caplog: pytest.LogCaptureFixture, status: int, level: int) -> None:
    """2xx and 3xx info, 4xx warning, 5xx error: as tornado's own access log."""
    logged_level, message = logged(caplog, status, "GET", "/?key=S3CRETKEY")
    assert logged_level == level
    assert message.startswith(f"{status} GET /?key=*** (127.0.0.1) ")
    assert "S3CRETKEY" not in message


class Boom(handlers.BaseHandler):
    def get(self) -> None:
        raise RuntimeError("boom")

    def write_error_message(
        self, status_code: int, message: str, fields: dict[str, object] | None = None
    ) -> None:
        self.finish({"status": status_code, "error": message})


class BoomSocket(live.ConsoleSocket):
    """The console's socket, failing before its upgrade."""

    async def get(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")


@pytest_asyncio.fixture
async def boom_url() -> AsyncIterator[str]:
    """An application with ntorque's log function and handlers that raise."""
    routes = [(r"/boom", Boom), (r"/socket", BoomSocket, {"console": None})]
    app = tornado.web.Application(routes, log_function=handlers.log_request, serve_traceback=False)
    server = HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        await server.close_all_connections()


async def test_an_uncaught_exception_is_logged_without_the_query(
    caplog: pytest.LogCaptureFixture, boom_url: str
) -> None:
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        with caplog.at_level(logging.INFO):
            answer = await client.fetch(f"{boom_url}/boom?token=TOKEN", raise_error=False)
    finally:
        client.close()
    assert answer.code == 500
    lines = [(record.name, record.levelno, record.getMessage()) for record in caplog.records]
    assert ("tornado.access", logging.ERROR) in {line[:2] for line in lines}, lines
    uncaught = [record for record in caplog.records if record.exc_info]
    assert len(uncaught) == 1, lines
    assert "GET /boom?token=*** (127.0.0.1)" in uncaught[0].getMessage()
    assert "TOKEN" not in caplog.text
    assert "RuntimeError: boom" in caplog.text  # the traceback is still logged


async def test_the_console_socket_logs_an_uncaught_exception_without_the_query(
    caplog: pytest.LogCaptureFixture, boom_url: str
) -> None:
    """A console page's socket carries its search (a url, perhaps with a token)."""
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        with caplog.at_level(logging.INFO):
            url = f"{boom_url}/socket?q=https://user:PASSW0RD@example.com/"
            answer = await client.fetch(url, raise_error=False)
    finally:
        client.close()
    assert answer.code == 500
    uncaught = [record for record in caplog.records if record.exc_info]
    assert len(uncaught) == 1, caplog.text
    assert "GET /socket?q=*** (127.0.0.1)" in uncaught[0].getMessage()
    assert "PASSW0RD" not in caplog.text


# -- HSTS ----------------------------------------------------------------------

HSTS = "max-age=31536000"
in_node_loop = pytest.mark.asyncio(loop_scope="module")  # the module's shared node


def enqueue_path(hooks: HookServer) -> tuple[str, str]:
    hook = f"/status/200/{uuid.uuid4().hex}"
    return hook, "/?" + urlencode({"url": hooks.url(hook)})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hsts_behind_proxy(module_backend: Backend) -> AsyncIterator[LiveNode]:
    settings = {"enable_hsts": True, "hsts_protocol_header": "X-Forwarded-Proto"}
    async with live_for(module_backend, **settings) as node:
        yield node


@in_node_loop
async def test_hsts_redirects_plain_gets_and_refuses_plain_posts(
    hsts_behind_proxy: LiveNode, hooks: HookServer
) -> None:
    node = hsts_behind_proxy
    moved = await node.request("GET", "/task/1?x=1", key="")
    assert moved.status == 301
    assert moved.headers["Location"] == f"https://127.0.0.1:{node.port}/task/1?x=1"
    assert "Strict-Transport-Security" not in moved.headers  # only ever sent over https
    _, path = enqueue_path(hooks)
    refused = await node.request("POST", path)
    assert refused.status == 400
    assert refused.json == {"status": 400, "error": "this server takes requests over https only"}


@in_node_loop
async def test_hsts_trusts_the_proxys_protocol_header(
    hsts_behind_proxy: LiveNode, hooks: HookServer
) -> None:
    node = hsts_behind_proxy
    proxied = {"X-Forwarded-Proto": "https"}
    banner = await node.request("GET", "/", headers=proxied)
    assert banner.status == 200
    assert banner.headers["Strict-Transport-Security"] == HSTS
    hook, path = enqueue_path(hooks)
    created = await node.request("POST", path, headers=proxied)
    assert created.status == 201, created.body
    assert created.headers["Strict-Transport-Security"] == HSTS
    assert len(await hooks.wait_for_calls_async(hook, 1)) == 1
    plain = {"X-Forwarded-Proto": "http"}
    assert (await node.request("GET", "/", headers=plain, key="")).status == 301


async def test_without_hsts_plain_http_is_served(backend: Backend) -> None:
    async with live_for(backend, loops=False) as node:
        banner = await node.request("GET", "/", headers={"X-Forwarded-Proto": "https"}, key="")
        assert banner.status == 200
        assert "Strict-Transport-Security" not in banner.headers
