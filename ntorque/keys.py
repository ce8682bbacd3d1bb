"""API keys: made here, shown once, and kept only as a keyed hash.

The hash is HMAC-SHA256 under the server-wide secret `key_hash_secret`, so a
copy of the applications table alone does not let anyone test guesses. Rows
made before keyed hashing hold a plain SHA-256 (`legacy_hash`). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_HASH_SECRET = "key_hash_secret"  # its name in server_secrets
MAX_KEY_LENGTH = 200


def new_key() -> str:
    return secrets.token_urlsafe(30)


def new_server_secret() -> str:
    return secrets.token_urlsafe(32)


def keyed_hash(secret: str, key: str) -> str:
    """What the database keeps of a key."""
    data = key.encode("utf-8", "surrogateescape")
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def legacy_hash(key: str) -> str:
    """The plain SHA-256 kept before keyed hashing (migration 0001 era)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def stored_hashes(secret: str | None, key: str) -> list[str]:
    """Every hash a row of this key may hold: the keyed one, and the legacy
    one of a row not re-hashed yet."""
    found = [keyed_hash(secret, key)] if secret is not None else []
    return [*found, legacy_hash(key)]
