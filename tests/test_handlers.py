"""What every handler obeys (ntorque.handlers): HSTS as the settings say. Over
plain http, with HSTS on, a GET is moved to https and anything else refused;
behind a TLS proxy, hsts_protocol_header says which scheme the client used.
(HSTS over the node's own TLS listener: test_tls.py; login limiting:
test_auth.py.) Nodes in the test's own event loop, on both backends.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest
import pytest_asyncio

from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import LiveNode

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
