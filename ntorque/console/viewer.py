"""Who is looking at the console: the application of the signed login
cookie (its own tasks), one that sees all, or everyone when auth is off."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import tornado.web

from ..store.apps import AppStore
from ..tasks import Task

COOKIE = "ntorque_console"
COOKIE_DAYS = 1


@dataclass(frozen=True)
class Viewer:
    name: str
    app_id: int | None
    sees_all: bool

    @property
    def scope(self) -> int | None:
        """The app id whose tasks are shown; None for every application's."""
        return None if self.sees_all else self.app_id

    @property
    def namespace(self) -> int:
        """Whose named queues the console shows and pauses: the viewer's own
        application's (an admin's too, as the API's /queues); 0 when auth is
        off, like the API's."""
        return self.app_id or 0

    def may_see(self, task: Task) -> bool:
        return self.sees_all or task.app_id == self.app_id


EVERYONE = Viewer("everyone", None, True)


def key_tag(secret: str, key_hash: str) -> str:
    """Ties a login to the key it was made with: a new key logs every session out."""
    return hmac.new(secret.encode(), key_hash.encode(), hashlib.sha256).hexdigest()[:32]


def login_cookie(secret: str, app_id: int, key_hash: str) -> bytes:
    """The signed cookie value of a login."""
    value = f"{app_id}:{key_tag(secret, key_hash)}"
    return tornado.web.create_signed_value(secret, COOKIE, value)


async def viewer_of(cookie: str | None, secret: str, apps: AppStore) -> Viewer | None:
    """The viewer a signed login cookie stands for, while its application is
    active and its key unchanged; None otherwise."""
    value = tornado.web.decode_signed_value(secret, COOKIE, cookie, max_age_days=COOKIE_DAYS)
    app_id, _, tag = (value or b"").decode("ascii", "replace").partition(":")
    if not app_id.isdigit():
        return None
    row = await apps.by_id(int(app_id))
    if row is None or not row["active"]:
        return None
    if not hmac.compare_digest(tag, key_tag(secret, row["key_hash"])):
        return None
    return Viewer(row["name"], row["id"], bool(row["admin"]))
