"""Applications and their API keys.

A key is shown once, when made; the database keeps only its SHA-256 (keys
are 240 random bits, so an unsalted hash cannot be guessed back). Lookups go
by hash, and the stored hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .errors import InvalidRequest, UnknownApplication
from .store import Store

DEFAULT_APP = "default"
MAX_KEY_LENGTH = 200


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


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class Authenticator:
    """API key -> active application, with a short cache off the hot path."""

    def __init__(
        self, store: Store, *, cache_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.cache_s = cache_s
        self.clock = clock
        self._cache: dict[str, tuple[float, App | None]] = {}

    async def app_for_key(self, key: str | None) -> App | None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        digest = hash_key(key)
        cached = self._cache.get(digest)
        if cached and cached[0] > self.clock():
            return cached[1]
        row = await self.store.app_by_key_hash(digest)
        found = row is not None and hmac.compare_digest(row["key_hash"], digest)
        app = App.from_row(row) if found and row and row["active"] else None
        if self.cache_s > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (self.clock() + self.cache_s, app)
        return app


class Applications:
    """Managing applications (the command line's create/list/deactivate/rotate)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def create(self, name: str) -> tuple[App, str]:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidRequest("an application name has 1 to 100 characters")
        key = new_key()
        try:
            row = await self.store.create_app(name, hash_key(key), self.clock())
        except sa.exc.IntegrityError:
            raise InvalidRequest(f"an application named {name!r} exists already") from None
        return App.from_row(row), key

    async def list(self) -> list[App]:
        return [App.from_row(row) for row in await self.store.list_apps()]

    async def set_active(self, name: str, active: bool) -> None:
        if not await self.store.update_app(name, active=active):
            raise UnknownApplication(f"no application named {name!r}")

    async def rotate_key(self, name: str) -> str:
        key = new_key()
        if not await self.store.update_app(name, key_hash=hash_key(key)):
            raise UnknownApplication(f"no application named {name!r}")
        return key

    async def create_default(self) -> str | None:
        """On a database with no application yet, make `default`; its key, once."""
        if await self.store.count_apps():
            return None
        try:
            _, key = await self.create(DEFAULT_APP)
        except InvalidRequest:  # another node made it first
            return None
        return key
