"""Applications and their API keys.

A key is shown once, when made; the database keeps only its keyed hash,
HMAC-SHA256 under the server-wide secret `key_hash_secret` (so a copy of the
applications table alone does not let anyone test guesses). Lookups go by
hash, and the stored hash is compared in constant time. Rows made before
keyed hashing hold a plain SHA-256: the first successful lookup re-hashes them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa

from .cache import TtlCache
from .errors import InvalidRequest, UnknownApplication
from .signing import new_signing_secret
from .store import Store

DEFAULT_APP = "default"
MAX_KEY_LENGTH = 200
KEY_HASH_SECRET = "key_hash_secret"  # the name in server_secrets
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


def new_key() -> str:
    return secrets.token_urlsafe(30)


def keyed_hash(secret: str, key: str) -> str:
    """What the database keeps of a key."""
    data = key.encode("utf-8", "surrogateescape")
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def legacy_hash(key: str) -> str:
    """The plain SHA-256 kept before keyed hashing (migration 0001 era)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class KeyHasher:
    """Keyed hashes of keys; the shared secret is read (or made) once."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.secret = ""
        self._loaded: TtlCache[str, str] = TtlCache(float("inf"))  # read once, by one caller

    async def load(self) -> str:
        if not self.secret:
            self.secret = await self._loaded.get(KEY_HASH_SECRET, self._read)
        return self.secret

    async def _read(self) -> str:
        make = lambda: secrets.token_urlsafe(32)  # noqa: E731
        return await self.store.server_secret(KEY_HASH_SECRET, make, self.clock())

    async def hash(self, key: str) -> str:
        return keyed_hash(self.secret or await self.load(), key)


class Authenticator:
    """API key -> active application, with a short cache off the hot path."""

    def __init__(
        self, store: Store, *, cache_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.hasher = KeyHasher(store)
        self._cache: TtlCache[str, App | None] = TtlCache(
            cache_s, max_entries=MAX_CACHED_KEYS, clock=clock
        )

    async def app_for_key(self, key: str | None) -> App | None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        digest = await self.hasher.hash(key)
        return await self._cache.get(digest, lambda: self._lookup(key, digest))

    async def _lookup(self, key: str, digest: str) -> App | None:
        row = await self.store.app_by_key_hash(digest) or await self._rehashed(key, digest)
        found = row is not None and hmac.compare_digest(row["key_hash"], digest)
        return App.from_row(row) if found and row and row["active"] else None

    async def _rehashed(self, key: str, digest: str) -> dict[str, Any] | None:
        """A legacy row of this key, now re-hashed; None when there is none."""
        if not await self.store.replace_key_hash(legacy_hash(key), digest):
            return None
        return await self.store.app_by_key_hash(digest)


class Created(NamedTuple):
    """A new application, its API key and signing secret (each shown once)."""

    app: App
    key: str
    signing_secret: str


class Applications:
    """Managing applications (the command line's create/list/deactivate/rotate)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.hasher = KeyHasher(store, clock)

    async def create(self, name: str) -> Created:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidRequest("an application name has 1 to 100 characters")
        key, secret = new_key(), new_signing_secret()
        key_hash = await self.hasher.hash(key)
        try:
            row = await self.store.create_app(name, key_hash, self.clock(), secret)
        except sa.exc.IntegrityError:
            raise InvalidRequest(f"an application named {name!r} exists already") from None
        return Created(App.from_row(row), key, secret)

    async def list(self) -> list[App]:
        return [App.from_row(row) for row in await self.store.list_apps()]

    async def set_active(self, name: str, active: bool) -> None:
        self._found(await self.store.update_app(name, active=active), name)

    async def rotate_key(self, name: str) -> str:
        key = new_key()
        self._found(await self.store.update_app(name, key_hash=await self.hasher.hash(key)), name)
        return key

    async def rotate_secret(self, name: str) -> str:
        """A new signing secret; the current one keeps signing too until finish_rotation."""
        secret = new_signing_secret()
        self._found(await self.store.rotate_signing_secret(name, secret), name)
        return secret

    async def finish_rotation(self, name: str) -> None:
        self._found(await self.store.finish_rotation(name), name)

    async def signing_secrets(self, name: str) -> tuple[str, ...]:
        """The application's signing secrets in use, current first."""
        row = await self.store.app_by_name(name)
        if row is None:
            raise UnknownApplication(f"no application named {name!r}")
        return await self.store.app_signing_secrets(row["id"], new_signing_secret)

    async def create_default(self) -> str | None:
        """On a database with no application yet, make `default`; its key, once."""
        if await self.store.count_apps():
            return None
        try:
            created = await self.create(DEFAULT_APP)
        except InvalidRequest:  # another node made it first
            return None
        return created.key

    @staticmethod
    def _found(found: bool, name: str) -> None:
        if not found:
            raise UnknownApplication(f"no application named {name!r}")
