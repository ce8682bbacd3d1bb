"""Fuzzing the HTTP API: thousands of generated requests against a node.

Hypothesis makes requests (method, path, query arguments, pass-through and
other headers, Content-Type and charset, bodies, API keys) and a keep-alive
raw-socket client sends them, byte for byte, over real HTTP to a node in the
test's own event loop, on each backend (the client runs in a thread, off the
node's loop). Whatever comes in: no 5xx, every error is JSON {"status",
"error"}, no traceback in the node's log, and exactly one stored task per 201.

The node serves the API only (role web), so no generated url is ever called.
Requests that are not HTTP at all (control characters in a header, which
tornado refuses before ntorque sees them) must get a bare 400 from the HTTP
layer; they are counted apart. Seeded: CI sends the same requests each time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import http.client
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
import sqlalchemy as sa
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from ntorque import config
from ntorque.store import engine as database
from ntorque.targets import Policy
from tests.conftest import Backend, live_for
from tests.inprocess import LiveNode

# Two parts per backend (each a test of its own, under the per-test timeout),
# each from its own fixed seed: 4 x 2,500 = 10,000 requests in all.
PARTS = (1, 2)
REQUESTS_PER_PART = 2500
MAX_BODY = 4096
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    malformed: bool  # not valid HTTP: the HTTP layer answers


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    created: int = 0
    malformed: int = 0

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


# -- what to send ----------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Header values: any character but controls (sent as UTF-8), space and tab.
VALUE_CHARS = st.characters(exclude_categories=["Cc", "Cs"]) | st.sampled_from("\t ")
CONTROL_CHARS = st.sampled_from("\r\n\x00\x01\x0b\x1f\x7f")

URLS = [
    "http://127.0.0.1:9/hooks/a",
    "https://example.com/hooks/b?x=1&y=2",
    "http://[::1]:8080/h",
    "http://localhost/h",
    "HTTP://EXAMPLE.COM/",
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/",
    "http://0251.0376.0251.0376/",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1%25eth0]/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "ftp://example.com/x",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "javascript:alert(1)",
    "http://%31%32%37.0.0.1/",
    "http://exämple.com/",
    "http://user:pw@127.0.0.1/",
    "http://127.0.0.1:99999/",
    "http://127.0.0.1:-1/",
    "http://[::1/",
    "//example.com/x",
    "http://example.com/" + "a" * 2048,
    "http://example.com/" + "a" * 2020,
]


def text_values(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)


def digits() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-10, 10**25).map(str),
        st.sampled_from(["0", "1", "99999999999999999999", "9223372036854775808", "1e3", "0x10"]),
        st.text(alphabet="0123456789\u0660\u0661\u0662", min_size=1, max_size=22),
    )


def urls() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(URLS),
        st.builds(lambda tail: f"http://127.0.0.1:9/{tail}", text_values(60)),
        st.builds(lambda host: f"http://{host}/", text_values(30)),
        text_values(80),
    )


def query_pairs() -> st.SearchStrategy[list[tuple[str, str]]]:
    pair = st.one_of(
        st.tuples(st.just("url"), urls()),
        st.tuples(
            st.just("method"), st.sampled_from(["post", "PUT", "Patch", "DELETE", "GET", ""])
        ),
        st.tuples(st.just("method"), text_values(10)),
        st.tuples(st.just("timeout"), digits()),
        st.tuples(text_values(10), text_values(20)),
    )
    return st.lists(pair, max_size=5)


def encoded_query(pairs: list[tuple[str, str]], raw_tail: str) -> str:
    encoded = "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)
    return "?" + encoded + raw_tail if encoded or raw_tail else ""


def paths() -> st.SearchStrategy[str]:
    task_path = st.builds(
        lambda plural, task_id, tail: f"/task{plural}/{quote(task_id, safe='')}{tail}",
        st.sampled_from(["", "s"]),
        digits(),
        st.sampled_from(["", "/push", "/attempts", "/", "/x"]),
    )
    other = st.builds(lambda text: "/" + quote(text, safe="/"), text_values(30))
    return st.one_of(st.just("/"), st.just("/"), task_path, other)


def content_types() -> st.SearchStrategy[str]:
    charset = st.one_of(
        st.sampled_from(["utf-8", "UTF-8", "latin-1", "ascii", "utf-16", "klingon", '"utf-8"', ""]),
        st.text(VALUE_CHARS, max_size=50),
    )
    kind = st.sampled_from(["text/plain", "application/json", "application/octet-stream", ""])
    return st.one_of(
        st.builds(lambda k, c: f"{k}; charset={c}", kind, charset),
        kind,
        st.text(VALUE_CHARS, max_size=60),
    )


def header_name() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12),
        st.just("N" * 257),  # one character over the limit
    )


def headers(key: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    value = st.text(VALUE_CHARS, max_size=30).map(str.strip)
    passthrough = st.one_of(
        st.builds(lambda name: f"NTORQUE-PASSTHROUGH-{name}", header_name()),
        st.builds(lambda name: f"ntorque_passthrough_{name}", header_name()),
        st.sampled_from(
            ["NTORQUE-PASSTHROUGH-Host", "NTORQUE-PASSTHROUGH-Connection", "NTORQUE-PASSTHROUGH-"]
        ),
    )
    one = st.one_of(
        st.tuples(passthrough, value),
        st.tuples(st.just("Content-Type"), content_types()),
        st.tuples(header_name(), value),
        st.just(("NTORQUE-PASSTHROUGH-X-Big", "v" * 9000)),
    )
    keys = st.sampled_from([[("NTORQUE_API_KEY", key)]] * 8 + [[], [("NTORQUE-API-KEY", "nope")]])
    # 51 pass-through headers, one too many (built here: drawing each is slow)
    many = [(f"NTORQUE-PASSTHROUGH-X-{n}", "v") for n in range(51)]
    extra = st.one_of(st.lists(one, max_size=4), st.just(many))
    return st.builds(lambda k, e: k + e, keys, extra)


def bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda text: text.encode("utf-8")),
        st.just(b"x" * (MAX_BODY + 1)),
        st.just(b""),
    )


GOOD_URL = "http://127.0.0.1:9/hooks/fuzz"
GOOD_TYPE = ("Content-Type", "text/plain; charset=utf-8")
REQUESTS_PER_EXAMPLE = 10


@st.composite
def request_batches(draw: st.DrawFn, key: str) -> list[Request]:
    """One drawn request, and nine variations of it: each drawn part is also
    sent alongside parts known to be good, so a bad part is met on its own."""
    method = draw(st.sampled_from(["POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS", "FOO"]))
    path, pairs = draw(paths()), draw(query_pairs())
    tail = draw(st.sampled_from(["", "", "", "&%zz", "&u=%ff", "&url="]))
    sent, body = draw(headers(key)), draw(bodies())
    url = draw(urls())
    control = (draw(header_name()), "a" + draw(CONTROL_CHARS) + "b")
    auth = [("NTORQUE_API_KEY", key)]
    typed = [*auth, GOOD_TYPE]
    query = encoded_query(pairs, tail)
    with_url = encoded_query([("url", url), *pairs], tail)
    good = encoded_query([("url", GOOD_URL)], "")
    variants = [
        (method, path + (query if path == "/" else ""), sent, body),
        ("POST", "/" + query, sent, body),
        ("POST", "/" + with_url, sent, body),
        ("POST", "/" + encoded_query([("url", url)], ""), typed, b"a=1"),
        ("POST", "/" + good, [*auth, *sent], body),
        ("POST", "/" + good, typed, body),
        ("GET", path, sent, b""),
        (method, path, auth, body),
        ("POST", "/" + with_url, [], body),  # no key
    ]
    batch = [Request(m, t, tuple(h), b, False) for m, t, h, b in variants]
    # not HTTP any more: a control character in a header
    batch.append(Request("POST", "/" + good, (*auth, control), body, True))
    return batch


# -- sending -----------------------------------------------------------------------------


class RawClient:
    """HTTP/1.1 over one kept-alive socket, sending exactly the bytes asked for."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def send(self, request: Request) -> tuple[int, bytes]:
        """The answer's status and body. A kept-alive connection the server has
        closed meanwhile is opened again, once (the request never reached it)."""
        fresh = self.sock is None
        try:
            return self._exchange(request)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.close()
            if fresh:
                raise
            return self._exchange(request)

    def _exchange(self, request: Request) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        lines = [f"{request.method} {request.target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in request.headers]
        lines.append(f"Content-Length: {len(request.body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        self.sock.sendall(head + request.body)
        response = http.client.HTTPResponse(self.sock, method=request.method)
        response.begin()
        body = response.read()
        if response.will_close or request.malformed:  # tornado hangs up after a bare 400
            self.close()
        return response.status, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def check(request: Request, status: int, body: bytes, tally: Tally) -> None:
    tally.statuses[status] += 1
    assert status < 500, (request, status, body)
    if request.malformed:
        assert status == 400, (request, status, body)
        tally.malformed += 1
        return
    if request.method == "HEAD":
        return
    answer = json.loads(body)
    if status >= 400:
        assert answer == {"status": status, "error": answer["error"]}, (request, answer)
        assert isinstance(answer["error"], str) and answer["error"], answer
    if status == 201 and request.target.startswith("/?"):
        tally.created += 1
        assert answer["status"] == "pending", answer
        Policy().check_url(answer["url"])  # nothing the default policy refuses got in


# -- the run -----------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzzed(module_backend: Backend) -> AsyncIterator[LiveNode]:
    """A web-only node (no consumer: no generated url is ever called)."""
    settings = {
        "max_body_bytes": MAX_BODY,
        "max_due_delay_s": 600,
        "auth_failure_limit": 0,  # bad keys are drawn often: no lock-out (429)
    }
    async with live_for(module_backend, loops=False, **settings) as node:
        yield node


async def stored_tasks(backend: Backend) -> int:
    """Tasks in the backend's database, counted behind ntorque's back (an engine of our own)."""
    engine = database.make_engine(config.Settings(database_url=backend.database_url))
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(sa.text("SELECT count(*) FROM tasks")) or 0)
    finally:
        await engine.dispose()


def record(line: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "fuzz.txt", "a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


# Drawn in place of the node's API key, replaced when sent: no drawn header
# value holds a control character, so none is taken for it.
KEY_SLOT = "\x00api-key\x00"


@functools.cache
def drawn(part: int) -> tuple[Request, ...]:
    """The part's requests, drawn by Hypothesis from the part's seed: the same
    on every run, and for every backend (drawn once). Drawn before any is
    sent, so that drawing (CPU-bound) never competes with the node's loop for
    the interpreter."""
    requests: list[Request] = []

    @settings(
        max_examples=REQUESTS_PER_PART // REQUESTS_PER_EXAMPLE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @seed(part)
    @given(request_batches(KEY_SLOT))
    def one(batch: list[Request]) -> None:
        requests.extend(batch)

    one()
    return tuple(requests)


def with_key(request: Request, key: str) -> Request:
    headers = tuple((name, key if value == KEY_SLOT else value) for name, value in request.headers)
    return dataclasses.replace(request, headers=headers)


def send_all(port: int, key: str, requests: tuple[Request, ...], tally: Tally) -> None:
    """Send each request (with the node's key) over a raw socket and check its
    answer. Blocking: run it in a thread, off the node's loop."""
    client = RawClient(port)
    try:
        for drawn_request in requests:
            request = with_key(drawn_request, key)
            status, body = client.send(request)
            check(request, status, body, tally)
    finally:
        client.close()


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("part", PARTS)
async def test_generated_requests_never_break_the_api(
    fuzzed: LiveNode, module_backend: Backend, capsys: pytest.CaptureFixture[str], part: int
) -> None:
    tally = Tally()
    before = await stored_tasks(module_backend)
    started = time.monotonic()
    requests = await asyncio.to_thread(drawn, part)  # drawn by the first backend's test
    await asyncio.to_thread(send_all, fuzzed.port, fuzzed.key, requests, tally)
    seconds = time.monotonic() - started
    stored = await stored_tasks(module_backend) - before
    logs = fuzzed.logged.text
    line = (
        f"FUZZ {module_backend.name} part {part}: requests={tally.total} created={tally.created} "
        f"stored={stored} malformed={tally.malformed} seconds={seconds:.1f} "
        f"statuses={dict(sorted(tally.statuses.items()))}"
    )
    record(line)
    with capsys.disabled():
        print(f"\n{line}")
    assert tally.total >= REQUESTS_PER_PART
    assert stored == tally.created
    assert "Traceback" not in logs, logs[-4000:]
    assert tally.statuses[201] > 100 and tally.statuses[400] > 100, tally  # both kinds were sent
