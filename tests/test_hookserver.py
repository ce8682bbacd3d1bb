"""Quick sync tests for the web-hook test server in tests/hookserver.py."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient

try:
    from tests.hookserver import Call, HookServer, chaos_reply, make_tls_files
except ModuleNotFoundError:  # tests/ itself is on sys.path (no __init__.py)
    from hookserver import Call, HookServer, chaos_reply, make_tls_files  # type: ignore[no-redef,import-not-found,unused-ignore]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def fetch(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    follow: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """Do one request; return (status, headers, body) even for 4xx/5xx."""
    request = urllib.request.Request(url, data=body, method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=context)]
    if not follow:
        handlers.append(_NoRedirect())
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


@pytest.fixture
def hooks() -> Iterator[HookServer]:
    with HookServer() as server:
        yield server


def test_status_codes_come_back(hooks: HookServer) -> None:
    assert fetch(hooks.url("/status/200/a"))[::2] == (200, b"ok")
    assert fetch(hooks.url("/status/500/a"))[::2] == (500, b"ok")
    assert fetch(hooks.url("/status/404"))[::2] == (404, b"ok")
    assert fetch(hooks.url("/status/204/a"))[::2] == (204, b"")
    assert fetch(hooks.url("/status/299/odd"))[0] == 299
    assert fetch(hooks.url("/anything/else?x=1"))[::2] == (200, b"ok")
    assert fetch(hooks.url("/status/abc"))[0] == 400


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_calls_recorded_with_method_headers_and_body(hooks: HookServer, method: str) -> None:
    body = bytes(range(256)) * 3 + b"\r\n\x00end"
    status, _, _ = fetch(hooks.url("/status/201/rec?a=1&b=2"), method, body, {"X-Token": "Sekret"})
    assert status == 201
    [call] = hooks.calls("/status/201/rec")
    assert isinstance(call, Call)
    assert (call.method, call.query, call.body) == (method, "a=1&b=2", body)
    assert call.headers["x-token"] == "Sekret"
    assert call.headers["content-length"] == str(len(body))
    assert abs(call.at - time.time()) < 5


def test_large_body_and_calls_filter_and_clear(hooks: HookServer) -> None:
    body = b"\xff\x00" * (3 * 1024 * 1024)
    assert fetch(hooks.url("/big"), "POST", body)[0] == 200
    fetch(hooks.url("/other"))
    assert hooks.calls("/big")[0].body == body
    assert [c.path for c in hooks.calls()] == ["/big", "/other"]
    hooks.clear()
    assert hooks.calls() == []


def test_slow_does_not_block_other_requests(hooks: HookServer) -> None:
    done: list[float] = []
    start = time.monotonic()
    slow = threading.Thread(target=lambda: done.append(fetch(hooks.url("/slow/0.5/x"))[0]))
    slow.start()
    hooks.wait_for_calls("/slow/0.5/x", 1)
    assert fetch(hooks.url("/status/200/fast"))[0] == 200
    assert time.monotonic() - start < 0.45
    slow.join(5)
    assert done == [200]
    assert time.monotonic() - start >= 0.5


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect(hooks: HookServer, code: int) -> None:
    path = f"/redirect/{code}/status/200/r{code}"
    status, headers, _ = fetch(hooks.url(path), follow=False)
    assert status == code
    assert headers["Location"] == hooks.url(f"/status/200/r{code}")
    assert fetch(hooks.url(path))[0] == 200
    assert len(hooks.calls(f"/status/200/r{code}")) == 1


def test_flaky(hooks: HookServer) -> None:
    statuses = [fetch(hooks.url("/flaky/2/f"))[0] for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    assert fetch(hooks.url("/flaky/2/g"))[0] == 500
    hooks.clear()
    assert fetch(hooks.url("/flaky/2/f"))[0] == 500


def test_chaos_answers_as_its_seeded_draws_say(hooks: HookServer) -> None:
    path = "/chaos/0.4/0.2/0.3/c"
    kinds = [chaos_reply(path, n) for n in range(1, 41)]
    assert kinds == [chaos_reply(path, n) for n in range(1, 41)]  # reproducible
    assert {"500", "hang", "200"} <= set(kinds)
    for kind in kinds:
        started = time.monotonic()
        status = fetch(hooks.url(path))[0]
        took = time.monotonic() - started
        assert status == (500 if kind == "500" else 200)
        if kind == "hang":
            assert took >= 0.3
    assert len(hooks.calls(path)) == len(kinds)
    assert {fetch(hooks.url("/chaos/1/0/5/all"))[0] for _ in range(3)} == {500}
    assert {fetch(hooks.url("/chaos/0/0/5/none"))[0] for _ in range(3)} == {200}
    assert fetch(hooks.url("/chaos/0.9/0.9/1/x"))[0] == 400
    assert fetch(hooks.url("/chaos/2/0/1/x"))[0] == 400
    assert fetch(hooks.url("/chaos/0.5/0"))[0] == 400


def test_poison_fails_only_poisoned_bodies(hooks: HookServer) -> None:
    assert fetch(hooks.url("/poison/p"), "POST", b"a POISONed body")[0] == 500
    assert fetch(hooks.url("/poison/p"), "POST", b"a wholesome body")[0] == 200
    assert fetch(hooks.url("/poison/p"), "POST", b"poison, lower case")[0] == 200
    assert fetch(hooks.url("/poison"), "PUT", b"POISON")[0] == 500
    assert len(hooks.calls("/poison/p")) == 3


def test_wait_for_calls_times_out_clearly(hooks: HookServer) -> None:
    fetch(hooks.url("/seen"))
    with pytest.raises(AssertionError, match=r"'/missing'.*got 0.*/seen"):
        hooks.wait_for_calls("/missing", 1, timeout_s=0.05)


def test_stop_does_not_hang_on_slow_request() -> None:
    server = HookServer().start()
    results: list[object] = []

    def call_slow() -> None:
        try:
            results.append(fetch(server.url("/slow/30"))[0])
        except OSError as error:
            results.append(error)

    client = threading.Thread(target=call_slow)
    client.start()
    server.wait_for_calls("/slow/30", 1)
    start = time.monotonic()
    server.stop()
    client.join(5)
    assert time.monotonic() - start < 3
    assert len(results) == 1
    server.stop()  # idempotent


def test_https_with_ca(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    with HookServer(tls=tls) as server:
        assert server.base_url.startswith("https://127.0.0.1:")
        context = tls.client_context()
        assert fetch(server.url("/status/202/tls"), context=context)[0] == 202
        assert server.calls("/status/202/tls")[0].method == "GET"
        with pytest.raises(urllib.error.URLError):
            fetch(server.url("/untrusted"), context=ssl.create_default_context())


def test_usable_from_async_code(hooks: HookServer) -> None:
    async def scenario() -> list[Call]:
        client = AsyncHTTPClient(force_instance=True)
        try:
            response = await client.fetch(
                hooks.url("/flaky/1/async"),
                method="DELETE",
                body=b"payload",
                allow_nonstandard_methods=True,
                raise_error=False,
            )
            assert response.code == 500
            return await hooks.wait_for_calls_async("/flaky/1/async", 1)
        finally:
            client.close()

    [call] = asyncio.run(scenario())
    assert (call.method, call.body) == ("DELETE", b"payload")
