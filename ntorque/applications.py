"""Managing applications: create, list, (de)activate, rotate keys and signing
secrets, set target policies. The command line's only way to change them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from .auth import App, KeyHasher
from .errors import InvalidRequest, UnknownApplication
from .keys import new_key
from .signing import SERVER_SECRET, new_signing_secret
from .store.apps import AppStore
from .targets import Rules

DEFAULT_APP = "default"
MAX_NAME_LENGTH = 100


class Created(NamedTuple):
    """A new application, its API key and signing secret (each shown once)."""

    app: App
    key: str
    signing_secret: str


class Applications:
    def __init__(self, apps: AppStore, clock: Callable[[], float] = time.time) -> None:
        self.apps = apps
        self.clock = clock
        self.hasher = KeyHasher(apps, clock)

    async def create(self, name: str, *, admin: bool = False) -> Created:
        """A new application; an admin's console login sees every application."""
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidRequest(f"an application name has 1 to {MAX_NAME_LENGTH} characters")
        key, secret = new_key(), new_signing_secret()
        key_hash = await self.hasher.hash(key)
        row = await self.apps.create(name, key_hash, self.clock(), secret)
        if row is None:
            raise InvalidRequest(f"an application named {name!r} exists already")
        if admin:
            await self._update(name, admin=True)
            row["admin"] = True
        return Created(App.from_row(row), key, secret)

    async def list(self) -> list[App]:
        return [App.from_row(row) for row in await self.apps.list()]

    async def set_active(self, name: str, active: bool) -> None:
        await self._update(name, active=active)

    async def rotate_key(self, name: str) -> str:
        """A new API key; the old one stops working (and its console logins end)."""
        key = new_key()
        await self._update(name, key_hash=await self.hasher.hash(key))
        return key

    async def rotate_secret(self, name: str) -> str:
        """A new signing secret; the current one keeps signing too until finish_rotation."""
        secret = new_signing_secret()
        _found(await self.apps.rotate_signing_secret(name, secret), name)
        return secret

    async def finish_rotation(self, name: str) -> None:
        _found(await self.apps.finish_rotation(name), name)

    async def signing_secrets(self, name: str) -> tuple[str, ...]:
        """The application's signing secrets in use, current first."""
        row = await self.apps.by_name(name)
        if row is None:
            raise UnknownApplication(f"no application named {name!r}")
        return await self.apps.signing_secrets(row["id"], new_signing_secret)

    async def server_signing_secret(self) -> str:
        """The secret that signs tasks of no application (authentication off)."""
        return await self.apps.server_secret(SERVER_SECRET, new_signing_secret, self.clock())

    async def set_targets(
        self, name: str, allow: Iterable[str], deny: Iterable[str]
    ) -> dict[str, Any] | None:
        """Store the application's own target lists (none at all clears them);
        ValueError naming an entry that is neither a CIDR nor a host pattern."""
        lists = {"allow": _entries(allow), "deny": _entries(deny)}
        rules = Rules.parse(lists["allow"], lists["deny"])
        stored = lists if rules.has_allow or rules.deny_networks or rules.deny_hosts else None
        await self._update(name, target_policy=stored)
        return stored

    async def namespace(self, name: str | None, *, authenticate: bool) -> int:
        """The id an application's queues and schedules are kept under (the
        command line's --app); 0 for those of no application, refused when
        requests are authenticated (none land there: settings made there
        would silently apply to nothing)."""
        if name is None:
            if authenticate:
                raise InvalidRequest("name the application with --app (authentication is on)")
            return 0
        row = await self.apps.by_name(name)
        if row is None:
            raise UnknownApplication(f"no application named {name!r}")
        return int(row["id"])

    async def create_default(self) -> Created | None:
        """On a database with no application yet, make `default` (shown once)."""
        if await self.apps.count():
            return None
        try:
            return await self.create(DEFAULT_APP)
        except InvalidRequest:  # another node made it first
            return None

    async def _update(self, name: str, **values: Any) -> None:
        _found(await self.apps.update(name, **values), name)


def _entries(values: Iterable[str]) -> list[str]:
    """Entries given as repeated options or comma-separated, blanks dropped."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _found(found: bool, name: str) -> None:
    if not found:
        raise UnknownApplication(f"no application named {name!r}")
