"""Fuzzing the HTTP API: thousands of generated requests against a node.

Hypothesis makes requests (method, path, query arguments, pass-through and
other headers, Content-Type and charset, bodies, API keys) and a keep-alive
raw-socket client sends them, byte for byte, over real HTTP to a node in the
test's own event loop, on each backend (the client runs in a thread, off the
node's loop). Whatever comes in: no 5xx, every error is JSON {"status",
"error"} (with "field", or a batch's "errors", where inputs are at fault),
no traceback in the node's log, and exactly one stored task per task
answered as made.

Task control (issue 12) is fuzzed alongside: delay, eta (in every format,
relative to when each request is sent), retries, backoff, callback and
Idempotency-Key on enqueue; batches (POST /tasks) of good, bad and broken
items; listings (GET /tasks) with every filter, limit and cursor; bulk
cancel and retry with filters in the query or a body that may be anything;
one task's cancel, retry and DELETE. Fixed edge cases (each bound on either
side, inputs that broke parsers before) are sent once per part with the
status each must get. Afterwards nothing may be left half-written: every
callback linked both ways, every key naming a task.

Named queues (issue 13) and recurring schedules (issue 14) have parts of
their own, below; so do the schedules' rules, fuzzed without HTTP.

The node serves the API only (role web), so no generated url is ever called.
Requests that are not HTTP at all (control characters in a header, which
tornado refuses before ntorque sees them) must get a bare 400 from the HTTP
layer; they are counted apart. Seeded: CI sends the same requests each time.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email.utils
import functools
import http.client
import itertools
import json
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote_to_bytes
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
import sqlalchemy as sa
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from ntorque import config, jsonbody
from ntorque.errors import InvalidRequest
from ntorque.schedules import MAX_CATCH_UP, SHOWN_TICKS, plan, settings_from_json
from ntorque.store import engine as database
from ntorque.targets import Policy
from tests.conftest import Backend, live_for
from tests.inprocess import Clock, LiveNode

# Two parts per backend (each a test of its own, under the per-test timeout),
# each from its own fixed seed: 4 x 3,750 = 15,000 drawn requests in all
# (2,500 a part as before, and 1,250 of task control), and the edge cases.
PARTS = (1, 2)
REQUESTS_PER_PART = 3750
MAX_BODY = 4096
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    malformed: bool  # not valid HTTP: the HTTP layer answers
    expected: int | None = None  # the status a fixed edge case must get
    fields: frozenset[str] | None = None  # what a 400 may name as its "field" (None: unchecked)


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    created: set[int] = field(default_factory=set)  # ids of tasks answered as made
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


@functools.cache  # built once: building and validating a strategy costs more than a draw
def text_values(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)


@functools.cache
def digits() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-10, 10**25).map(str),
        st.sampled_from(["0", "1", "99999999999999999999", "9223372036854775808", "1e3", "0x10"]),
        st.text(alphabet="0123456789\u0660\u0661\u0662", min_size=1, max_size=22),
    )


@functools.cache
def urls() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(URLS),
        st.builds(lambda tail: f"http://127.0.0.1:9/{tail}", text_values(60)),
        st.builds(lambda host: f"http://{host}/", text_values(30)),
        text_values(80),
    )


@functools.cache
def query_pairs() -> st.SearchStrategy[list[tuple[str, str]]]:
    pair = st.one_of(
        st.tuples(st.just("url"), urls()),
        st.tuples(
            st.just("method"), st.sampled_from(["post", "PUT", "Patch", "DELETE", "GET", ""])
        ),
        st.tuples(st.just("method"), text_values(10)),
        st.tuples(st.just("timeout"), digits()),
        st.tuples(text_values(10), text_values(20)),
        *schedule_pairs(),
    )
    return st.lists(pair, max_size=5)


def encoded_query(pairs: list[tuple[str, str]], raw_tail: str) -> str:
    """The query string; lone surrogates go as the bytes they would be
    (invalid UTF-8, which the node must refuse)."""
    encoded = "&".join(
        f"{quote(name, safe='', errors=SURROGATES)}={quote(value, safe='', errors=SURROGATES)}"
        for name, value in pairs
    )
    return "?" + encoded + raw_tail if encoded or raw_tail else ""


# -- task control (issue 12): schedule, policy, idempotency, batch, listing, bulk ------

SURROGATES = "surrogatepass"
# Text that has broken parsers and databases before: NUL (PostgreSQL text
# refuses it), lone surrogates, LIKE wildcards, quoting, odd digits.
NASTY_TEXT = [
    "", " ", "\x00", "a\x00b", "\ud800", "x\udfff", "é", "💥", "\u202e", "\ufeff", "ﬁ",
    "%", "_", "%00", "\\", "'", '"', "null", "[]", "{}", "a" * 300, "\u0660", "²", "\U0010ffff",
    "\ud7ff",  # the code point before the surrogates
]  # fmt: skip
NASTY_NUMBERS = [
    "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", "-1e400", "1e308", "1e-400",
    "-0", "0.0", "0.5", "-1", "1_000", " 5 ", "+5", "\u0663", "²", "0x10", "9" * 30, "9" * 5000,
    "9223372036854775808", "",
]  # fmt: skip
# A time relative to when the request is sent, and its format: drawn as a
# slot (only unreserved characters, so quoting keeps it whole), filled in
# when sent, as the node's key is. "num" in a JSON body is a bare number.
TIME_SLOT = re.compile(r"__now([pm])(\d+)_([a-z]+)__")
TIME_FORMATS = (
    "epoch", "int", "num", "isoz", "isooff", "isoms", "isospace", "basic", "naive", "date", "http"
)  # fmt: skip
DAY = 86400
GOOD_FORMATS = ("epoch", "int", "isoz", "isooff", "isoms", "isospace", "basic")
OFFSETS = [-3600, -60, -6, -4, 0, 1, 30, 3600, 29 * DAY, 30 * DAY + 60, 10**9, -(10**9)]
GOOD_KEYS = ["k1", "k2", "k3"]  # drawn often: repeats are replays (200) or reuse (422)
TASK_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
STATUSES = [*TASK_STATUSES, "Pending", "done"]  # drawn as filters


def time_slot(offset: int, kind: str) -> str:
    return f"__now{'m' if offset < 0 else 'p'}{abs(offset)}_{kind}__"


@functools.cache
def nasty_text(max_size: int = 30) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NASTY_TEXT), text_values(max_size))


@functools.cache
def numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        digits(),
        st.sampled_from(NASTY_NUMBERS),
        st.floats().map(repr),
        st.integers(-(10**6), 10**7).map(str),
    )


@functools.cache
def times() -> st.SearchStrategy[str]:
    """eta / created_after / created_before: every format, good and bad."""
    slot = st.builds(
        time_slot,
        st.one_of(st.sampled_from(OFFSETS), st.integers(-(10**7), 10**8)),
        st.sampled_from(TIME_FORMATS),
    )
    fixed = st.sampled_from(
        [
            "2026-13-45T00:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
            "now", "tomorrow", "T", "--", "2026-W49-5T10:00Z", "1970-01-01T00:00:00Z",
            "2026-12-04T25:00:00Z", "2026-12-04T10:00:00+24:00", "+275760-09-13T00:00:00Z",
        ]
    )  # fmt: skip
    return st.one_of(slot, slot, fixed, numbers(), nasty_text())


@functools.cache
def schedule_pairs() -> list[st.SearchStrategy[tuple[str, str]]]:
    """The enqueue's new query parameters (also a batch item's fields)."""
    return [
        st.tuples(st.just("delay"), st.one_of(numbers(), st.sampled_from(OFFSETS).map(str))),
        st.tuples(st.just("eta"), times()),
        st.tuples(st.just("retries"), st.one_of(numbers(), st.sampled_from(["1", "36", "37"]))),
        st.tuples(
            st.just("backoff"),
            st.one_of(
                st.sampled_from(["linear", "exponential", "LINEAR", " exponential ", "fib", ""]),
                nasty_text(),
            ),
        ),
        st.tuples(st.just("callback"), st.one_of(st.just(GOOD_URL + "/done"), urls())),
    ]


@functools.cache
def sane_schedule_pairs() -> st.SearchStrategy[list[tuple[str, str]]]:
    """The new parameters with values that should pass, so that success
    paths (scheduled, policed, called back tasks) are exercised too."""
    good_time = st.builds(
        time_slot, st.sampled_from([0, 1, 60, 3600, 29 * DAY]), st.sampled_from(GOOD_FORMATS)
    )
    none: list[tuple[str, str]] = []
    schedule = st.one_of(
        st.just(none),
        st.integers(0, 3600).map(lambda delay: [("delay", str(delay))]),
        st.floats(0, 100).map(lambda delay: [("delay", repr(delay))]),
        good_time.map(lambda eta: [("eta", eta)]),
    )
    policy = st.lists(
        st.one_of(
            st.tuples(st.just("retries"), st.integers(1, 36).map(str)),
            st.tuples(st.just("backoff"), st.sampled_from(["linear", "exponential"])),
            st.tuples(st.just("callback"), st.just(GOOD_URL + "/done")),
        ),
        max_size=3,
    )
    return st.builds(lambda a, b: a + b, schedule, policy)


@functools.cache
def idempotency_keys() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(GOOD_KEYS),
        st.sampled_from(["", " ", "a" * 255, "a" * 256, "k\u00e9", "k 1"]),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300).map(str.strip),
        st.text(VALUE_CHARS, max_size=20).map(str.strip),
    )


@functools.cache
def json_values() -> st.SearchStrategy[object]:
    """Any JSON value, NaN, huge numbers and lone surrogates included."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([10**400, -(10**400), 2**63, 2**64]),
        st.floats(),
        nasty_text(),
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(nasty_text(8), inner, max_size=3)
        ),
        max_leaves=6,
    )


@functools.cache
def item_field(name: str) -> st.SearchStrategy[object]:
    """A batch item's field: mostly of its kind, sometimes any JSON."""
    proper: dict[str, st.SearchStrategy[object]] = {
        "url": st.one_of(st.just(GOOD_URL), st.just(GOOD_URL), urls()),
        "method": st.sampled_from(["POST", "put", "GET", ""]),
        "timeout": st.one_of(st.integers(-5, 10**6), digits()),
        "delay": st.one_of(st.floats(), st.integers(), numbers()),
        "eta": times(),
        "retries": st.one_of(st.integers(-2, 40), numbers()),
        "backoff": st.sampled_from(["linear", "exponential", "fib"]),
        "callback": urls(),
        "body": st.one_of(st.text(max_size=50), nasty_text()),
        "body_base64": st.one_of(
            st.binary(max_size=40).map(lambda data: base64.b64encode(data).decode()),
            nasty_text(),
        ),
        "content_type": st.one_of(content_types(), st.just("application/json")),
        "charset": st.sampled_from(
            ["utf-8", "latin-1", "utf-16", "idna", "rot13", "klingon", "utf\x00"]
        ),
        "headers": st.dictionaries(
            st.one_of(header_name(), st.sampled_from(["Host", "", "X Y"])),
            st.one_of(st.text(VALUE_CHARS, max_size=20), nasty_text()),
            max_size=3,
        ),
        "idempotency_key": idempotency_keys(),
    }
    return st.one_of(proper[name], proper[name], proper[name], json_values())


ITEM_FIELDS = (
    "url", "method", "timeout", "delay", "eta", "retries", "backoff", "callback", "body",
    "body_base64", "content_type", "charset", "headers", "idempotency_key",
)  # fmt: skip


@functools.cache
def sane_items() -> st.SearchStrategy[dict[str, object]]:
    """Batch items that should pass (bad ones come from batch_items)."""
    token = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12)
    return st.fixed_dictionaries(
        {"url": st.just(GOOD_URL)},
        optional={
            "method": st.sampled_from(["POST", "PUT", "patch", "DELETE"]),
            "timeout": st.integers(1, 600),
            "delay": st.one_of(st.integers(0, 3600), st.floats(0, 3600)),
            "retries": st.integers(1, 36),
            "backoff": st.sampled_from(["linear", "exponential"]),
            "callback": st.just(GOOD_URL + "/done"),
            "body": st.text(max_size=40),
            "content_type": st.sampled_from(["text/plain", "application/json"]),
            "headers": st.dictionaries(token.map(lambda name: "X-" + name), token, max_size=2),
            "idempotency_key": st.sampled_from(GOOD_KEYS),
        },
    )


@functools.cache
@st.composite
def batch_items(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 15)) == 0:
        return draw(json_values())  # not an object
    item = {"url": draw(item_field("url"))} if draw(st.integers(0, 9)) else {}
    for name in draw(st.lists(st.sampled_from(ITEM_FIELDS), max_size=3, unique=True)):
        item[name] = draw(item_field(name))
    if draw(st.integers(0, 20)) == 0:
        item[draw(nasty_text(10))] = draw(json_values())  # an unknown field
    return item


