"""Who is calling (ntorque.auth): API key -> active application, by keyed
hash (legacy plain hashes re-hashed on first use), cached for auth_cache_s;
no secret anywhere compared with ==. Over HTTP: bad keys are limited per
client address (429 with Retry-After), and changes to a key apply once the
cache runs out. Each HTTP case runs on a node in the test's event loop, on
both backends.
"""

from __future__ import annotations

import ast
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio

from ntorque.applications import Applications
from ntorque.auth import Authenticator
from ntorque.keys import KEY_HASH_SECRET, MAX_KEY_LENGTH, keyed_hash, legacy_hash, new_key
from ntorque.store import Store
from tests.conftest import Backend, live_for
from tests.hookserver import HookServer
from tests.inprocess import Clock, LiveNode
from tests.server import Response

NOW = 1_700_000_000.0
SOURCES = Path(__file__).parent.parent / "ntorque"
in_node_loop = pytest.mark.asyncio(loop_scope="module")  # the module's shared nodes


# -- the Authenticator ---------------------------------------------------------------


async def test_only_an_active_applications_own_key_is_found(store: Store) -> None:
    created = await Applications(store.apps).create("keyed")
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


async def test_key_changes_apply_once_the_cache_runs_out(store: Store) -> None:
    """A deactivated or rotated key works until its cached lookup is
    auth_cache_s old, then no more; a new key works at once."""
    apps, clock = Applications(store.apps), Clock(100.0)
    auth = Authenticator(store.apps, cache_s=5, clock=clock)
    leaving, rotating = await apps.create("leaving"), await apps.create("rotating")
    assert await auth.app_for_key(leaving.key) == leaving.app
    assert await auth.app_for_key(rotating.key) == rotating.app
    await apps.set_active("leaving", False)
    new_key_ = await apps.rotate_key("rotating")
    clock.advance(4.9)
    assert await auth.app_for_key(leaving.key) == leaving.app  # cached
    assert await auth.app_for_key(rotating.key) == rotating.app  # cached
    assert await auth.app_for_key(new_key_) == rotating.app  # never looked up: found now
    clock.advance(0.1)
    assert await auth.app_for_key(leaving.key) is None
    assert await auth.app_for_key(rotating.key) is None
    assert await auth.app_for_key(new_key_) == rotating.app


# -- no secret compared with == -------------------------------------------------------


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


# -- over HTTP: bad keys are limited per address ---------------------------------------

LIMIT = 3


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def limited(module_backend: Backend) -> AsyncIterator[LiveNode]:
    """A node that trusts X-Forwarded-For, so each test names its addresses
    (the API alone: no task needs to be performed)."""
    settings = {"auth_failure_limit": LIMIT, "auth_failure_window_s": 600}
    async with live_for(module_backend, loops=False, trust_proxy_headers=True, **settings) as node:
        yield node


async def enqueue(
    node: LiveNode, hooks: HookServer, key: str, address: str | None = None
) -> Response:
    path = "/?" + urlencode({"url": hooks.url(f"/status/200/{uuid.uuid4().hex}")})
    headers = {"X-Forwarded-For": address} if address else {}
    return await node.request("POST", path, b"x", headers, key)


def assert_limited(response: Response) -> dict[str, Any]:
    assert response.status == 429, (response.status, response.body)
    assert response.headers["Content-Type"].startswith("application/json")
    assert 1 <= int(response.headers["Retry-After"]) <= 200
    data: dict[str, Any] = response.json
    assert data["status"] == 429 and "too many failed authentications" in data["error"]
    return data


@in_node_loop
async def test_bad_keys_are_limited_per_address(limited: LiveNode, hooks: HookServer) -> None:
    for _ in range(LIMIT):
        assert (await enqueue(limited, hooks, "wrong", "10.1.0.1")).status == 401
    assert_limited(await enqueue(limited, hooks, "wrong", "10.1.0.1"))
    # While limited, no key is checked at all (every endpoint), so guessing stops.
    assert_limited(await enqueue(limited, hooks, limited.key, "10.1.0.1"))
    headers = {"X-Forwarded-For": "10.1.0.1"}
    assert_limited(await limited.request("GET", "/task/1", None, headers, "wrong"))
    # Another address is not limited, and successes take nothing from it.
    for _ in range(LIMIT * 3):
        assert (await enqueue(limited, hooks, limited.key, "10.1.0.2")).status == 201
    assert (await enqueue(limited, hooks, "wrong", "10.1.0.2")).status == 401
    # GET / needs no key and is never limited.
    assert (await limited.request("GET", "/", None, headers, "")).status == 200


async def test_without_trusted_proxy_headers_the_peer_is_limited(
    backend: Backend, hooks: HookServer
) -> None:
    async with live_for(backend, loops=False, auth_failure_limit=2) as node:
        for number in range(2):  # a client cannot escape by naming other addresses
            assert (await enqueue(node, hooks, "wrong", f"10.2.0.{number}")).status == 401
        assert_limited(await enqueue(node, hooks, "wrong", "10.2.0.9"))
        assert_limited(await enqueue(node, hooks, node.key))


# -- over HTTP: changes to keys apply within auth_cache_s -------------------------------

CACHE_S = 1.0


async def test_a_changed_key_is_honoured_until_the_cache_runs_out(
    backend: Backend, hooks: HookServer
) -> None:
    """deactivate-app and rotate-key: the old keys still work for the API
    until their lookup is auth_cache_s old, then they get 401."""
    async with live_for(backend, loops=False, auth_cache_s=CACHE_S) as node:
        leaving, leaving_key = await node.create_app()
        rotating, old_key = await node.create_app()
        for key in (leaving_key, old_key):  # looked up, and cached
            assert (await enqueue(node, hooks, key)).status == 201
        cached = time.monotonic()  # both lookups are cached until CACHE_S after this at most
        await node.apps.set_active(leaving, False)  # as `deactivate-app` does
        new_key_ = await node.apps.rotate_key(rotating)  # as `rotate-key` does
        for key in (leaving_key, old_key, new_key_):
            assert (await enqueue(node, hooks, key)).status == 201, key
        await asyncio.sleep(max(cached + CACHE_S - time.monotonic(), 0) + 0.05)
        for key in (leaving_key, old_key):
            response = await enqueue(node, hooks, key)
            assert response.status == 401, (response.status, response.body)
        assert (await enqueue(node, hooks, new_key_)).status == 201
