"""Managing applications (ntorque.applications): a new or rotated key is
stored only as its keyed hash, next to the application's signing secret.
"""

from __future__ import annotations

from ntorque.applications import Applications
from ntorque.auth import Authenticator
from ntorque.keys import KEY_HASH_SECRET, keyed_hash
from ntorque.store import Store

NOW = 1_700_000_000.0


async def test_keys_are_stored_as_keyed_hashes(store: Store) -> None:
    created = await Applications(store.apps).create("keyed")
    secret = await store.apps.server_secret(KEY_HASH_SECRET, lambda: "unused", NOW)
    row = await store.apps.by_name("keyed")
    assert row and row["key_hash"] == keyed_hash(secret, created.key)
    assert row["signing_secret"] == created.signing_secret
    assert created.signing_secret.startswith("whsec_")


async def test_rotated_keys_are_keyed_too(store: Store) -> None:
    apps = Applications(store.apps)
    old = (await apps.create("rotating")).key
    new = await apps.rotate_key("rotating")
    secret = await store.apps.server_secret(KEY_HASH_SECRET, lambda: "unused", NOW)
    row = await store.apps.by_name("rotating")
    assert row and row["key_hash"] == keyed_hash(secret, new)
    auth = Authenticator(store.apps, cache_s=0)
    assert await auth.app_for_key(old) is None
    assert (found := await auth.app_for_key(new)) and found.name == "rotating"