def as_json(value: object, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", SURROGATES)


DEEP = b"[" * 5000  # nested past Python's recursion limit
FIXED_BODIES = [
    b"", b"[]", b"{}", b"null", b"[1]", b"[{", b'[{"url": NaN}]', b"\xff\xfe", DEEP,
    b'{"a":' * 3000, b"[" + b"1e99999," * 3 + b"1]", b"[" + b"9" * 5000 + b"]",
]  # fmt: skip


@functools.cache
def batch_bodies() -> st.SearchStrategy[bytes]:
    items = st.one_of(sane_items(), sane_items(), sane_items(), batch_items())
    return st.one_of(
        st.builds(as_json, st.lists(sane_items(), min_size=1, max_size=5), st.booleans()),
        st.builds(as_json, st.lists(items, min_size=1, max_size=5), st.booleans()),
        st.builds(as_json, st.lists(batch_items(), min_size=1, max_size=5), st.booleans()),
        st.builds(as_json, json_values(), st.booleans()),
        st.sampled_from(FIXED_BODIES),
        st.binary(max_size=60),
    )


@functools.cache
def cursors() -> st.SearchStrategy[str]:
    def encoded(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode("utf-8", SURROGATES)).decode().rstrip("=")

    return st.one_of(
        st.integers(-5, 10**21).map(lambda number: encoded(f"t{number}")),
        st.sampled_from(["t²", "t\u0661\u0662", "t", "t-1", "t 1", "t1\x00", "x1"]).map(encoded),
        nasty_text(),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/"),
    )


@functools.cache
def filter_pairs(paging: bool) -> st.SearchStrategy[list[tuple[str, str]]]:
    """A listing's (or a bulk action's) filters: mostly meaningful, some not."""
    pair = st.one_of(
        st.tuples(st.just("status"), st.one_of(st.sampled_from(STATUSES), nasty_text())),
        st.tuples(
            st.just("url_prefix"),
            st.one_of(
                st.sampled_from([GOOD_URL, "http://127.0.0.1:9/", "https://", "a" * 2049]),
                nasty_text(),
            ),
        ),
        st.tuples(st.sampled_from(["created_after", "created_before"]), times()),
        st.tuples(st.just("limit"), st.one_of(numbers(), st.sampled_from(["1", "1000", "1001"]))),
        st.tuples(st.just("cursor"), cursors()),
        st.tuples(nasty_text(12), nasty_text()),  # unknown
    )
    pairs = st.lists(pair, max_size=4)
    return pairs if paging else pairs.map(without_paging)


def without_paging(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A bulk action's filters: limit and cursor are refused, so they are
    left in only a third of the time, to be refused."""
    if len(pairs) % 3:
        return pairs
    return [(name, value) for name, value in pairs if name not in ("limit", "cursor")]


@functools.cache
def bulk_bodies() -> st.SearchStrategy[bytes]:
    filters = st.dictionaries(
        st.one_of(st.sampled_from(["status", "url_prefix", "created_after", "created_before"]),
                  nasty_text(10)),
        st.one_of(json_values(), times(), st.sampled_from(STATUSES)),
        max_size=3,
    )  # fmt: skip
    return st.one_of(
        st.just(b""),
        st.builds(as_json, filters, st.booleans()),
        st.builds(as_json, json_values(), st.booleans()),
        st.sampled_from(FIXED_BODIES),
        st.binary(max_size=40),
    )


@functools.cache
def task_actions() -> st.SearchStrategy[tuple[str, str]]:
    """One task's routes, mostly on ids that exist (each database counts from 1)."""
    return st.tuples(
        st.sampled_from(["POST", "POST", "DELETE", "GET", "PUT"]),
        st.builds(
            lambda plural, task_id, tail: f"/task{plural}/{task_id}{tail}",
            st.sampled_from(["", "s"]),
            st.one_of(st.integers(1, 1500).map(str), digits().map(lambda d: quote(d, safe=""))),
            st.sampled_from(["/cancel", "/retry", "", "/cancel/", "/retry?x=1"]),
        ),
    )


@functools.cache
def paths() -> st.SearchStrategy[str]:
    task_path = st.builds(
        lambda plural, task_id, tail: f"/task{plural}/{quote(task_id, safe='')}{tail}",
        st.sampled_from(["", "s"]),
        digits(),
        st.sampled_from(["", "/push", "/attempts", "/", "/x", "/cancel", "/retry"]),
    )
    other = st.builds(lambda text: "/" + quote(text, safe="/"), text_values(30))
    listing = st.sampled_from(["/tasks", "/tasks/", "/tasks/cancel", "/tasks/retry", "/tasks/x"])
    return st.one_of(st.just("/"), st.just("/"), task_path, listing, other)


@functools.cache
def content_types() -> st.SearchStrategy[str]:
    charset = st.one_of(
        st.sampled_from(
            [
                "utf-8",
                "UTF-8",
                "latin-1",
                "ascii",
                "utf-16",
                "klingon",
                '"utf-8"',
                "",
                "undefined",
                "idna",
                "rot13",
            ]
        ),
        st.text(VALUE_CHARS, max_size=50),
    )
    kind = st.sampled_from(["text/plain", "application/json", "application/octet-stream", ""])
    return st.one_of(
        st.builds(lambda k, c: f"{k}; charset={c}", kind, charset),
        kind,
        st.text(VALUE_CHARS, max_size=60),
    )


@functools.cache
def header_name() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12),
        st.just("N" * 257),  # one character over the limit
    )


@functools.cache
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


@functools.cache
def bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda text: text.encode("utf-8")),
        st.just(b"x" * (MAX_BODY + 1)),
        st.just(b""),
    )


GOOD_URL = "http://127.0.0.1:9/hooks/fuzz"
AHEAD_S = 30 * 86400  # max_schedule_ahead_s: the default
BATCH_LIMIT = 1000
GOOD_TYPE = ("Content-Type", "text/plain; charset=utf-8")
REQUESTS_PER_EXAMPLE = 15


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
    return batch + draw(control_requests(key))


@functools.cache
@st.composite
def control_requests(draw: st.DrawFn, key: str) -> list[Request]:
    """Task control: a scheduled, policed, maybe idempotent enqueue; a batch;
    a listing; a bulk action; one task's cancel, retry or delete."""
    auth = draw(
        st.sampled_from([[("NTORQUE_API_KEY", key)]] * 8 + [[], [("NTORQUE-API-KEY", "nope")]])
    )
    pairs = draw(
        st.one_of(sane_schedule_pairs(), st.lists(st.one_of(*schedule_pairs()), max_size=4))
    )
    keyed = draw(st.one_of(st.just([]), idempotency_keys().map(lambda k: [("Idempotency-Key", k)])))
    body = draw(st.sampled_from([b"", b"a=1", b"a=2"]))  # a key's repeats: same body, or not
    enqueue = "/" + encoded_query([("url", GOOD_URL), *pairs], "")
    listing = "/tasks" + encoded_query(draw(filter_pairs(paging=True)), "")
    action = draw(st.sampled_from(["cancel", "retry"]))
    filters = draw(filter_pairs(paging=False))
    if all(name != "created_after" for name, _ in filters) and draw(st.integers(0, 3)):
        # it would walk every task made so far: mostly only the recent ones
        filters.append(("created_after", time_slot(-5, "epoch")))
    bulk = f"/tasks/{action}" + encoded_query(filters, "")
    method, one = draw(task_actions())
    json_type = [("Content-Type", "application/json")] if draw(st.booleans()) else []
    variants = [
        ("POST", enqueue, [*auth, GOOD_TYPE, *keyed], body),
        ("POST", "/tasks", [*auth, *json_type], draw(batch_bodies())),
        ("GET", listing, auth, b""),
        ("POST", bulk, [*auth, *json_type], draw(bulk_bodies())),
        (method, one, auth, b""),
    ]
    return [Request(m, t, tuple(h), b, False) for m, t, h, b in variants]


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


def check_error(request: Request, status: int, answer: object) -> None:
    """{"status", "error"}, and where inputs are at fault "field" (one) or
    "errors" (a batch's: each with its item's index, field and message)."""
    assert isinstance(answer, dict), (request, answer)
    assert answer["status"] == status, (request, answer)
    assert isinstance(answer["error"], str) and answer["error"], (request, answer)
    assert set(answer) <= {"status", "error", "field", "errors"}, (request, answer)
    if "field" in answer:
        assert isinstance(answer["field"], str) and answer["field"], (request, answer)
    if "errors" in answer:
        errors = answer["errors"]
        assert status == 400 and isinstance(errors, list) and errors, (request, answer)
        for each in errors:
            assert set(each) == {"index", "field", "error"}, (request, answer)
            assert isinstance(each["index"], int), (request, answer)
            assert isinstance(each["error"], str) and each["error"], (request, answer)
            assert each["field"] is None or isinstance(each["field"], str), (request, answer)


def check(request: Request, status: int, body: bytes, tally: Tally) -> None:
    tally.statuses[status] += 1
    assert status < 500, (request, status, body)
    if request.expected is not None:
        assert status == request.expected, (request, status, body[:2000])
    if request.malformed:
        assert status == 400, (request, status, body)
        tally.malformed += 1
        return
    if request.method == "HEAD":
        return
    if status == 204:  # a queue or a schedule deleted
        assert request.method == "DELETE" and body == b"", (request, body)
        return
    answer = json.loads(body)
    if status >= 400:
        check_error(request, status, answer)
        if status == 400 and request.fields is not None:
            named = answer.get("field", "")  # an empty name is left out
            assert named in request.fields, (request, answer)
    else:
        check_answer(request, status, answer, tally)


def check_answer(request: Request, status: int, answer: Any, tally: Tally) -> None:
    """A success: the shape each route answers with."""
    path = request.target.partition("?")[0]
    if path == "/" and request.method == "POST" and status in (200, 201):  # 200: a replay
        check_task(answer, request)
        if status == 201:
            tally.created.add(answer["id"])
    elif path == "/tasks" and request.method == "POST":
        assert status == 201, (request, answer)
        assert len(answer["tasks"]) == len(json.loads(request.body)), (request, answer)
        for task in answer["tasks"]:
            check_task(task, request)
            tally.created.add(task["id"])
    elif path in ("/tasks", "/queues", "/schedules") and request.method == "GET":
        check_list(path, answer, request)
    elif path == "/schedules" or path.startswith("/schedules/"):
        check_schedule(answer, request, detail=True)
    elif path in ("/tasks/cancel", "/tasks/retry"):
        assert set(answer) == {"matched", "changed"}, answer
        assert 0 <= answer["changed"] <= answer["matched"], answer
    elif path.startswith("/queues/"):
        check_queue(answer, request)
    elif (action := TASK_ACTION.fullmatch(path)) and (action[1] or request.method == "DELETE"):
        expected = "pending" if action[1] == "/retry" else "cancelled"
        assert answer["status"] == expected, (request, answer)


TASK_ACTION = re.compile(r"/tasks?/\d+(/cancel|/retry)?")


def check_list(path: str, answer: Any, request: Request) -> None:
    """A listing: its items, and the cursor of the next page."""
    plural = path.removeprefix("/")
    assert set(answer) == {plural, "next_cursor"}, answer
    assert answer["next_cursor"] is None or isinstance(answer["next_cursor"], str), answer
    for item in answer[plural]:
        if plural == "queues":
            check_queue(item, request)
        elif plural == "schedules":
            check_schedule(item, request, detail=False)
        else:
            assert isinstance(item["id"], int) and item["status"] in TASK_STATUSES, item


def check_task(task: dict[str, object], request: Request) -> None:
    """A task the node just made (or replayed): nothing the default policy
    refuses got in, as hook or callback; it is due within the bounds."""
    assert task["status"] in ("pending", "cancelled"), (request, task)  # a replay's may be
    assert QUEUE_NAME.fullmatch(str(task["queue"])), (request, task)
    Policy().check_url(str(task["url"]))
    if task["callback_url"] is not None:
        Policy().check_url(str(task["callback_url"]))
    if task["status"] == "pending":
        due, created = parsed(task["due"]), parsed(task["created"])
        assert created - 1 <= due <= created + AHEAD_S + 1, (request, task)


def parsed(value: object) -> float:
    return datetime.fromisoformat(str(value)).timestamp()


# -- fixed edge cases, sent once per part with the drawn requests -----------------------


