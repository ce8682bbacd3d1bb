"""Who is calling: API key -> active application.

Lookups go by the key's keyed hash (see `keys`), and the stored hash is
compared in constant time. A row made before keyed hashing holds a plain
SHA-256: the first successful lookup re-hashes it.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .cache import TtlCache
from .keys import KEY_HASH_SECRET, MAX_KEY_LENGTH, keyed_hash, legacy_hash, new_server_secret
from .store.apps import AppStore

MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True)
class App:
    id: int
    name: str
    active: bool
    created: float
    admin: bool = False  # sees every application's tasks in the console

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> App:
        return cls(
            row["id"], row["name"], bool(row["active"]), row["created"], bool(row.get("admin"))
        )


class KeyHasher:
    """Keyed hashes of keys; the shared secret is read (or made) once."""

    def __init__(self, apps: AppStore, clock: Callable[[], float] = time.time) -> None:
        self.apps = apps
        self.clock = clock
        self.secret = ""
        self._loaded: TtlCache[str, str] = TtlCache(float("inf"))  # read once, by one caller

    async def load(self) -> str:
        if not self.secret:
            self.secret = await self._loaded.get(KEY_HASH_SECRET, self._read)
        return self.secret

    async def _read(self) -> str:
        return await self.apps.server_secret(KEY_HASH_SECRET, new_server_secret, self.clock())

    async def hash(self, key: str) -> str:
        return keyed_hash(self.secret or await self.load(), key)


class Authenticator:
    """API key -> active application, with a short cache off the hot path."""

    def __init__(
        self, apps: AppStore, *, cache_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.apps = apps
        self.hasher = KeyHasher(apps)
        self._cache: TtlCache[str, App | None] = TtlCache(
            cache_s, max_entries=MAX_CACHED_KEYS, clock=clock
        )

    async def app_for_key(self, key: str | None) -> App | None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        digest = await self.hasher.hash(key)
        return await self._cache.get(digest, lambda: self._lookup(key, digest))

    async def _lookup(self, key: str, digest: str) -> App | None:
        row = await self.apps.by_key_hash(digest) or await self._rehashed(key, digest)
        found = row is not None and hmac.compare_digest(row["key_hash"], digest)
        return App.from_row(row) if found and row and row["active"] else None

    async def _rehashed(self, key: str, digest: str) -> dict[str, Any] | None:
        """A legacy row of this key, now re-hashed; None when there is none."""
        if not await self.apps.replace_key_hash(legacy_hash(key), digest):
            return None
        return await self.apps.by_key_hash(digest)
