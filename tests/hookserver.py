"""A real HTTP(S) "web hook" server for ntorque's tests.

The task queue calls web hooks over the network; tests point it at a
:class:`HookServer` instead.  The server listens on ``127.0.0.1`` (free port),
runs its own tornado IOLoop on a daemon thread (so both sync and async tests
can use it), records every request as a :class:`Call`, and answers according
to the request path:

``/status/<code>[/<anything>]``
    answers ``<code>`` (200-599; body ``ok`` unless 204/304).
``/slow/<seconds>[/<anything>]``
    waits ``<seconds>`` (float) without blocking the loop, then answers 200.
``/redirect/<code>/<target-path...>``
    answers ``<code>`` (301, 302, 303, 307 or 308) with an absolute
    ``Location`` on this server, e.g. ``/redirect/302/status/200/x`` points
    to ``/status/200/x``.
``/flaky/<n>[/<anything>]``
    answers 500 to the first ``n`` calls on that exact path, then 200.
``/chaos/<p500>/<phang>/<hang_s>[/<anything>]``
    per call, answers 500 with probability ``p500``, or waits ``hang_s``
    seconds then answers 200 with probability ``phang``, else 200 at once.
    The draw for the n-th call on a path is seeded by (path, n), so a run is
    reproducible and :func:`chaos_reply` tells afterwards what each call got.
``/retry-after/<code>/<seconds>/<form>[/<anything>]``
    answers ``<code>`` with a ``Retry-After`` header of ``<seconds>``, as a
    number (form ``s``) or as an HTTP date that many seconds ahead (``date``).
``/poison[/<anything>]``
    answers 500 when the request body contains ``POISON``, else 200.
anything else
    answers 200.

A malformed known route (e.g. ``/status/abc``) answers 400, so typos show up.
Any method works (GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE); bodies of any
method are recorded byte for byte (up to 64 MiB).  The trailing
``/<anything>`` lets each test use a unique path and filter its own calls.

Example::

    with HookServer() as hooks:
        enqueue(hooks.url("/status/500/" + uuid4().hex))
        hooks.wait_for_calls(path, count=3)
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import http.client
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import trustme
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

__all__ = ["Call", "HookServer", "TLSFiles", "chaos_reply", "make_tls_files"]

MAX_BODY_BYTES = 64 * 1024 * 1024
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.01
POISON = b"POISON"


@dataclass(frozen=True)
class Call:
    """One request received by the hook server."""

    path: str
    query: str
    method: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for serving HTTPS: CA certificate, server chain and key."""

    ca_pem: Path
    cert_pem: Path
    key_pem: Path

    def client_context(self) -> ssl.SSLContext:
        """An SSL client context that trusts the CA (for urllib etc.)."""
        return ssl.create_default_context(cafile=str(self.ca_pem))

    def server_context(self) -> ssl.SSLContext:
        """An SSL server context serving the certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_pem), str(self.key_pem))
        return context


def make_tls_files(directory: Path) -> TLSFiles:
    """Make a throw-away CA and a cert for 127.0.0.1/localhost in directory."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(
        ca_pem=directory / "ca.pem",
        cert_pem=directory / "server-cert.pem",
        key_pem=directory / "server-key.pem",
    )
    files.ca_pem.write_bytes(ca.cert_pem.bytes())
    files.cert_pem.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    files.key_pem.write_bytes(cert.private_key_pem.bytes())
    return files