def edge_cases(part: int) -> tuple[Request, ...]:
    """The bounds, on either side, and inputs known to have broken parsers:
    each with the status it must get."""
    auth = (("NTORQUE_API_KEY", KEY_SLOT),)
    good = {"url": GOOD_URL}
    bad = {"url": GOOD_URL, "retries": 0}
    items = BATCH_LIMIT
    short: dict[str, object] = {"url": "http://127.0.0.1:9/h"}  # 1,000 fit the body limit
    enqueue = "/?url=" + quote(GOOD_URL, safe="")
    keyed = (("Idempotency-Key", f"edge-{part}-".ljust(255, "e")),)  # the longest key
    cases: list[tuple[str, str, bytes, int, tuple[tuple[str, str], ...]]] = [
        ("POST", "/tasks", compact([short] * items), 201, ()),
        ("POST", "/tasks", compact([short] * (items + 1)), 400, ()),
        ("POST", "/tasks", compact([short] * (items - 1) + [bad]), 400, ()),
        ("POST", "/tasks", as_json([bad] * 150, True), 400, ()),
        ("POST", "/tasks", b"[" + b" " * (MAX_BODY * 10) + b"]", 413, ()),
        ("POST", "/tasks", DEEP, 400, ()),
        ("POST", "/tasks", as_json([{**good, "charset": "idna", "body": "a..b"}], True), 400, ()),
        ("POST", "/tasks", as_json([{**good, "charset": "utf\x00", "body": "a"}], True), 400, ()),
        ("POST", "/tasks", as_json([{**good, "url": "http://a/\ud800"}], True), 400, ()),
        ("POST", "/tasks", as_json([{**good, "headers": {"X-A": "\ud800"}}], True), 400, ()),
        ("POST", "/tasks", as_json([{**good, "headers": {"X-A": "💥"}}], True), 400, ()),
        ("POST", "/tasks", as_json([{**good, "body": "x" * (MAX_BODY + 1)}], True), 400, ()),
        ("POST", "/tasks", as_json([{**good, "body": "x" * MAX_BODY}], True), 201, ()),
        ("POST", "/tasks", as_json([{**good, "body": "\u0000"}], True), 201, ()),
        ("POST", "/tasks/cancel", DEEP, 400, ()),
        ("POST", "/tasks/retry", b'{"a":' * 3000, 400, ()),
        ("POST", "/tasks/cancel", as_json({"created_after": 10**400}, True), 400, ()),
        ("POST", "/tasks/cancel", as_json({"url_prefix": "a\x00"}, True), 400, ()),
        ("POST", "/tasks/cancel", as_json({"url_prefix": "\ud800"}, True), 400, ()),
        ("POST", "/tasks/cancel", as_json({"url_prefix": "https://nowhere/"}, True), 200, ()),
        ("POST", "/tasks/retry?limit=5", b"", 400, ()),
        ("POST", "/tasks/cancel?url_prefix=%00", b"", 400, ()),  # not blank: not every task
        ("POST", "/tasks/cancel?status=%20", b"", 400, ()),
        ("GET", "/tasks?url_prefix=%00", b"", 400, ()),
        ("GET", "/tasks?url_prefix=%ED%A0%80", b"", 400, ()),
        ("GET", "/tasks?url_prefix=" + quote("http://127.0.0.1:9/\ud7ff"), b"", 200, ()),
        ("GET", "/tasks?url_prefix=" + quote("\U0010ffff"), b"", 200, ()),
        ("GET", "/tasks?limit=1000", b"", 200, ()),
        ("GET", "/tasks?limit=1001", b"", 400, ()),
        ("GET", "/tasks?cursor=" + encoded_cursor("t²"), b"", 400, ()),
        ("GET", "/tasks?cursor=" + encoded_cursor("t" + "9" * 19), b"", 400, ()),
        ("GET", "/tasks?cursor=" + encoded_cursor("t9223372036854775807"), b"", 200, ()),
        ("POST", enqueue + "&delay=-1", b"", 400, ()),
        ("POST", enqueue + "&delay=nan", b"", 400, ()),
        ("POST", enqueue + f"&delay={AHEAD_S}", b"", 201, ()),
        ("POST", enqueue + f"&delay={AHEAD_S + 1}", b"", 400, ()),
        ("POST", enqueue + "&delay=1&eta=" + time_slot(60, "isoz"), b"", 400, ()),
        ("POST", enqueue + "&retries=36&backoff=linear", b"", 201, ()),
        ("POST", enqueue + "&retries=37", b"", 400, ()),
        ("POST", enqueue, b"", 201, keyed),
        ("POST", enqueue, b"", 200, keyed),  # a replay
        ("POST", enqueue, b"a", 422, keyed),  # the key, another body
        ("POST", enqueue, b"", 400, (("Idempotency-Key", "e" * 256),)),
    ]
    cases += [
        ("POST", enqueue + "&eta=" + time_slot(offset, kind), b"",
         201 if offset >= 0 and kind not in ("naive", "date", "http") else 400, ())
        for offset in (-60, 0, 3600) for kind in TIME_FORMATS if kind != "num"
    ]  # fmt: skip
    return tuple(
        Request(method, target, (*auth, *extra), body, False, expected)
        for method, target, body, expected, extra in cases
    )


def compact(items: list[dict[str, object]]) -> bytes:
    return json.dumps(items, separators=(",", ":")).encode()


def encoded_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# -- the run -----------------------------------------------------------------------------


class WallClock(Clock):
    """The wall clock, moved ahead of it only when told (now: by how much):
    the schedule part fires its schedules an hour on."""

    def __init__(self) -> None:
        super().__init__(0.0)

    def __call__(self) -> float:
        return time.time() + self.now


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzzed(module_backend: Backend) -> AsyncIterator[LiveNode]:
    """A web-only node (no consumer: no generated url is ever called)."""
    settings = {
        "max_body_bytes": MAX_BODY,
        "max_due_delay_s": 600,
        "auth_failure_limit": 0,  # bad keys are drawn often: no lock-out (429)
    }
    async with live_for(module_backend, loops=False, clock=WallClock(), **settings) as node:
        yield node


async def in_database(backend: Backend, query: str, **values: object) -> int:
    """A count in the backend's database, behind ntorque's back (an engine of our own)."""
    engine = database.make_engine(config.Settings(database_url=backend.database_url))
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(sa.text(query), values) or 0)
    finally:
        await engine.dispose()


# What no sequence of requests may leave behind (each query counts offenders).
HALF_WRITTEN = {
    "a callback of a task that is missing or wants none": """
        SELECT count(*) FROM tasks c LEFT JOIN tasks o ON o.id = c.callback_of
        WHERE c.callback_of IS NOT NULL AND (o.id IS NULL OR o.callback_url IS NULL)""",
    "a callback with a callback of its own": """
        SELECT count(*) FROM tasks WHERE callback_of IS NOT NULL AND callback_url IS NOT NULL""",
    "a task ended without its callback": """
        SELECT count(*) FROM tasks WHERE status IN ('completed', 'failed', 'cancelled')
        AND callback_url IS NOT NULL AND callback_task_id IS NULL""",
    "a link to a callback that does not link back": """
        SELECT count(*) FROM tasks o LEFT JOIN tasks c ON c.id = o.callback_task_id
        WHERE o.callback_task_id IS NOT NULL AND (c.id IS NULL OR c.callback_of <> o.id)""",
    "an idempotency key naming no task": """
        SELECT count(*) FROM idempotency_keys k LEFT JOIN tasks t ON t.id = k.task_id
        WHERE t.id IS NULL""",
    "more attempts counted before a manual retry than were made": """
        SELECT count(*) FROM tasks WHERE attempts_before > retry_count""",
}


