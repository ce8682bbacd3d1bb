"""API keys and failed authentications: keys kept only as a keyed hash (legacy
plain hashes re-hashed on first use), no secret compared with ==, and bad
keys limited per client address (429 with Retry-After) on a real ntorque.
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from ntorque.applications import Applications
from ntorque.auth import Authenticator
from ntorque.client import Client, ClientError, Outbox
from ntorque.keys import KEY_HASH_SECRET, MAX_KEY_LENGTH, keyed_hash, legacy_hash, new_key
from ntorque.ratelimit import FailureLimiter
from ntorque.store import Store
from tests.conftest import Backend, server_for
from tests.hookserver import HookServer
from tests.server import NtorqueServer, Response

NOW = 1_700_000_000.0
SOURCES = Path(__file__).parent.parent / "ntorque"


# -- keyed hashes ------------------------------------------------------------------


def test_a_keyed_hash_needs_the_server_secret() -> None:
    key = new_key()
    assert keyed_hash("s1", key) != keyed_hash("s2", key)
    assert keyed_hash("s1", key) != legacy_hash(key)
    assert len(keyed_hash("s1", key)) == len(legacy_hash(key)) == 64  # fits key_hash
    assert keyed_hash("s1", key) == keyed_hash("s1", key)


async def test_keys_are_stored_as_keyed_hashes(store: Store) -> None:
    created = await Applications(store.apps).create("keyed")
    secret = await store.apps.server_secret(KEY_HASH_SECRET, lambda: "unused", NOW)
    row = await store.apps.by_name("keyed")
    assert row and row["key_hash"] == keyed_hash(secret, created.key)
    assert row["signing_secret"] == created.signing_secret
    assert created.signing_secret.startswith("whsec_")

    auth = Authenticator(store.apps, cache_s=0)
    assert await auth.app_for_key(created.key) == created.app
    for wrong in (None, "", created.key + "x", created.key[:-1], "k" * (MAX_KEY_LENGTH + 1)):
        assert await auth.app_for_key(wrong) is None
    await Applications(store.apps).set_active("keyed", False)
    assert await auth.app_for_key(created.key) is None


async def test_a_legacy_hash_is_rehashed_on_first_use(store: Store) -> None:
    key = new_key()
    row = await store.apps.create("legacy", legacy_hash(key), NOW)  # a 0001-era row
    auth = Authenticator(store.apps, cache_s=0)
    found = await auth.app_for_key(key)
    assert found is not None and found.id == row["id"]
    secret = await store.apps.server_secret(KEY_HASH_SECRET, lambda: "unused", NOW)
    assert await store.apps.by_key_hash(legacy_hash(key)) is None  # the plain hash is gone
    assert await store.apps.by_key_hash(keyed_hash(secret, key)) is not None
    assert await auth.app_for_key(key) == found  # found by its keyed hash now
    assert await auth.app_for_key(new_key()) is None


async def test_the_outbox_finds_keyed_and_legacy_keys(store: Store) -> None:
    created = await Applications(store.apps).create("outbox")
    legacy_key = new_key()
    legacy = await store.apps.create("outbox-legacy", legacy_hash(legacy_key), NOW)
    for key, app_id in ((created.key, created.app.id), (legacy_key, legacy["id"])):
        async with store.engine.begin() as connection:
            outbox = Outbox(Client("http://127.0.0.1:9", key), connection)
            assert await outbox._app_id() == app_id
    async with store.engine.begin() as connection:
        with pytest.raises(ClientError, match="no active application"):
            await Outbox(Client("http://127.0.0.1:9", new_key()), connection)._app_id()


async def test_rotated_keys_are_keyed_too(store: Store) -> None:
    apps = Applications(store.apps)
    old = (await apps.create("rotating")).key
    new = await apps.rotate_key("rotating")
    auth = Authenticator(store.apps, cache_s=0)
    assert await auth.app_for_key(old) is None
    assert (found := await auth.app_for_key(new)) and found.name == "rotating"


async def test_key_changes_apply_within_the_auth_cache(store: Store) -> None:
    """A deactivated application's key, and a rotated one, still work until
    their cached lookup runs out (auth_cache_s), and not after."""
    clock = Clock()
    apps = Applications(store.apps)
    deactivated = (await apps.create("deactivated")).key
    rotated = (await apps.create("rotated")).key
    auth = Authenticator(store.apps, cache_s=5, clock=clock)
    for key in (deactivated, rotated):
        assert await auth.app_for_key(key)  # looked up, and now cached
    await apps.set_active("deactivated", False)
    new = await apps.rotate_key("rotated")
    clock.now += 4.9
    assert (found := await auth.app_for_key(deactivated)) and found.name == "deactivated"
    assert (found := await auth.app_for_key(rotated)) and found.name == "rotated"
    assert (found := await auth.app_for_key(new)) and found.name == "rotated"  # new: at once
    clock.now += 0.2  # the cache ran out
    assert await auth.app_for_key(deactivated) is None
    assert await auth.app_for_key(rotated) is None
    assert (found := await auth.app_for_key(new)) and found.name == "rotated"


SECRET_WORDS = ("key", "secret", "signature", "digest", "hash", "token", "password")


def sql_column(node: ast.expr) -> bool:
    """table.c.key_hash == x builds SQL: the database looks the row up by index."""
    return isinstance(node, ast.Attribute) and ast.unparse(node.value).endswith(".c")


def secret_like(node: ast.expr) -> bool:
    """A name, attribute or subscript that holds a secret."""
    text = ast.unparse(node).lower()
    named = isinstance(node, ast.Name | ast.Attribute | ast.Subscript | ast.Call)
    return named and any(word in text for word in SECRET_WORDS)


def equality_on_secrets(source: str, name: str) -> list[str]:
    """Every == or != comparison of the source with a secret-like side."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if not isinstance(node, ast.Compare):
            continue
        equality = any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops)
        sides = [node.left, *node.comparators]
        if equality and not any(map(sql_column, sides)) and any(map(secret_like, sides)):
            found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_secret_is_compared_with_equality() -> None:
    """== exits at the first differing byte; secrets go through hmac.compare_digest."""
    paths = sorted(SOURCES.rglob("*.py"))
    scanned = {path.relative_to(SOURCES).as_posix() for path in paths}
    assert {"console/viewer.py", "store/apps.py", "auth.py"} <= scanned  # every package
    found = [hit for path in paths for hit in equality_on_secrets(path.read_text(), str(path))]
    assert found == []