@dataclass
class _Recorder:
    """Thread-safe store of calls and per-path flaky counters."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[Call] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    open_now: dict[str, int] = field(default_factory=dict)  # calls being answered, per path
    most_open: dict[str, int] = field(default_factory=dict)  # the most at once, per path

    def opened(self, path: str) -> None:
        with self.lock:
            self.open_now[path] = self.open_now.get(path, 0) + 1
            self.most_open[path] = max(self.most_open.get(path, 0), self.open_now[path])

    def closed(self, path: str) -> None:
        with self.lock:
            self.open_now[path] -= 1

    def record(self, call: Call) -> int:
        """Store call; return how many calls its path has had (1-based)."""
        with self.lock:
            self.calls.append(call)
            self.counts[call.path] = self.counts.get(call.path, 0) + 1
            return self.counts[call.path]

    def snapshot(self, path: str | None) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if path is None or c.path == path]

    def clear(self) -> None:
        with self.lock:
            self.calls.clear()
            self.counts.clear()
            self.most_open.clear()


@dataclass(frozen=True)
class _Reply:
    status: int
    location: str | None = None
    sleep_s: float = 0.0
    echo: bool = False  # answer with the request's own body
    headers: tuple[tuple[str, str], ...] = ()


class _BadRoute(ValueError):
    pass


def _int_arg(parts: list[str], index: int) -> int:
    try:
        return int(parts[index])
    except (IndexError, ValueError):
        raise _BadRoute(f"expected an integer at segment {index}") from None


def _float_arg(parts: list[str], index: int) -> float:
    try:
        value = float(parts[index])
    except (IndexError, ValueError):
        raise _BadRoute(f"expected a number at segment {index}") from None
    if not 0 <= value < float("inf"):
        raise _BadRoute("seconds must be finite and >= 0")
    return value


def _status_reply(parts: list[str], nth_call: int) -> _Reply:
    code = _int_arg(parts, 1)
    if not 200 <= code <= 599:
        raise _BadRoute("status code must be 200-599")
    return _Reply(code)


def _slow_reply(parts: list[str], nth_call: int) -> _Reply:
    return _Reply(200, sleep_s=_float_arg(parts, 1))


def _redirect_reply(parts: list[str], nth_call: int) -> _Reply:
    code = _int_arg(parts, 1)
    if code not in REDIRECT_CODES:
        raise _BadRoute(f"redirect code must be one of {sorted(REDIRECT_CODES)}")
    return _Reply(code, location="/" + "/".join(parts[2:]))


def _flaky_reply(parts: list[str], nth_call: int) -> _Reply:
    failures = _int_arg(parts, 1)
    return _Reply(500 if nth_call <= failures else 200)


def _probability_arg(parts: list[str], index: int) -> float:
    value = _float_arg(parts, index)
    if value > 1:
        raise _BadRoute("a probability must be between 0 and 1")
    return value


def chaos_reply(path: str, nth_call: int) -> str:
    """What ``/chaos/...`` answers the nth_call-th (1-based) call on path:
    ``"500"``, ``"hang"`` (then 200) or ``"200"``. Raises ValueError if the
    path is not a well-formed chaos route."""
    parts = path.strip("/").split("/")
    if parts[0] != "chaos":
        raise ValueError(f"not a chaos route: {path!r}")
    p500, phang = _probability_arg(parts, 1), _probability_arg(parts, 2)
    _float_arg(parts, 3)
    if p500 + phang > 1:
        raise _BadRoute("p500 + phang must not exceed 1")
    draw = random.Random(f"{path}#{nth_call}").random()
    if draw < p500:
        return "500"
    return "hang" if draw < p500 + phang else "200"


def _chaos_reply(path: str, nth_call: int) -> _Reply:
    kind = chaos_reply(path, nth_call)
    if kind == "500":
        return _Reply(500)
    hang_s = _float_arg(path.strip("/").split("/"), 3)
    return _Reply(200, sleep_s=hang_s if kind == "hang" else 0.0)


def _retry_after_reply(parts: list[str], nth_call: int) -> _Reply:
    code, seconds = _status_reply(parts, nth_call).status, _float_arg(parts, 2)
    form = parts[3] if len(parts) > 3 else ""
    if form == "s":
        value = str(int(seconds))
    elif form == "date":
        value = email.utils.formatdate(time.time() + seconds, usegmt=True)
    else:
        raise _BadRoute("the Retry-After form must be s or date")
    return _Reply(code, headers=(("Retry-After", value),))


_ROUTES = {
    "retry-after": _retry_after_reply,
    "status": _status_reply,
    "slow": _slow_reply,
    "redirect": _redirect_reply,
    "flaky": _flaky_reply,
}


def _route(path: str, nth_call: int, body: bytes = b"") -> _Reply:
    """Decide the reply for a path; raises _BadRoute if malformed."""
    parts = path.strip("/").split("/")
    if parts[0] == "poison":
        return _Reply(500 if POISON in body else 200)
    if parts[0] == "echo":  # /echo/<code>/...: answers code, repeating the body
        return dataclasses.replace(_status_reply(parts, nth_call), echo=True)
    if parts[0] == "chaos":
        return _chaos_reply(path, nth_call)
    handler = _ROUTES.get(parts[0])
    return _Reply(200) if handler is None else handler(parts, nth_call)


class _HookHandler(RequestHandler):
    """Records the request, then answers as the path says."""

    def initialize(self, server: HookServer) -> None:
        self._server = server

    async def _handle(self) -> None:
        request = self.request
        call = Call(
            path=request.path,
            query=request.query,
            method=request.method or "",
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.body,
            at=time.time(),
        )
        nth_call = self._server._recorder.record(call)
        self._server._recorder.opened(call.path)
        try:
            await self._answer(call, nth_call)
        finally:
            self._server._recorder.closed(call.path)

    async def _answer(self, call: Call, nth_call: int) -> None:
        try:
            reply = _route(call.path, nth_call, call.body)
        except _BadRoute as exc:
            self._send(400, f"bad hook route {call.path!r}: {exc}")
            return
        await self._sleep(reply.sleep_s)
        if reply.location is not None:
            self.set_header("Location", self._server.url(reply.location))
        for name, value in reply.headers:
            self.set_header(name, value)
        self._send(reply.status, call.body.decode(errors="replace") if reply.echo else "ok")

    get = head = options = post = put = patch = delete = _handle

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up early when the server is stopping."""
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self._server._stopping.wait(), seconds)
        except TimeoutError:
            pass

    def _send(self, status: int, body: str) -> None:
        reason = None if status in http.client.responses else "Hook Status"
        self.set_status(status, reason)
        if status in (204, 304):
            self.finish()
            return
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(body)