def record(line: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "fuzz.txt", "a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


# Drawn in place of the node's API key, replaced when sent: no drawn header
# value holds a control character, so none is taken for it.
KEY_SLOT = "\x00api-key\x00"


@functools.cache
def drawn(part: int) -> tuple[Request, ...]:
    """The part's requests, drawn from the part's seed."""
    examples = REQUESTS_PER_PART // REQUESTS_PER_EXAMPLE
    return drawn_requests(request_batches(KEY_SLOT), examples, part)


def drawn_requests(
    batches: st.SearchStrategy[list[Request]], examples: int, from_seed: int
) -> tuple[Request, ...]:
    """Requests drawn by Hypothesis from a seed: the same on every run, and
    for every backend (drawn once by the caller's cache). Drawn before any is
    sent, so that drawing (CPU-bound) never competes with the node's loop for
    the interpreter."""
    requests: list[Request] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @seed(from_seed)
    @given(batches)
    def one(batch: list[Request]) -> None:
        requests.extend(batch)

    one()
    return tuple(requests)


def with_statuses(
    cases: list[tuple[str, str, bytes, int, str | None]],
) -> tuple[Request, ...]:
    """Edge cases (method, target, body, status, the field a 400 names or
    None), sent with the node's key."""
    auth = (("NTORQUE_API_KEY", KEY_SLOT),)
    return tuple(
        Request(
            method, target, auth, body, False, expected, None if fd is None else frozenset({fd})
        )
        for method, target, body, expected, fd in cases
    )


def prepared(request: Request, key: str, now: float) -> Request:
    """The request as sent: the node's key, and times relative to now."""
    headers = tuple((name, key if value == KEY_SLOT else value) for name, value in request.headers)
    target, body = request.target, request.body
    if "__now" in target:
        target = TIME_SLOT.sub(lambda m: quote(moment(now, m), safe=""), target)
    if b"__now" in body:
        text = body.decode("utf-8", SURROGATES)
        text = re.sub('"' + TIME_SLOT.pattern + '"', lambda m: json_moment(now, m), text)
        body = text.encode("utf-8", SURROGATES)
    return dataclasses.replace(request, headers=headers, target=target, body=body)


def json_moment(now: float, slot: re.Match[str]) -> str:
    value = moment(now, slot)
    return value if slot.group(3) == "num" else json.dumps(value)


def moment(now: float, slot: re.Match[str]) -> str:
    """A time slot's value: now plus its offset, in its format."""
    sign, offset, kind = slot.groups()
    seconds = now + (-1 if sign == "m" else 1) * int(offset)
    when = datetime.fromtimestamp(seconds, UTC)
    formats = {
        "epoch": f"{seconds:.3f}",
        "int": str(int(seconds)),
        "num": f"{seconds:.3f}",  # in a JSON body: a number, not text
        "isoz": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "isooff": when.astimezone(timezone(timedelta(hours=-9, minutes=-30))).isoformat(),
        "isoms": when.isoformat(timespec="microseconds"),
        "isospace": when.isoformat(sep=" ", timespec="seconds"),
        "basic": when.strftime("%Y%m%dT%H%M%SZ"),
        "naive": when.replace(tzinfo=None).isoformat(),  # no offset: refused
        "date": when.date().isoformat(),
        "http": email.utils.format_datetime(when, usegmt=True),
    }
    return formats[kind]


def send_all(port: int, key: str, requests: tuple[Request, ...], tally: Tally) -> None:
    """Send each request (with the node's key) over a raw socket and check its
    answer. Blocking: run it in a thread, off the node's loop."""
    client = RawClient(port)
    try:
        for drawn_request in requests:
            request = prepared(drawn_request, key, time.time())
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
    last_id = await in_database(module_backend, "SELECT max(id) FROM tasks")
    started = time.monotonic()
    requests = await asyncio.to_thread(drawn, part)  # drawn by the first backend's test
    requests += edge_cases(part)
    await asyncio.to_thread(send_all, fuzzed.port, fuzzed.key, requests, tally)
    seconds = time.monotonic() - started
    # Tasks made since (callbacks apart: cancelling makes them), and those answered as made.
    made = "SELECT count(*) FROM tasks WHERE id > :id AND callback_of IS NULL"
    stored = await in_database(module_backend, made, id=last_id)
    created = len([task_id for task_id in tally.created if task_id > last_id])
    callbacks = await in_database(
        module_backend, "SELECT count(*) FROM tasks WHERE callback_of IS NOT NULL"
    )
    logs = fuzzed.logged.text
    line = (
        f"FUZZ {module_backend.name} part {part}: requests={tally.total} created={created} "
        f"stored={stored} callbacks={callbacks} malformed={tally.malformed} "
        f"seconds={seconds:.1f} statuses={dict(sorted(tally.statuses.items()))}"
    )
    record(line)
    with capsys.disabled():
        print(f"\n{line}")
    assert tally.total >= REQUESTS_PER_PART
    assert stored == created
    assert "Traceback" not in logs, logs[-4000:]
    assert tally.statuses[201] > 100 and tally.statuses[400] > 100, tally  # both kinds were sent
    assert tally.statuses[409] > 0 and tally.statuses[422] > 0, tally  # conflicts were met too
    for what, query in HALF_WRITTEN.items():
        assert await in_database(module_backend, query) == 0, what


# -- named queues (issue 13) -------------------------------------------------------------
#
# A part of its own per backend, on the same node: the queue routes with
# drawn names (unicode, encoded slashes, control characters, very long) and
# drawn settings bodies (wrong types, huge numbers, NaN and Infinity, floats
# for whole numbers, booleans for numbers, duplicate keys, nesting, not an
# object, empty, over the small-body limit); and the queue parameter of an
# enqueue, of batch items and of listing and bulk filters. Besides the
# checks of every part: a 400 on a queue names the input at fault; a
# rejected PUT or PATCH leaves the queue as it was (read before and after);
# no stored setting is out of its bounds; every stored queue name follows
# the rule; no rejected request leaves a queue row behind.

QUEUE_REQUESTS = 1225  # per backend: 5 to 10 s each, after the other parts
QUEUE_REQUESTS_PER_EXAMPLE = 7
QUEUE_SEED = 13
SMALL_BODY = 64 * 1024  # the JSON body limit of every route but the enqueues
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
NAME_POOL = ["mail", "q1", "Q.2-x_y", "default", "n" * 64]  # drawn often: state builds up
SETTING_NAMES = (
    "max_concurrency", "rate_per_s", "burst", "paused", "retries", "backoff", "timeout"
)  # fmt: skip
QUEUE_FIELDS = {"name", *SETTING_NAMES, "figures", "created", "modified"}
# Raw path segments, sent as they are (not quoted again).
RAW_NAMES = [
    "%2F", "%2f", "a%2Fb", "..%2F..", "%00", "mail%00", "%ff", "%C0%AF", "%", "%zz", "%2", "a%20b",
    "%0d%0a", "m%C3%A4il", "%F0%9F%92%A5", "%ED%A0%80", "+", "a+b", ".", "..", "-", "_",
]  # fmt: skip


QUEUE_BODIES = [*FIXED_BODIES, b" ", b'"x"', b"1", b"true", b"{} {}", b'{"paused": true}x']


@functools.cache
def queue_names() -> st.SearchStrategy[str]:
    """A queue's name as text: good ones (the pool, most often), and not."""
    return st.one_of(
        st.sampled_from(NAME_POOL),
        st.sampled_from(NAME_POOL),
        st.from_regex(QUEUE_NAME, fullmatch=True),
        st.sampled_from(["a" * 65, "b" * 5000, "", " ", "mail ", " mail", "ma il", "mail\t"]),
        st.sampled_from(["a/b", "/", "ä", "💥", "\u202e", "\x00", "m\x01", "\x7f", "ﬁ", "²"]),
        nasty_text(70),
    )


def decoded(segment: str) -> str | None:
    """The name a path segment stands for; None when it is not UTF-8 (the
    HTTP layer refuses it, naming no field)."""
    try:
        return unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        return None


@functools.cache
def queue_paths() -> st.SearchStrategy[tuple[str, str | None]]:
    """A queue's path segment as sent, and the name it decodes to."""
    quoted = queue_names().map(lambda name: quote(name, safe="", errors=SURROGATES))
    segments = st.one_of(quoted, quoted, quoted, st.sampled_from(RAW_NAMES))
    return segments.map(lambda segment: (segment, decoded(segment)))


def setting_value(name: str) -> st.SearchStrategy[object]:
    """A setting's value: mostly of its kind and near its bounds, often not."""
    proper: dict[str, st.SearchStrategy[object]] = {
        "max_concurrency": st.integers(-1, 10_001),
        "rate_per_s": st.one_of(
            st.floats(0, 10_001), st.sampled_from([0.00001, 0.0000099, 1e-310, 5e-324, 10_000])
        ),
        "burst": st.integers(-1, 10_001),
        "paused": st.booleans(),
        "retries": st.integers(-1, 40),
        "backoff": st.sampled_from(["linear", "exponential", "LINEAR", "fib", ""]),
        "timeout": st.integers(-1, 10_000),
    }
    wrong = st.one_of(
        st.sampled_from([
            True, False, None, 2.0, 1.5, 1e3, -0.0, 10**400, -(10**400), 2**63, 2**64,
            float("nan"), float("inf"), float("-inf"), "1", "", [], {}, [1], {"a": 1},
            {"max_concurrency": 1},
        ]),
        json_values(),
    )  # fmt: skip
    return st.one_of(proper[name], proper[name], wrong)


@st.composite
def settings_bodies(draw: st.DrawFn) -> tuple[bytes, frozenset[str] | None]:
    """A PUT or PATCH body, and the fields a 400 may name (None: any, or none)."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from(QUEUE_BODIES)), None
    if kind == 1:
        return draw(st.builds(as_json, json_values(), st.booleans())), None
    if kind == 2:
        return b'{"max_concurrency": 1, "x": "' + b"y" * SMALL_BODY + b'"}', None  # 413
    names = draw(
        st.lists(
            st.one_of(
                st.sampled_from(SETTING_NAMES), st.sampled_from(SETTING_NAMES), nasty_text(10)
            ),
            max_size=4,
        )
    )  # repeats are duplicate keys: the last one counts
    pairs = [(name, draw(setting_value(name) if name in SETTING_NAMES else json_values()))
             for name in names]  # fmt: skip
    ascii_only = draw(st.booleans())
    dumps = functools.partial(json.dumps, ensure_ascii=ascii_only)
    text = "{" + ", ".join(f"{dumps(name)}: {dumps(value)}" for name, value in pairs) + "}"
    body = text.encode("utf-8", SURROGATES)
    try:
        jsonbody.loads(body)
    except InvalidRequest:
        return body, None  # a lone surrogate, or an integer too long to read: no field
    return body, frozenset(name for name, _ in pairs) | {"queue"}


@st.composite
def queue_requests(draw: st.DrawFn, key: str) -> list[Request]:
    auth = draw(
        st.sampled_from([[("NTORQUE_API_KEY", key)]] * 8 + [[], [("NTORQUE-API-KEY", "nope")]])
    )
    json_type = [("Content-Type", "application/json")] if draw(st.booleans()) else []
    segment, name = draw(queue_paths())
    body, fields = draw(settings_bodies())
    method = draw(
        st.sampled_from(
            ["PUT", "PUT", "PATCH", "PATCH", "GET", "DELETE", "POST", "HEAD", "OPTIONS"]
        )
    )
    action = draw(st.sampled_from(["pause", "resume", "Pause", "stop"]))
    # A 400 on a name that decodes names "queue" (or, before it, a setting).
    named = frozenset({"queue"}) if name else None
    body_fields = fields if name else None
    requests = [
        Request(
            method,
            f"/queues/{segment}",
            (*auth, *json_type),
            body,
            False,
            fields=body_fields if method in ("PUT", "PATCH") else named,
        ),
        Request(
            "POST",
            f"/queues/{segment}/{action}",
            tuple(auth),
            draw(st.sampled_from([b"", b"{}", b"x"])),
            False,
            fields=named,
        ),
        Request(
            "GET",
            "/queues" + encoded_query(draw(filter_pairs(paging=True)), ""),
            tuple(auth),
            b"",
            False,
        ),
    ]
    # The queue parameter elsewhere: an enqueue, a batch, a listing, a bulk action.
    text_name = draw(queue_names())
    enqueue = "/" + encoded_query(
        [("url", GOOD_URL), ("queue", text_name), *draw(sane_schedule_pairs())], ""
    )
    items = draw(
        st.lists(
            st.fixed_dictionaries(
                {"url": st.just(GOOD_URL)},
                optional={"queue": st.one_of(queue_names(), json_values())},
            ),
            min_size=1,
            max_size=4,
        )
    )
    listing = "/tasks" + encoded_query(
        [("queue", draw(queue_names())), *draw(filter_pairs(paging=True))], ""
    )
    bulk_action = draw(st.sampled_from(["cancel", "retry"]))
    in_body = draw(st.booleans())
    bulk_filter = [("queue", draw(queue_names())), ("created_after", time_slot(-5, "epoch"))]
    bulk = f"/tasks/{bulk_action}" + ("" if in_body else encoded_query(bulk_filter, ""))
    bulk_body = (
        as_json(
            {
                "queue": draw(st.one_of(queue_names(), json_values())),
                "created_after": time_slot(-5, "num"),
            },
            True,
        )
        if in_body
        else b""
    )
    requests += [
        Request("POST", enqueue, (*auth, GOOD_TYPE), b"", False),
        Request("POST", "/tasks", tuple(auth), as_json(items, draw(st.booleans())), False),
        Request("GET", listing, tuple(auth), b"", False),
        Request("POST", bulk, (*auth, *json_type), bulk_body, False),
    ]
    return requests


def check_queue(queue: dict[str, Any], request: Request) -> None:
    """A queue as answered: its fields, its name by the rule, and settings
    within their bounds (a rate limit always with its burst)."""
    assert set(queue) == QUEUE_FIELDS, (request, queue)
    assert QUEUE_NAME.fullmatch(queue["name"]), (request, queue)
    assert isinstance(queue["paused"], bool), (request, queue)
    bounds = {"max_concurrency": 10_000, "burst": 10_000, "retries": 36, "timeout": 600}
    for name, high in bounds.items():
        value = queue[name]
        assert value is None or (type(value) is int and 1 <= value <= high), (request, queue)
    rate = queue["rate_per_s"]
    assert (rate is None) == (queue["burst"] is None), (request, queue)
    assert rate is None or 0.00001 <= rate <= 10_000, (request, queue)
    assert queue["backoff"] in (None, "linear", "exponential"), (request, queue)
    assert all(type(count) is int and count >= 0 for name, count in queue["figures"].items()
               if name != "oldest_due_age_s"), (request, queue)  # fmt: skip


@functools.cache
def drawn_queue_requests() -> tuple[Request, ...]:
    """The queue part's requests, drawn once from its own seed."""
    examples = QUEUE_REQUESTS // QUEUE_REQUESTS_PER_EXAMPLE
    return drawn_requests(queue_requests(KEY_SLOT), examples, QUEUE_SEED)


def queue_edge_cases() -> tuple[Request, ...]:
    """Each bound on either side, the JSON Python reads but a setting is
    not, and each route's lifecycle: with the status (and field) each must get."""
    edge = "/queues/edge"
    top = b'{"max_concurrency": 10000, "rate_per_s": 10000, "burst": 10000, "retries": 36, '
    top += b'"timeout": 600, "backoff": "exponential", "paused": false}'
    enqueue = "/?url=" + quote(GOOD_URL, safe="") + "&queue="
    cases: list[tuple[str, str, bytes, int, str | None]] = [
        ("GET", edge, b"", 404, None),
        ("PATCH", edge, b"{}", 404, None),
        ("DELETE", edge, b"", 404, None),
        ("PUT", edge, top, 200, None),
        ("PUT", edge, b'{"max_concurrency": 10001}', 400, "max_concurrency"),
        ("PUT", edge, b'{"max_concurrency": 0}', 400, "max_concurrency"),
        ("PUT", edge, b'{"max_concurrency": 2.0}', 400, "max_concurrency"),
        ("PUT", edge, b'{"max_concurrency": true}', 400, "max_concurrency"),
        ("PUT", edge, b'{"max_concurrency": 1e400}', 400, "max_concurrency"),
        ("PUT", edge, b'{"max_concurrency": ' + b"9" * 400 + b"}", 400, "max_concurrency"),
        ("PUT", edge, b'{"max_concurrency": ' + b"9" * 5000 + b"}", 400, None),  # unreadable
        ("PUT", edge, b'{"rate_per_s": NaN}', 400, "rate_per_s"),
        ("PUT", edge, b'{"rate_per_s": Infinity}', 400, "rate_per_s"),
        ("PUT", edge, b'{"rate_per_s": -Infinity}', 400, "rate_per_s"),
        ("PUT", edge, b'{"rate_per_s": 10000.000001}', 400, "rate_per_s"),
        ("PUT", edge, b'{"rate_per_s": 0.0000099}', 400, "rate_per_s"),
        ("PUT", edge, b'{"rate_per_s": 5e-324}', 400, "rate_per_s"),
        ("PUT", edge, b'{"rate_per_s": "1"}', 400, "rate_per_s"),
        ("PUT", edge, b'{"rate_per_s": 1, "burst": 10001}', 400, "burst"),
        ("PUT", edge, b'{"burst": 1}', 400, "burst"),
        ("PUT", edge, b'{"paused": 1}', 400, "paused"),
        ("PUT", edge, b'{"paused": "true"}', 400, "paused"),
        ("PUT", edge, b'{"retries": 37}', 400, "retries"),
        ("PUT", edge, b'{"retries": 0}', 400, "retries"),
        ("PUT", edge, b'{"timeout": 601}', 400, "timeout"),
        ("PUT", edge, b'{"timeout": 0.5}', 400, "timeout"),
        ("PUT", edge, b'{"backoff": "Linear"}', 400, "backoff"),
        ("PUT", edge, b'{"backoff": ["linear"]}', 400, "backoff"),
        ("PUT", edge, b'{"max_concurrency": {"max_concurrency": 1}}', 400, "max_concurrency"),
        ("PUT", edge, b'{"concurrency": 1}', 400, "concurrency"),
        ("PUT", edge, b'{"max_concurrency": 1, "max_concurrency": "x"}', 400, "max_concurrency"),
        ("PUT", edge, rb'{"\ud800": 1}', 400, None),
        ("PUT", edge, b"", 400, None),
        ("PUT", edge, b"[]", 400, None),
        ("PUT", edge, b"null", 400, None),
        ("PUT", edge, b"{", 400, None),
        ("PUT", edge, b'{"a":' * 40 + b"1" + b"}" * 40, 400, None),
        ("PUT", edge, b" " * SMALL_BODY + b"{}", 413, None),
        ("PATCH", edge, b'{"max_concurrency": "x", "max_concurrency": 1}', 200, None),
        ("PATCH", edge, b'{"rate_per_s": 0.00001, "burst": 1}', 200, None),
        ("PATCH", edge, b'{"rate_per_s": null, "burst": 2}', 400, "burst"),
        ("PATCH", edge, b'{"paused": true}', 200, None),
        ("POST", edge + "/resume", b"x", 200, None),
        ("POST", edge, b"{}", 405, None),
        ("DELETE", edge, b"", 204, None),
        ("DELETE", edge, b"", 404, None),
        ("POST", edge + "/pause", b"", 200, None),  # makes it, paused
        ("DELETE", edge, b"", 204, None),
        ("POST", enqueue + "edge-busy", b"", 201, None),
        ("DELETE", "/queues/edge-busy", b"", 409, None),
        ("POST", "/tasks/cancel?queue=edge-busy", b"", 200, None),
        ("DELETE", "/queues/edge-busy", b"", 204, None),
        ("POST", enqueue + "n" * 64, b"", 201, None),
        ("POST", enqueue + "n" * 65, b"", 400, "queue"),
        ("POST", enqueue + "%2F", b"", 400, "queue"),
        ("POST", enqueue + "a%2Fb", b"", 400, "queue"),
        ("POST", enqueue + "m%C3%A4il", b"", 400, "queue"),
        ("POST", "/tasks", as_json([{"url": GOOD_URL, "queue": "a" * 65}], True), 400, None),
        ("POST", "/tasks", as_json([{"url": GOOD_URL, "queue": ["a"]}], True), 400, None),
        ("GET", "/tasks?queue=" + "a" * 65, b"", 400, "queue"),
        ("GET", "/tasks?queue=%2F", b"", 400, "queue"),
        ("GET", "/tasks?queue=mail%00", b"", 400, "queue"),
        ("POST", "/tasks/cancel?queue=%20", b"", 400, "queue"),
        ("POST", "/tasks/retry", b'{"queue": 1}', 400, "queue"),
        ("GET", "/queues/" + "a" * 64, b"", 404, None),
        ("GET", "/queues/" + "a" * 65, b"", 400, "queue"),
        ("GET", "/queues/" + "a" * 5000, b"", 400, "queue"),
        ("GET", "/queues/%2F", b"", 400, "queue"),
        ("GET", "/queues/a%2Fb", b"", 400, "queue"),
        ("GET", "/queues/%00", b"", 400, "queue"),
        ("GET", "/queues/%ff", b"", 400, None),
        ("GET", "/queues/", b"", 404, None),
        ("GET", "/queues/a/b", b"", 404, None),
        ("POST", "/queues//pause", b"", 404, None),
        ("DELETE", "/queues/m%C3%A4il", b"", 400, "queue"),
        ("POST", "/queues/%0d%0a/pause", b"", 400, "queue"),
        ("PUT", "/queues/%2F", b"{}", 400, "queue"),
    ]
    return with_statuses(cases)


QUEUE_PATH = re.compile(r"/queues/([^/?]+)")


def configured_name(request: Request) -> str | None:
    """The pool's queue a PUT or PATCH would change (its state is read
    before and after: a rejected one must leave it as it was)."""
    found = QUEUE_PATH.fullmatch(request.target)
    if request.method not in ("PUT", "PATCH") or found is None:
        return None
    name = decoded(found[1])
    return name if name is not None and QUEUE_NAME.fullmatch(name) else None


def send_queue_requests(
    port: int, key: str, requests: tuple[Request, ...], tally: Tally
) -> set[str]:
    """Like send_all, and a rejected PUT or PATCH of a good name changed
    nothing (read with the node's key before and after). The names a
    request changed (answered 2xx): their rows need no task."""
    client = RawClient(port)
    auth = (("NTORQUE_API_KEY", key),)
    changed: set[str] = set()
    try:
        for drawn_request in requests:
            request = prepared(drawn_request, key, time.time())
            name = configured_name(request)
            if name is not None:
                read = Request("GET", f"/queues/{name}", auth, b"", False)
                before = stable(*client.send(read))
            status, body = client.send(request)
            check(request, status, body, tally)
            if name is not None and status >= 400:
                assert stable(*client.send(read)) == before, (request, status, body)
            found = QUEUE_PATH.match(request.target)
            if found and status < 300 and request.method not in ("GET", "HEAD"):
                changed.add(decoded(found[1]) or "")
    finally:
        client.close()
    return changed


def stable(status: int, body: bytes) -> tuple[int, object]:
    """A queue as read: what no request but a change may alter."""
    answer = json.loads(body)
    if status == 200:
        answer["figures"].pop("oldest_due_age_s")
    return status, answer


# What no queue request may leave behind (each query counts offenders).
QUEUE_HALF_WRITTEN = {
    "a rate limit without its burst, or a burst without one": """
        SELECT count(*) FROM queues WHERE (rate_per_s IS NULL) <> (burst IS NULL)""",
    "a setting out of its bounds": """
        SELECT count(*) FROM queues WHERE max_concurrency NOT BETWEEN 1 AND 10000
        OR rate_per_s < 0.00001 OR rate_per_s > 10000 OR burst NOT BETWEEN 1 AND 10000
        OR retries NOT BETWEEN 1 AND 36 OR timeout_s NOT BETWEEN 1 AND 600
        OR backoff NOT IN ('linear', 'exponential')""",
}


async def rows_in_database(backend: Backend, query: str) -> list[tuple[Any, ...]]:
    engine = database.make_engine(config.Settings(database_url=backend.database_url))
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in (await connection.execute(sa.text(query))).all()]
    finally:
        await engine.dispose()


