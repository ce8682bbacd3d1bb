"""API keys (ntorque.keys): random url-safe keys, kept only as HMAC-SHA256
under the server secret; rows made before keyed hashing hold a plain SHA-256.
Pure: no I/O. (Where keys are stored: test_applications.py; looked up:
test_auth.py.)
"""

from __future__ import annotations

import re

from ntorque.keys import keyed_hash, legacy_hash, new_key, stored_hashes

# Computed outside Python: printf 'key-1' | openssl dgst -sha256 -hmac 'server-secret'
KEYED = "f28f6782dfb1cee64fc1d282805b5fa09ecc2dff212dc86b5eef777f4d56d7ca"
# printf 'key-1' | sha256sum
LEGACY = "be2974546978e3739e6d6da85c4be9f334ce32df2b9fd4b6ff1b55c0d57e9d44"


def test_keys_are_40_url_safe_characters() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{40}", key) for key in keys), keys


def test_the_hashes_are_hmac_sha256_and_sha256() -> None:
    assert keyed_hash("server-secret", "key-1") == KEYED
    assert legacy_hash("key-1") == LEGACY
    assert stored_hashes("server-secret", "key-1") == [KEYED, LEGACY]
    assert stored_hashes(None, "key-1") == [LEGACY]  # no secret yet: only legacy rows


def test_a_keyed_hash_needs_the_server_secret() -> None:
    key = new_key()
    assert keyed_hash("s1", key) != keyed_hash("s2", key)
    assert keyed_hash("s1", key) != legacy_hash(key)
    assert len(keyed_hash("s1", key)) == len(legacy_hash(key)) == 64  # fits key_hash
    assert keyed_hash("s1", key) == keyed_hash("s1", key)