class HookServer:
    """A recording web-hook server on 127.0.0.1 with its own IOLoop thread."""

    def __init__(self, tls: TLSFiles | None = None) -> None:
        self._tls = tls
        self._recorder = _Recorder()
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: IOLoop | None = None
        self._stopping = asyncio.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        """Bind a free port, start the server thread and return self."""
        if self._thread is not None:
            raise RuntimeError("HookServer already started")
        ssl_context = None if self._tls is None else self._tls.server_context()
        sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        self._port = int(sockets[0].getsockname()[1])
        self._stopping = asyncio.Event()
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._run,
            args=(sockets, ssl_context),
            name=f"HookServer:{self._port}",
            daemon=True,
        )
        self._thread.start()
        self._await_ready()
        return self

    def _await_ready(self) -> None:
        if not self._ready.wait(START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("HookServer did not start in time")
        if self._error is not None:
            error, self._error = self._error, None
            self.stop()
            raise RuntimeError("HookServer failed to start") from error

    def stop(self) -> None:
        """Stop the server and its loop and join the thread (idempotent).

        Slow requests in flight are woken up and answered at once; open
        connections are then closed.
        """
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and thread.is_alive():
            loop.add_callback(self._stopping.set)
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            raise RuntimeError("HookServer thread did not stop in time")
        self._thread = self._loop = None
        error, self._error = self._error, None
        if error is not None:
            raise RuntimeError("HookServer failed while stopping") from error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- server thread -------------------------------------------------------

    def _run(self, sockets: list[socket.socket], ssl_context: ssl.SSLContext | None) -> None:
        loop = IOLoop(make_current=False)
        self._loop = loop
        try:
            loop.run_sync(lambda: self._serve(sockets, ssl_context))
        except BaseException as exc:
            self._error = exc
        finally:
            for sock in sockets:
                sock.close()
            loop.close(all_fds=True)
            self._ready.set()

    async def _serve(
        self, sockets: list[socket.socket], ssl_context: ssl.SSLContext | None
    ) -> None:
        app = Application(
            [(r"/.*", _HookHandler, {"server": self})],
            log_function=lambda handler: None,
        )
        server = HTTPServer(app, ssl_options=ssl_context, max_body_size=MAX_BODY_BYTES)
        server.add_sockets(sockets)
        self._ready.set()
        await self._stopping.wait()
        await self._shutdown(server)

    async def _shutdown(self, server: HTTPServer) -> None:
        server.stop()
        for _ in range(10):  # let woken slow handlers write their answers
            await asyncio.sleep(0)
        await asyncio.wait_for(server.close_all_connections(), STOP_TIMEOUT_S / 2)
        others = asyncio.all_tasks() - {asyncio.current_task()}
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    # -- addresses -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:PORT`` (only valid once started)."""
        if self._port is None:
            raise RuntimeError("HookServer not started")
        scheme = "http" if self._tls is None else "https"
        return f"{scheme}://127.0.0.1:{self._port}"

    def url(self, path: str) -> str:
        """Absolute URL of path (which should start with ``/``)."""
        return self.base_url + path

    # -- recorded calls ------------------------------------------------------

    def most_at_once(self, path: str) -> int:
        """The most calls to path the server was answering at one moment."""
        with self._recorder.lock:
            return self._recorder.most_open.get(path, 0)

    def calls(self, path: str | None = None) -> list[Call]:
        """Snapshot of calls in arrival order, optionally for one exact path."""
        return self._recorder.snapshot(path)

    def wait_for_calls(self, path: str, count: int, timeout_s: float = 10.0) -> list[Call]:
        """Wait until path has at least count calls; return all of them.

        Blocks the calling thread: in async tests use wait_for_calls_async.
        """
        deadline = time.monotonic() + timeout_s
        while (found := self._poll(path, count, deadline, timeout_s)) is None:
            time.sleep(POLL_INTERVAL_S)
        return found

    async def wait_for_calls_async(
        self, path: str, count: int, timeout_s: float = 10.0
    ) -> list[Call]:
        """Like wait_for_calls, but sleeps on the caller's event loop."""
        deadline = time.monotonic() + timeout_s
        while (found := self._poll(path, count, deadline, timeout_s)) is None:
            await asyncio.sleep(POLL_INTERVAL_S)
        return found

    def _poll(self, path: str, count: int, deadline: float, timeout_s: float) -> list[Call] | None:
        """The calls if there are enough, None to keep waiting, or raise."""
        found = self.calls(path)
        if len(found) >= count:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(self._timeout_message(path, count, timeout_s))
        return None

    def _timeout_message(self, path: str, count: int, timeout_s: float) -> str:
        found = len(self.calls(path))
        seen = sorted({c.path for c in self.calls()})
        return (
            f"expected >= {count} call(s) to {path!r} within {timeout_s}s, "
            f"got {found}; paths called so far: {seen}"
        )

    def clear(self) -> None:
        """Forget recorded calls (and reset the flaky counters)."""
        self._recorder.clear()