@pytest.mark.asyncio(loop_scope="module")
async def test_generated_queue_requests_never_break_the_api(
    fuzzed: LiveNode, module_backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = Tally()
    last_id = await in_database(module_backend, "SELECT max(id) FROM tasks")
    started = time.monotonic()
    requests = await asyncio.to_thread(drawn_queue_requests)
    requests += queue_edge_cases()
    changed = await asyncio.to_thread(send_queue_requests, fuzzed.port, fuzzed.key, requests, tally)
    seconds = time.monotonic() - started
    made = "SELECT count(*) FROM tasks WHERE id > :id AND callback_of IS NULL"
    stored = await in_database(module_backend, made, id=last_id or 0)
    created = len([task_id for task_id in tally.created if task_id > (last_id or 0)])
    line = (
        f"FUZZ {module_backend.name} queues: requests={tally.total} created={created} "
        f"stored={stored} seconds={seconds:.1f} statuses={dict(sorted(tally.statuses.items()))}"
    )
    record(line)
    with capsys.disabled():
        print(f"\n{line}")
    assert tally.total >= QUEUE_REQUESTS
    assert stored == created  # a rejected enqueue or batch stores no task
    assert "Traceback" not in fuzzed.logged.text, fuzzed.logged.text[-4000:]
    assert tally.statuses[200] > 100 and tally.statuses[400] > 100, tally
    assert tally.statuses[201] > 100 and tally.statuses[413] > 0, tally
    for what, query in {**QUEUE_HALF_WRITTEN, **HALF_WRITTEN}.items():
        assert await in_database(module_backend, query) == 0, what
    rows = await rows_in_database(module_backend, "SELECT app_id, name FROM queues")
    named = set(
        await rows_in_database(
            module_backend, "SELECT DISTINCT coalesce(app_id, 0), queue FROM tasks"
        )
    )
    for app_id, name in rows:
        assert QUEUE_NAME.fullmatch(name), name
        # Made by a task that names it, or by a request answered as a change.
        assert (app_id, name) in named or name in changed, (app_id, name)
    for _, name in named:
        assert QUEUE_NAME.fullmatch(name), name


# -- recurring schedules (issue 14) ------------------------------------------------------
#
# A part of its own per backend, on the same node: the schedule routes with
# drawn bodies (mostly a good schedule with one or two of its fields made
# hostile: cron text that is odd, unicode or long, time zones that are paths,
# blank, out of range or hold a NUL, huge and non-finite numbers, catch_up
# and paused of the wrong kind, task templates with bad fields, junk nested
# in them; or no object at all) and drawn ids and paths; the schedule_id
# filter of listings and bulk actions. Besides the checks of every part: a
# 400 on an object names the field at fault (any of the rule's fields for a
# rule, task.<field> for the template); a good schedule is made (201), and
# a 201, or a 200 that changed one, answers what a GET then reads; a refused
# create leaves the listing as it was, a refused change the schedule; the
# stored schedules are those answered as made and not deleted, none out of
# its bounds. Then the ticker fires every due one, once: nothing raises, and
# the tasks made are their schedules' (the listing by schedule_id and each
# schedule's last tasks agree). The rules themselves are fuzzed further down.

SCHEDULE_REQUESTS = 1225  # per backend, like the queue part
SCHEDULE_REQUESTS_PER_EXAMPLE = 7
SCHEDULE_SEED = 14
SCHEDULE_IDS = 60  # drawn ids are mostly 1..60: each database's schedules count from 1
LAST_MADE = "__last_schedule__"  # in an edge case's path: the id last answered as made
# In a drawn good schedule's name, replaced by a number when sent: a good
# schedule's name is its own (a name is unique per application: a reused one
# is a 409, which hostile names drawn from NAMES_TAKEN meet).
UNIQUE_SLOT = "__unique__"
NAMES_TAKEN = ["nightly", "heartbeat"]
SCHEDULE_JSON = {
    "id", "name", "cron", "timezone", "every_s", "description", "catch_up", "paused", "task",
    "next_tick", "last_tick", "created", "modified",
}  # fmt: skip
TEMPLATE_JSON = {
    "url", "method", "queue", "timeout", "retries", "backoff", "callback", "content_type",
    "charset", "headers", "body_size",
}  # fmt: skip
SCHEDULE_FIELDS = ("name", "cron", "timezone", "every_s", "catch_up", "paused", "task")
RULE_FIELDS = frozenset({"cron", "timezone", "every_s"})
TEMPLATE_FIELDS = (
    "url", "method", "timeout", "retries", "backoff", "callback", "queue", "body",
    "body_base64", "content_type", "charset", "headers",
)  # fmt: skip
# What a tick decides, refused in a template (as unknown fields).
NOT_TEMPLATE_FIELDS = ("delay", "eta", "idempotency_key")
MAX_EVERY_S = 366 * 86400

GOOD_CRONS = [
    "0 9 * * 1-5", "*/5 * * * *", "* * * * *", "*/20 * * * * *", "30 2 * * *", "0 0 29 2 *",
    "0 0 * 2 MON#5", "0 0 L * *", "0 0 LW * *", "0 12 * * 5L", "0 0 1 1 *", "15 */2 * * sun",
    "0 0 1-7 * MON", "  0   9 * *\t1-5 ", "0\u00a09 * * *",
]  # fmt: skip
ODD_CRONS = [
    "", " ", "\t", "* * * *", "* * * * * * *", "61 * * * *", "0 24 * * *", "0 0 30 2 *",
    "0 0 31 4 *", "* * */20 * 1L", "0 0 */40 * MON#5", "@daily", "@reboot", "0 9 * * 1-",
    "*/0 * * * *", "5-1 * * * *", "0 0 * * 8", "0 0 * * 1#6", "0 0 * * 1#0", "0 0 ? * *",
    "0 0 0 * *", "0 0 * 0 *", "0 0 * 13 *", "L * * * *", "0 0 * * L", "0 0 W * *",
    "\u0660 \u0669 * * *", "\uff10 \uff19 * * *", "\u00b9 * * * *", "\ufb01 * * * *",
    "0 9 * * *\x00", "0 9 * * *\u2003*", "0 9 * * mon-fri", "0 9 * * MON-FRI/2",
    "x" * 201, "* " * 100, "*/" + "9" * 190 + " * * * *", "1-" + "9" * 190 + " * * * *",
    "0 0 1 1 1 1970", "0 0 1 1 * 1", "\ud800 * * * *",
]  # fmt: skip
GOOD_ZONES = [
    "UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu",
    "Pacific/Chatham", "America/St_Johns", "Etc/GMT+12", "Etc/GMT-14", "Pacific/Kiritimati",
    "Antarctica/Troll", "Africa/Casablanca", "America/Santiago",
]  # fmt: skip
ODD_ZONES = [
    "../", "", "UTC\u0000", "Etc/GMT+25", "../../etc/passwd", "/etc/localtime", "/UTC", "Europe",
    "Europe/", "europe/paris", "UTC ", " UTC", "localtime", "posixrules", "zone.tab",
    "zone1970.tab", "tzdata.zi", "leap-seconds.list", "leapseconds", "iso3166.tab", "right/UTC",
    "posix/Europe/Paris", "Factory", "a" * 65, "Europe/Paris\n", ".", "..",
    "Europe/../Europe/Paris", "Europe//Paris", "EST5EDT", "US/Pacific-New", "Z", "+01:00",
    "GMT+1", "\U0001f4a5", "\u202eUTC", "\uff25urope/Paris", "SystemV/AST4", "__init__.py",
    "__pycache__", "tzdata", "Europe.Paris", "\ud800",
]  # fmt: skip
ODD_EVERY_S = [
    0, 0.999, 0.9995, 1.0004, 1.0005, 59.9999, MAX_EVERY_S, MAX_EVERY_S + 0.0001, MAX_EVERY_S + 1,
    -1, -0.0, 1e-300, 5e-324, 1e308, 2**53 + 1, 2**63, 2**64, 10**400, -(10**400), True, False,
    "60", "1e3", "", None, [], {}, [60], {"every_s": 60}, float("nan"), float("inf"),
    float("-inf"),
]  # fmt: skip
ODD_CATCH_UPS = ["Latest", "ALL", " none", "", "some", None, 0, 1, True, [], ["all"], {"all": 1}]
ODD_NAMES = [
    "", "x" * 101, "\U0001f4a5" * 101, "\n", "a\u2028b", "\x00", "a\tb", 5, True, [], {},
    "\u200b", *NAMES_TAKEN,
]  # fmt: skip


T = TypeVar("T")


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of the strategies, each drawn in proportion to its weight
    (one_of draws its branches alike, and a branch given twice only once)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def cron_field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """One cron field by the grammar: mostly within its bounds; sometimes a
    step past them, a name, a range backwards, a zero step; lists of these."""
    inside = st.integers(low, high)
    outside = st.sampled_from([str(low - 1), str(high + 1), *names])
    value = weighted((8, inside.map(str)), (1, outside))
    span = st.builds(lambda a, b: f"{min(a, b)}-{max(a, b)}", inside, inside)
    backwards = st.builds(lambda a, b: f"{max(a, b)}-{min(a, b)}", inside, inside)
    term = weighted(
        (3, st.just("*")),
        (4, value),
        (2, span),
        (1, backwards),
        (2, st.builds("{}/{}".format, st.one_of(st.just("*"), value), st.integers(0, 70))),
        (1, st.builds("{}/{}".format, span, st.integers(1, 70))),
    )
    return st.lists(term, min_size=1, max_size=3).map(",".join)


@functools.cache
def grammar_crons() -> st.SearchStrategy[str]:
    """Cron text by the grammar, five fields or six (seconds first), mostly
    valid, with cronsim's day-of-month L and LW and day-of-week nL and n#k."""
    day = st.one_of(
        cron_field(1, 31),
        st.sampled_from(["L", "LW", "L/2", "LW,15", "29", "30", "31", "*/31", "31/2"]),
    )
    weekday = st.one_of(
        cron_field(0, 7, ("MON", "sun", "SAT")),
        st.sampled_from(["5L", "1L", "0L", "7L", "MON#5", "1#5", "0#1", "7#4", "6#5", "5L,1"]),
    )
    month = cron_field(1, 12, ("JAN", "FEB", "feb", "DEC"))
    five = st.tuples(cron_field(0, 59), cron_field(0, 23), day, month, weekday).map(" ".join)
    six = st.tuples(cron_field(0, 59), cron_field(0, 59), cron_field(0, 23), day, month, weekday)
    return weighted((2, five), (1, six.map(" ".join)))


@functools.cache
def cron_texts() -> st.SearchStrategy[object]:
    return st.one_of(
        st.sampled_from(GOOD_CRONS),
        st.sampled_from(ODD_CRONS),
        grammar_crons(),
        st.text(alphabet="0123456789*/-,#LW? \tMONJA\u2003\u0661", max_size=40),
        nasty_text(),
        json_values(),
    )


@functools.cache
def zone_values() -> st.SearchStrategy[object]:
    return st.one_of(
        st.sampled_from(GOOD_ZONES), st.sampled_from(ODD_ZONES), nasty_text(), json_values()
    )


@functools.cache
def every_s_values() -> st.SearchStrategy[object]:
    return st.one_of(
        st.sampled_from([1, 2, 5, 60, 1.5, 3600]),
        st.floats(1, MAX_EVERY_S),
        st.sampled_from(ODD_EVERY_S),
        st.floats(),
        st.integers(-(10**20), 10**20),
        json_values(),
    )


@functools.cache
def good_names() -> st.SearchStrategy[str | None]:
    """None, or a name no other schedule has (the slot makes it unique)."""
    named = st.sampled_from(["nightly", "Rapport du lundi", "\U0001f4a5 boom", "x" * 80])
    return st.one_of(st.none(), named.map(lambda name: f"{name} {UNIQUE_SLOT}"))


@functools.cache
def good_templates() -> st.SearchStrategy[dict[str, object]]:
    """Task templates that should pass: a batch's good items less what a
    tick decides (delay, idempotency_key), in a named queue or not."""
    items = sane_items().map(
        lambda item: {
            name: value for name, value in item.items() if name not in NOT_TEMPLATE_FIELDS
        }
    )
    queued = st.fixed_dictionaries({}, optional={"queue": st.sampled_from(NAME_POOL)})
    return st.builds(lambda item, queue: {**item, **queue}, items, queued)


@functools.cache
def good_schedules() -> st.SearchStrategy[dict[str, object]]:
    """Bodies of schedules that must be made: a cron rule (in a zone or
    not) or every_s, and a template."""
    rule = st.one_of(
        st.fixed_dictionaries(
            {"cron": st.sampled_from(GOOD_CRONS)},
            optional={"timezone": st.sampled_from(GOOD_ZONES)},
        ),
        st.fixed_dictionaries(
            {"every_s": st.one_of(st.sampled_from([1, 2, 5, 60, 1.5]), st.floats(1, MAX_EVERY_S))}
        ),
    )
    rest = st.fixed_dictionaries(
        {"task": good_templates()},
        optional={
            "name": good_names(),
            "catch_up": st.sampled_from(["latest", "all", "none"]),
            "paused": st.booleans(),
        },
    )
    return st.builds(lambda a, b: {**a, **b}, rule, rest)


def hostile_value(name: str) -> st.SearchStrategy[object]:
    """A top-level field's value, made to be refused (or, by chance, not)."""
    values: dict[str, st.SearchStrategy[object]] = {
        "cron": cron_texts(),
        "timezone": zone_values(),
        "every_s": every_s_values(),
        "catch_up": st.one_of(st.sampled_from(ODD_CATCH_UPS), json_values()),
        "paused": st.one_of(st.sampled_from(["true", 1, 0, None, "false", []]), json_values()),
        "name": st.one_of(
            st.sampled_from(NAMES_TAKEN), st.sampled_from(ODD_NAMES), nasty_text(120), json_values()
        ),
        "task": st.one_of(batch_items(), json_values(), st.just([{"url": GOOD_URL}])),
    }  # fmt: skip
    return values[name]


def template_value(name: str) -> st.SearchStrategy[object]:
    """A template field's value: a batch item's kind of bad, or any JSON."""
    if name == "queue":
        return st.one_of(queue_names(), json_values())
    if name == "body":
        return st.one_of(item_field("body"), st.just("x" * (MAX_BODY + 1)))
    return item_field(name)


def blamed(name: str, task: object) -> frozenset[str]:
    """What a 400 may name for a top-level field at fault: any rule field for
    a rule's, task or task.<field> for the template's, else the field itself
    (as the answer shows it: its first 40 characters)."""
    if name in RULE_FIELDS:
        return RULE_FIELDS
    if name == "task":
        keys = {str(key)[:40] for key in task} if isinstance(task, dict) else set()
        inner = set(TEMPLATE_FIELDS) | set(NOT_TEMPLATE_FIELDS) | keys
        return frozenset({"task"} | {f"task.{key}" if key else "task" for key in inner})
    return frozenset({name[:40]})


@st.composite
def schedule_bodies(draw: st.DrawFn, patch: bool) -> tuple[bytes, frozenset[str] | None, bool]:
    """A POST (or PATCH) body; the fields a 400 may name (None: any, or
    none); whether it is a good schedule (a POST of it must make one)."""
    kind = draw(st.sampled_from(["fixed", "json", "large", *["good"] * 6, *["hostile"] * 7]))
    if kind == "fixed":
        return draw(st.sampled_from(SCHEDULE_BODIES)), None, False
    if kind == "json":
        return draw(st.builds(as_json, json_values(), st.booleans())), None, False
    if kind == "large":  # over the small-body limit: 413
        return b'{"every_s": 60, "name": "' + b"y" * SMALL_BODY + b'"}', None, False
    body: dict[str, Any] = draw(good_schedules())
    if patch:  # a change gives some of the fields
        kept = draw(st.sets(st.sampled_from(SCHEDULE_FIELDS), max_size=3))
        body = {name: value for name, value in body.items() if name in kept}
    at_fault: set[str] = set()
    for _ in range(0 if kind == "good" else draw(st.integers(1, 2))):
        at_fault |= draw(mutation(body))
    if patch and RULE_FIELDS & set(body):  # a time zone alone needs the schedule's cron
        at_fault |= RULE_FIELDS
    sent = as_json(body, draw(st.booleans()))
    try:
        jsonbody.loads(sent)
    except InvalidRequest:
        return sent, None, False  # a lone surrogate: the body is refused whole, no field
    return sent, frozenset(at_fault), not at_fault and not patch


@st.composite
def mutation(draw: st.DrawFn, body: dict[str, Any]) -> frozenset[str]:
    """Make one field of a good body hostile (or leave it out, or add one
    unknown); what a 400 may then name."""
    change = draw(st.integers(0, 9))
    if change < 4:  # a field made hostile
        name = draw(st.sampled_from(SCHEDULE_FIELDS))
        body[name] = draw(hostile_value(name))
    elif change < 7 and isinstance(body.get("task"), dict):  # a template field
        name = "task"
        field_name = draw(st.sampled_from(TEMPLATE_FIELDS + NOT_TEMPLATE_FIELDS))
        body["task"] = {**body["task"], field_name: draw(template_value(field_name))}
    elif change < 8:  # one left out
        name = draw(st.sampled_from(SCHEDULE_FIELDS))
        body.pop(name, None)
    else:  # one unknown (or, drawn by chance, known)
        name = draw(nasty_text(10))
        body[name] = draw(json_values())
    return blamed(name, body.get("task"))


# Bodies Python's JSON reads, and a schedule's fields are not (or not all).
SCHEDULE_BODIES = [
    *QUEUE_BODIES,
    b'{"every_s": NaN, "task": {"url": "' + GOOD_URL.encode() + b'"}}',
    b'{"every_s": Infinity, "task": {}}',
    b'{"every_s": -Infinity}',
    b'{"every_s": 1e400}',
    b'{"every_s": ' + b"9" * 5000 + b"}",  # past the digits Python reads: not JSON
    b'{"every_s": 60, "every_s": "x"}',
    b'{"cron": "* * * * *", "cron": 5}',
    b'{"task": {"url": "' + GOOD_URL.encode() + b'", "url": 1}, "every_s": 1}',
    b'{"every_s": 1, "task": {"url": "' + GOOD_URL.encode() + b'"}}' + b" " * 10,
]


@functools.cache
def schedule_segments() -> st.SearchStrategy[str]:
    """A schedule's id in a path, as sent: mostly one that may exist."""
    odd = [
        "0", "-1", "00001", "9" * 18, "9" * 19, "1e3", "0x1", "%31", "1%00", "%20", "+1", "1.0",
        "abc", "%ff", "..", "1;x", "%EF%BC%91", "%D9%A1", "", "1%2F", "%2F1",
    ]  # fmt: skip
    return weighted(
        (3, st.sampled_from([str(n) for n in range(1, SCHEDULE_IDS + 1)])),
        (1, st.sampled_from(odd)),
        (1, digits().map(lambda text: quote(text, safe=""))),
    )


SCHEDULE_ID_PATH = re.compile(r"/schedules/([0-9]{1,18})(/pause|/resume)?")


@st.composite
def schedule_requests(draw: st.DrawFn, key: str) -> list[Request]:
    auth = draw(
        st.sampled_from([[("NTORQUE_API_KEY", key)]] * 16 + [[], [("NTORQUE-API-KEY", "nope")]])
    )
    keyed = auth == [("NTORQUE_API_KEY", key)]
    json_type = [("Content-Type", "application/json")] if draw(st.booleans()) else []
    requests = []
    for _ in range(2):  # two creates: most requests that store something are these
        body, fields, good = draw(schedule_bodies(patch=False))
        expected = 201 if good and keyed else None
        named = fields if keyed else None
        requests.append(Request("POST", "/schedules", (*auth, *json_type), body, False,
                                expected, named))  # fmt: skip
    segment = draw(schedule_segments())
    body, fields, _ = draw(schedule_bodies(patch=True))
    one = f"/schedules/{segment}"
    plain = SCHEDULE_ID_PATH.fullmatch(one) is not None
    requests.append(Request("PATCH", one, (*auth, *json_type), body, False, None,
                            fields if plain and keyed else None))  # fmt: skip
    method = draw(
        st.sampled_from(
            ["GET", "DELETE", "DELETE", "POST", "POST", "PATCH", "PUT", "HEAD", "OPTIONS"]
        )
    )
    tails = ["", "/pause", "/resume", "/pause", "/Pause", "/stop", "/pause/", "/"]
    tail = draw(st.sampled_from(tails if method == "POST" else ["", "", "", "/pause", "/"]))
    other = f"/schedules/{draw(schedule_segments())}{tail}"
    small = draw(st.sampled_from([b"", b"{}", b'{"paused": true}', b"x", b'{"every_s": 1}']))
    requests.append(Request(method, other, tuple(auth), small, False))
    name = st.one_of(st.sampled_from(NAMES_TAKEN), nasty_text(), st.just("x" * 101))
    by_name = [("name", draw(name))] if draw(st.booleans()) else []
    listing = "/schedules" + encoded_query(by_name + draw(filter_pairs(paging=True)), "")
    requests.append(Request(draw(st.sampled_from(["GET", "GET", "PUT"])), listing, tuple(auth),
                            b"", False))  # fmt: skip
    schedule_id = st.one_of(
        st.integers(1, SCHEDULE_IDS).map(str),
        st.sampled_from(["", "0", "-1", "9" * 18, "9" * 19, "1.0", "\u0661", "0x1", "%", " 1"]),
        digits(),
        nasty_text(),
    )
    pairs = [("schedule_id", draw(schedule_id)), *draw(filter_pairs(paging=True))]
    requests.append(Request("GET", "/tasks" + encoded_query(pairs, ""), tuple(auth), b"", False))
    action = draw(st.sampled_from(["cancel", "retry"]))
    recent = ("created_after", time_slot(-5, "epoch"))  # a blank filter: all of them
    if draw(st.booleans()):
        bulk = f"/tasks/{action}" + encoded_query([("schedule_id", draw(schedule_id)), recent], "")
        bulk_body = b""
    else:
        bulk = f"/tasks/{action}"
        value = draw(st.one_of(st.integers(1, SCHEDULE_IDS), schedule_id, json_values()))
        bulk_body = as_json({"schedule_id": value, "created_after": time_slot(-5, "num")}, True)
    requests.append(Request("POST", bulk, (*auth, *json_type), bulk_body, False))
    return requests


def check_schedule(schedule: dict[str, Any], request: Request, detail: bool) -> None:
    """A schedule as answered: its fields, one rule within its bounds, a
    template nothing the policy refuses got into, times in order."""
    assert set(schedule) == SCHEDULE_JSON | ({"next_ticks", "last_tasks"} if detail else set()), (
        request, schedule,
    )  # fmt: skip
    assert type(schedule["id"]) is int and schedule["id"] > 0, (request, schedule)
    cron, every_s, zone = schedule["cron"], schedule["every_s"], schedule["timezone"]
    if cron is not None:
        assert every_s is None and isinstance(cron, str), (request, schedule)
        assert 0 < len(cron) <= 200 and cron == " ".join(cron.split()), (request, schedule)
        assert isinstance(zone, str) and 0 < len(zone) <= 64, (request, schedule)
        ZoneInfo(zone)
    else:
        assert zone is None and type(every_s) is float, (request, schedule)
        assert 1 <= every_s <= MAX_EVERY_S, (request, schedule)
    assert schedule["catch_up"] in ("latest", "all", "none"), (request, schedule)
    assert isinstance(schedule["paused"], bool), (request, schedule)
    name = schedule["name"]
    if name is not None:
        assert isinstance(name, str) and name.isprintable(), (request, schedule)
        assert len(name) <= 100, (request, schedule)
    assert isinstance(schedule["description"], str) and schedule["description"], schedule
    task = schedule["task"]
    assert set(task) == TEMPLATE_JSON, (request, schedule)
    Policy().check_url(task["url"])
    if task["callback"] is not None:
        Policy().check_url(task["callback"])
    assert QUEUE_NAME.fullmatch(task["queue"]), (request, schedule)
    assert task["method"] in ("POST", "PUT", "PATCH", "DELETE"), (request, schedule)
    assert task["retries"] is None or 1 <= task["retries"] <= 36, (request, schedule)
    assert task["backoff"] in (None, "linear", "exponential"), (request, schedule)
    assert 0 <= task["body_size"] <= MAX_BODY, (request, schedule)
    assert parsed(schedule["created"]) <= parsed(schedule["modified"]), (request, schedule)
    if every_s is not None:
        assert schedule["next_tick"] is not None, (request, schedule)
    if detail:
        ticks = [parsed(tick) for tick in schedule["next_ticks"]]
        assert 0 < len(ticks) <= 5 or schedule["next_tick"] is None, (request, schedule)
        assert ticks == sorted(set(ticks)), (request, schedule)


def without_next_ticks(schedule: dict[str, Any]) -> dict[str, Any]:
    """A schedule as read, less the ticks counted from the moment it is
    read when it is due (its next tick, stored, stays in)."""
    return {name: value for name, value in schedule.items() if name != "next_ticks"}


def read_of(request: Request, auth: tuple[tuple[str, str], ...]) -> Request | None:
    """The read that a refused create or change must leave as it was: the
    listing's newest schedule, or the schedule itself."""
    path = request.target.partition("?")[0]
    if path == "/schedules" and request.method == "POST":
        return Request("GET", "/schedules?limit=1", auth, b"", False)
    found = SCHEDULE_ID_PATH.fullmatch(path)
    if found and request.method in ("PATCH", "DELETE", "POST"):
        return Request("GET", f"/schedules/{found[1]}", auth, b"", False)
    return None


def read_stable(client: RawClient, read: Request) -> tuple[int, object]:
    status, body = client.send(read)
    answer = json.loads(body)
    if status == 200 and "next_ticks" in answer:
        answer = without_next_ticks(answer)
    return status, answer


def read_again(
    client: RawClient, answer: dict[str, Any], auth: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    """The schedule answered, as a GET reads it now (with the answer's next
    ticks when its next tick has come or is about to: a GET lists those from
    the moment it reads)."""
    status, body = client.send(Request("GET", f"/schedules/{answer['id']}", auth, b"", False))
    assert status == 200, (answer, status, body)
    shown: dict[str, Any] = json.loads(body)
    next_tick = answer["next_tick"]
    if next_tick is None or parsed(next_tick) < time.time() + 1:
        return {**shown, "next_ticks": answer["next_ticks"]}
    return shown


def send_schedule_requests(
    port: int, key: str, requests: tuple[Request, ...], tally: Tally
) -> tuple[set[int], set[int]]:
    """Like send_all, and: a refused create or change stores nothing (read
    before and after); a schedule answered as made or changed is the one a
    GET reads, one deleted is gone. The ids answered as made, and deleted."""
    client = RawClient(port)
    auth = (("NTORQUE_API_KEY", key),)
    made: set[int] = set()
    deleted: set[int] = set()
    numbers = itertools.count(1)
    try:
        for drawn_request in requests:
            request = filled(prepared(drawn_request, key, time.time()), made, numbers)
            read = read_of(request, auth)
            before = read_stable(client, read) if read else None
            status, body = client.send(request)
            check(request, status, body, tally)
            if read is not None and status >= 400:
                assert read_stable(client, read) == before, (request, status, body)
            path = request.target.partition("?")[0]
            if status == 201 or (status == 200 and request.method in ("PATCH", "POST")
                                 and path.startswith("/schedules/")):  # fmt: skip
                answer = json.loads(body)
                assert answer == read_again(client, answer, auth), request
                if status == 201:
                    made.add(answer["id"])
            if status == 204:  # deleted: gone
                found = SCHEDULE_ID_PATH.fullmatch(path)
                assert found is not None and read is not None, request
                assert read_stable(client, read)[0] == 404, request
                deleted.add(int(found[1]))
    finally:
        client.close()
    return made, deleted


def filled(request: Request, made: set[int], numbers: Iterator[int]) -> Request:
    """The request with its slots filled: the id last answered as made, a
    number no other name has."""
    if LAST_MADE in request.target:
        target = request.target.replace(LAST_MADE, str(max(made, default=0)))
        request = dataclasses.replace(request, target=target)
    if UNIQUE_SLOT.encode() in request.body:
        body = request.body.replace(UNIQUE_SLOT.encode(), str(next(numbers)).encode())
        request = dataclasses.replace(request, body=body)
    return request


@functools.cache
def drawn_schedule_requests() -> tuple[Request, ...]:
    """The schedule part's requests, drawn once from its own seed."""
    examples = SCHEDULE_REQUESTS // SCHEDULE_REQUESTS_PER_EXAMPLE
    return drawn_requests(schedule_requests(KEY_SLOT), examples, SCHEDULE_SEED)


def schedule_edge_cases() -> tuple[Request, ...]:
    """Each bound on either side, inputs that broke readers before, and one
    schedule's lifecycle: with the status (and field) each must get."""
    task = {"url": GOOD_URL}
    new, last = "/schedules", f"/schedules/{LAST_MADE}"

    def post(**fields: object) -> bytes:
        return as_json({"task": task, **fields}, True)

    def templated(**fields: object) -> bytes:
        return as_json({"every_s": 60, "task": {**task, **fields}}, True)

    def zoned(zone: str) -> bytes:
        return post(cron="* * * * *", timezone=zone)

    cases: list[tuple[str, str, bytes, int, str | None]] = [
        ("POST", new, post(every_s=1, catch_up="all"), 201, None),
        ("POST", new, post(every_s=MAX_EVERY_S), 201, None),
        ("POST", new, post(every_s=MAX_EVERY_S + 0.001), 400, "every_s"),
        ("POST", new, post(every_s=0.999), 400, "every_s"),
        ("POST", new, post(every_s=10**400), 400, "every_s"),
        ("POST", new, post(every_s=-(10**400)), 400, "every_s"),
        ("POST", new, post(every_s=2**1024), 400, "every_s"),
        ("POST", new, post(every_s=float("nan")), 400, "every_s"),
        ("POST", new, post(every_s=float("inf")), 400, "every_s"),
        ("POST", new, post(every_s=True), 400, "every_s"),
        ("POST", new, post(every_s="60"), 400, "every_s"),
        ("POST", new, post(every_s=60, timezone="UTC"), 400, "timezone"),
        ("POST", new, post(every_s=60, cron="* * * * *"), 400, "every_s"),
        ("POST", new, post(cron="x" * 200), 400, "cron"),
        ("POST", new, post(cron="x" * 201), 400, "cron"),
        ("POST", new, post(cron="0 0 30 2 *"), 400, "cron"),
        ("POST", new, post(cron="0 0 */40 * MON#5"), 400, "cron"),
        ("POST", new, post(cron="\u0660 \u0669 * * *"), 400, "cron"),
        ("POST", new, post(cron="0 9 * * *\x00"), 400, "cron"),
        ("POST", new, post(cron="*/" + "9" * 190 + " * * * *"), 201, None),
        ("POST", new, post(cron="0 0 * 2 MON#5", catch_up="all"), 201, None),
        ("POST", new, zoned("../"), 400, "timezone"),
        ("POST", new, zoned(""), 400, "timezone"),
        ("POST", new, zoned("UTC\x00"), 400, "timezone"),
        ("POST", new, zoned("Etc/GMT+25"), 400, "timezone"),
        ("POST", new, zoned("Europe"), 400, "timezone"),
        ("POST", new, zoned("zone.tab"), 400, "timezone"),
        ("POST", new, zoned("/etc/localtime"), 400, "timezone"),
        ("POST", new, zoned("a" * 65), 400, "timezone"),
        ("POST", new, zoned("Etc/GMT-14"), 201, None),
        ("POST", new, post(every_s=60, catch_up=["all"]), 400, "catch_up"),
        ("POST", new, post(every_s=60, paused=1), 400, "paused"),
        ("POST", new, post(every_s=60, name="x" * 100), 201, None),
        ("POST", new, post(every_s=60, name="x" * 101), 400, "name"),
        ("POST", new, post(every_s=60, name="a\x00"), 400, "name"),
        ("POST", new, post(every_s=60, name=""), 400, "name"),
        ("POST", new, post(every_s=60, name="edge-twice"), 201, None),
        ("POST", new, post(every_s=60, name="edge-twice"), 409, None),
        ("GET", "/schedules?name=edge-twice", b"", 200, None),
        ("GET", "/schedules?name=", b"", 400, "name"),
        ("GET", "/schedules?name=" + "x" * 101, b"", 400, "name"),
        ("GET", "/schedules?name=a%00", b"", 400, "name"),
        ("POST", new, as_json({"every_s": 60}, True), 400, "task"),
        ("POST", new, as_json({"every_s": 60, "task": "x"}, True), 400, "task"),
        ("POST", new, as_json({"every_s": 60, "task": {}}, True), 400, "task.url"),
        ("POST", new, templated(eta=1), 400, "task.eta"),
        ("POST", new, templated(body="x" * (MAX_BODY + 1)), 400, "task.body"),
        ("POST", new, templated(headers={"X": "\U0001f4a5"}), 400, "task.headers"),
        ("POST", new, templated(queue="a/b"), 400, "task.queue"),
        ("POST", new, b'{"every_s": 1, "task": {"url": "http://a/\\ud800"}}', 400, None),
        ("POST", new, b'{"a":' * 40 + b"1" + b"}" * 40, 400, None),
        ("POST", new, b" " * SMALL_BODY + b"{}", 413, None),
        ("PUT", new, b"{}", 405, None),
        ("GET", "/schedules?limit=1000", b"", 200, None),
        ("GET", "/schedules?limit=1001", b"", 400, "limit"),
        ("GET", "/schedules?cursor=" + encoded_cursor("t\u00b2"), b"", 400, "cursor"),
        ("GET", "/schedules?status=pending", b"", 400, "status"),
        ("POST", new, post(every_s=3600, name="edge"), 201, None),
        ("GET", last, b"", 200, None),
        ("PATCH", last, b'{"every_s": 1' + b"0" * 400 + b"}", 400, "every_s"),
        ("PATCH", last, b'{"timezone": "Europe/Paris"}', 400, "cron"),
        ("PATCH", last, b'{"cron": "0 9 * * *", "timezone": "Asia/Tokyo"}', 200, None),
        ("PATCH", last, b'{"timezone": "UTC\\u0000"}', 400, "timezone"),
        ("PATCH", last, b'{"task": null}', 400, "task"),
        ("PATCH", last, b'{"task": {"url": "ftp://example.com/"}}', 400, "task.url"),
        ("PATCH", last, b"[]", 400, None),
        ("PATCH", last, b"", 400, None),
        ("PATCH", last, b'{"paused": true, "catch_up": "none"}', 200, None),
        ("PATCH", last, b'{"name": "edge-twice"}', 409, None),
        ("PATCH", last, b'{"name": null}', 200, None),
        ("POST", last + "/resume", b"x", 200, None),
        ("POST", last + "/pause/", b"", 404, None),
        ("GET", last + "/pause", b"", 405, None),
        ("DELETE", last, b"", 204, None),
        ("DELETE", last, b"", 404, None),
        ("PATCH", last, b'{"name": "x"}', 404, None),
        ("POST", last + "/pause", b"", 404, None),
        ("GET", "/schedules/" + "9" * 18, b"", 404, None),
        ("GET", "/schedules/" + "9" * 19, b"", 404, None),
        ("GET", "/schedules/0", b"", 404, None),
        ("GET", "/schedules/-1", b"", 404, None),
        ("GET", "/schedules/%31", b"", 404, None),
        ("GET", "/schedules/%EF%BC%91", b"", 404, None),
        ("GET", "/schedules/", b"", 404, None),
        ("GET", "/tasks?schedule_id=" + "9" * 18, b"", 200, None),
        ("GET", "/tasks?schedule_id=" + "9" * 19, b"", 400, "schedule_id"),
        ("GET", "/tasks?schedule_id=-1", b"", 400, "schedule_id"),
        ("GET", "/tasks?schedule_id=%D9%A1", b"", 400, "schedule_id"),
        ("GET", "/tasks?schedule_id=1%00", b"", 400, "schedule_id"),
        ("POST", "/tasks/cancel", b'{"schedule_id": true}', 400, "schedule_id"),
        ("POST", "/tasks/cancel", b'{"schedule_id": 1.5}', 400, "schedule_id"),
        ("POST", "/tasks/cancel", b'{"schedule_id": [1]}', 400, "schedule_id"),
    ]
    return with_statuses(cases)


# What no schedule request may leave behind (each query counts offenders).
SCHEDULE_HALF_WRITTEN = {
    "a rule of neither or both kinds": """
        SELECT count(*) FROM schedules WHERE (cron IS NULL) = (every_s IS NULL)""",
    "every_s out of its bounds, or without a next tick": f"""
        SELECT count(*) FROM schedules WHERE every_s < 1 OR every_s > {MAX_EVERY_S}
        OR (every_s IS NOT NULL AND next_tick IS NULL)""",
    "a cron or time zone out of its bounds": """
        SELECT count(*) FROM schedules WHERE length(cron) > 200 OR length(timezone) = 0
        OR length(timezone) > 64""",
    "an unknown catch_up": """
        SELECT count(*) FROM schedules WHERE catch_up NOT IN ('latest', 'all', 'none')""",
    "a tick's task of another application than its schedule's": """
        SELECT count(*) FROM tasks t JOIN schedules s ON s.id = t.schedule_id
        WHERE coalesce(t.app_id, 0) <> s.app_id""",
    "a tick's task without its tick": """
        SELECT count(*) FROM tasks WHERE (schedule_id IS NULL) <> (schedule_tick IS NULL)""",
}


async def fired_an_hour_on(fuzzed: LiveNode, backend: Backend) -> dict[int, list[int]]:
    """An hour on, the ticker fires every active schedule due by then, once
    (catch_up as each says), and the clock comes back. The tasks made, by
    schedule, oldest tick first."""
    assert fuzzed.clock is not None
    fuzzed.clock.advance(3600)
    try:
        await fuzzed.running.ticker.round()
    finally:
        fuzzed.clock.advance(-3600)
    ticks = await rows_in_database(
        backend,
        "SELECT schedule_id, id FROM tasks WHERE schedule_id IS NOT NULL ORDER BY schedule_tick",
    )
    by_schedule: dict[int, list[int]] = {}
    for schedule_id, task_id in ticks:
        by_schedule.setdefault(schedule_id, []).append(task_id)
    return by_schedule


async def lists_their_ticks(fuzzed: LiveNode, by_schedule: dict[int, list[int]]) -> None:
    """Their tasks, as the API lists them by schedule, and as each schedule
    shows its last ones (of the first ten schedules that ticked)."""
    for schedule_id in sorted(by_schedule)[:10]:
        listed = await fuzzed.request("GET", f"/tasks?schedule_id={schedule_id}&limit=1000")
        assert [task["id"] for task in listed.json["tasks"]] == sorted(
            by_schedule[schedule_id], reverse=True
        )
        assert {task["schedule_id"] for task in listed.json["tasks"]} == {schedule_id}
        shown = await fuzzed.request("GET", f"/schedules/{schedule_id}")
        last_tasks = [task["id"] for task in shown.json["last_tasks"]]
        assert last_tasks == by_schedule[schedule_id][::-1][:10], (schedule_id, shown.json)


@pytest.mark.asyncio(loop_scope="module")
async def test_generated_schedule_requests_never_break_the_api(
    fuzzed: LiveNode, module_backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = Tally()
    last_id = await in_database(module_backend, "SELECT max(id) FROM tasks")
    started = time.monotonic()
    requests = await asyncio.to_thread(drawn_schedule_requests)
    requests += schedule_edge_cases()
    made, deleted = await asyncio.to_thread(
        send_schedule_requests, fuzzed.port, fuzzed.key, requests, tally
    )
    seconds = time.monotonic() - started
    # Nothing but schedules was stored: no task, and no schedule not answered as made.
    stray = "SELECT count(*) FROM tasks WHERE id > :id AND callback_of IS NULL"
    assert await in_database(module_backend, stray, id=last_id) == 0
    stored = {row[0] for row in await rows_in_database(module_backend, "SELECT id FROM schedules")}
    assert stored == made - deleted, sorted(stored ^ (made - deleted))
    fired = time.monotonic()
    by_schedule = await fired_an_hour_on(fuzzed, module_backend)
    fired_s = time.monotonic() - fired
    line = (
        f"FUZZ {module_backend.name} schedules: requests={tally.total} made={len(made)} "
        f"deleted={len(deleted)} fired={len(by_schedule)} "
        f"ticks={sum(len(ids) for ids in by_schedule.values())} seconds={seconds:.1f} "
        f"firing={fired_s:.2f}s statuses={dict(sorted(tally.statuses.items()))}"
    )
    record(line)
    with capsys.disabled():
        print(f"\n{line}")
    logs = fuzzed.logged.text
    for failure in ("Traceback", "schedules: ", "failed to fire"):  # the ticker's complaints
        assert failure not in logs, logs[-4000:]
    assert tally.total >= SCHEDULE_REQUESTS
    assert tally.statuses[201] > 80 and tally.statuses[400] > 300, tally
    assert tally.statuses[200] > 100 and tally.statuses[404] > 50, tally
    assert tally.statuses[409] > 0, tally  # a name taken
    assert len(by_schedule) > 0 and set(by_schedule) <= stored, by_schedule
    for what, query in {**SCHEDULE_HALF_WRITTEN, **HALF_WRITTEN}.items():
        assert await in_database(module_backend, query) == 0, what
    await lists_their_ticks(fuzzed, by_schedule)


# -- schedule rules, pure ----------------------------------------------------------------
#
# Any rule settings_from_json accepts (cron by the grammar and odd text, in
# zones with half-hour, 45-minute and 30-minute daylight saving, or every_s),
# at instants around clock changes and anywhere in this century: after,
# upcoming and latest answer strictly increasing ticks on the right side of
# t, consistent with each other, quickly (CPU time per call: the worst seen
# is about 10 ms); describe answers words; plan, after a gap, makes ticks
# of the gap only, within its bound. Nothing raises.

RULE_EXAMPLES = 400
CALL_BOUND_S = 0.05
# plan counts a gap's ticks (up to MAX_STEPS after() calls: about 70 ms at
# worst seen), and latest without since walks back count ticks however far
# (about 150 ms for 76 ticks 28 years apart)
SLOW_BOUND_S = 0.5
NOW_2026 = datetime.fromisoformat("2026-12-07T10:20:30+00:00").timestamp()
# Clock changes (UTC): Paris, New York, Lord Howe (half an hour), Chatham (at
# 02:45 local), Santiago, Casablanca (Ramadan), Troll (two hours).
CLOCK_CHANGES = [
    "2026-03-29T01:00:00", "2026-10-25T01:00:00", "2026-03-08T07:00:00", "2026-11-01T06:00:00",
    "2026-04-04T15:00:00", "2026-10-03T15:30:00", "2026-04-04T14:00:00", "2026-09-26T14:00:00",
    "2026-04-05T03:00:00", "2026-09-06T04:00:00", "2026-02-15T02:00:00", "2026-03-22T02:00:00",
    "2026-03-29T01:00:00", "2044-02-29T00:00:00", "2000-01-01T00:00:00", "2038-01-19T03:14:07",
]  # fmt: skip


@functools.cache
def instants() -> st.SearchStrategy[float]:
    near = st.builds(
        lambda text, offset: datetime.fromisoformat(text + "+00:00").timestamp() + offset,
        st.sampled_from(CLOCK_CHANGES),
        st.one_of(
            st.sampled_from([-3600.0, -1800.0, -1.0, -0.5, 0.0, 0.001, 1.0, 1800.0, 3600.0]),
            st.floats(-7200, 7200),
        ),
    )
    return st.one_of(near, st.floats(1e9, 4e9), st.just(NOW_2026))


@functools.cache
def rule_bodies() -> st.SearchStrategy[dict[str, object]]:
    """Mostly rules that are read (refused ones are the API part's to draw)."""
    crons = weighted((1, st.sampled_from(GOOD_CRONS)), (4, grammar_crons()), (1, cron_texts()))
    zones = weighted((4, st.sampled_from(GOOD_ZONES)), (1, zone_values()))
    cron = st.fixed_dictionaries({"cron": crons}, optional={"timezone": zones})
    every = st.fixed_dictionaries({"every_s": every_s_values()})
    return weighted((3, cron), (1, every))


def timed(call: Callable[..., T], *args: Any) -> tuple[T, float]:
    """What call answers, and the CPU time it took (this thread's: other
    processes on the machine do not count)."""
    started = time.thread_time()
    answer = call(*args)
    return answer, time.thread_time() - started


@settings(
    max_examples=RULE_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@seed(SCHEDULE_SEED)
@given(
    body=rule_bodies(),
    t=instants(),
    count=st.integers(1, MAX_CATCH_UP),
    gap=st.one_of(st.floats(0, 120), st.floats(0, 400 * DAY), st.just(0.0)),
    catch_up=st.sampled_from(["latest", "all", "none"]),
)
def test_every_accepted_rule_ticks_strictly_forwards_quickly(
    body: dict[str, object], t: float, count: int, gap: float, catch_up: str
) -> None:
    try:
        rule = settings_from_json(body, None, NOW_2026).rule
    except InvalidRequest as error:
        assert error.field in RULE_FIELDS, (body, error.field)
        return
    case = (rule, t)
    following, took = timed(rule.after, t)
    assert took < CALL_BOUND_S, (case, "after", took)
    assert following is None or following > t, case
    upcoming, took = timed(rule.upcoming, t)
    assert took < CALL_BOUND_S, (case, "upcoming", took)
    assert upcoming[:1] == ([] if following is None else [following]), (case, upcoming)
    assert all(a < b for a, b in itertools.pairwise([t, *upcoming])), (case, upcoming)
    assert len(upcoming) <= SHOWN_TICKS, (case, upcoming)
    since = t - gap
    latest, took = timed(rule.latest, t, count, since)
    assert took < CALL_BOUND_S, (case, "latest", count, gap, took)
    assert len(latest) <= count and all(since <= tick <= t for tick in latest), (case, latest)
    assert all(a < b for a, b in itertools.pairwise(latest)), (case, latest)
    if latest:  # none left out between the last of them and t
        assert rule.after(latest[-1]) == following, (case, latest, following)
    # Without since, the walk back may be long (a rule of every 28 years), never endless.
    unbounded, took = timed(rule.latest, t, count)
    assert took < SLOW_BOUND_S, (case, "latest", count, took)
    assert latest == [tick for tick in unbounded if tick >= since], (case, unbounded, latest)
    words, _ = timed(rule.describe)
    assert isinstance(words, str) and words, case

    first = rule.after(since - 1e-3)
    if first is None or first > t:
        return
    firing, took = timed(plan, rule, catch_up, first, t)
    assert took < SLOW_BOUND_S, (case, "plan", catch_up, gap, took)
    assert all(a < b for a, b in itertools.pairwise(firing.ticks)), (case, firing)
    assert all(first <= tick <= t for tick in firing.ticks), (case, first, firing)
    assert len(firing.ticks) <= (MAX_CATCH_UP if catch_up == "all" else 1), (case, firing)
    assert catch_up == "none" or firing.ticks, (case, firing)
    assert firing.skipped >= 0 and firing.next_tick == following, (case, firing)