def test_the_equality_scan_finds_a_secret_compared_with_equality() -> None:
    planted = "def check(tag, row):\n    return tag == row['key_hash']\n"
    assert equality_on_secrets(planted, "planted.py") == ["planted.py:2: tag == row['key_hash']"]


# -- the failure limiter -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limiter_allows_a_burst_then_refills() -> None:
    clock = Clock()
    limiter = FailureLimiter(3, 60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 20  # one token per 20 s
    assert limiter.retry_after("10.0.0.2") == 0  # per address
    clock.now += 19.5
    assert limiter.retry_after("10.0.0.1") == 1
    clock.now += 0.5
    assert limiter.retry_after("10.0.0.1") == 0
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 20
    clock.now += 3600  # a full bucket again, never more than the limit
    for _ in range(3):
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 20


def test_the_limiter_forgets_the_oldest_addresses() -> None:
    limiter = FailureLimiter(1, 60, max_addresses=100, clock=Clock())
    for number in range(1000):
        limiter.failed(f"10.0.{number // 256}.{number % 256}")
    assert len(limiter._buckets) == 100
    assert limiter.retry_after("10.0.0.0") == 0  # forgotten
    assert limiter.retry_after("10.0.3.231") == 60  # the last one, remembered


# -- a real ntorque limits bad keys --------------------------------------------------

LIMIT = 3


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NtorqueServer]:
    """SQLite is enough: the limiter lives in the process. Trusts X-Forwarded-For."""
    workdir = tmp_path_factory.mktemp("limited")
    backend = Backend("sqlite", f"sqlite:///{workdir / 'ntorque.db'}")
    settings = {
        "NTORQUE_AUTH_FAILURE_LIMIT": str(LIMIT),
        "NTORQUE_AUTH_FAILURE_WINDOW": "600",
        "NTORQUE_TRUST_PROXY_HEADERS": "true",
    }
    with server_for(backend, workdir, (), **settings) as running:
        yield running


def enqueue(
    server: NtorqueServer, hooks: HookServer, key: str, address: str | None = None
) -> Response:
    path = "/?" + urlencode({"url": hooks.url(f"/status/200/{uuid.uuid4().hex}")})
    headers = {"X-Forwarded-For": address} if address else {}
    return server.request("POST", path, b"x", headers, key)


def assert_limited(response: Response) -> dict[str, Any]:
    assert response.status == 429, (response.status, response.body)
    assert response.headers["Content-Type"].startswith("application/json")
    assert 1 <= int(response.headers["Retry-After"]) <= 200
    data: dict[str, Any] = response.json
    assert data["status"] == 429 and "too many failed authentications" in data["error"]
    return data


def test_bad_keys_are_limited_per_address(limited: NtorqueServer, hooks: HookServer) -> None:
    for _ in range(LIMIT):
        assert enqueue(limited, hooks, "wrong", "10.1.0.1").status == 401
    assert_limited(enqueue(limited, hooks, "wrong", "10.1.0.1"))
    # While limited, no key is checked at all (every endpoint), so guessing stops.
    assert_limited(enqueue(limited, hooks, limited.key, "10.1.0.1"))
    headers = {"X-Forwarded-For": "10.1.0.1"}
    assert_limited(limited.request("GET", "/task/1", None, headers, "wrong"))
    # Another address is not limited, and successes take nothing from it.
    for _ in range(LIMIT * 3):
        assert enqueue(limited, hooks, limited.key, "10.1.0.2").status == 201
    assert enqueue(limited, hooks, "wrong", "10.1.0.2").status == 401
    # GET / needs no key and is never limited.
    assert limited.request("GET", "/", None, headers, "").status == 200


def test_without_trusted_proxy_headers_the_peer_is_limited(
    tmp_path: Path, hooks: HookServer
) -> None:
    backend = Backend("sqlite", f"sqlite:///{tmp_path / 'ntorque.db'}")
    with server_for(backend, tmp_path, (), NTORQUE_AUTH_FAILURE_LIMIT="2") as server:
        for number in range(2):  # a client cannot escape by naming other addresses
            assert enqueue(server, hooks, "wrong", f"10.2.0.{number}").status == 401
        assert_limited(enqueue(server, hooks, "wrong", "10.2.0.9"))
        assert_limited(enqueue(server, hooks, server.key))
