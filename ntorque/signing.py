"""Signed web-hook calls (Standard Webhooks).

Every call carries `webhook-id` (the same for every attempt of a task),
`webhook-timestamp` (the attempt's time, integer seconds) and
`webhook-signature`: "v1," + base64 HMAC-SHA256 of "id.timestamp.body" under
each secret in use, space-separated. During a rotation an application has two
secrets, and both sign. A secret is "whsec_" + base64 of random bytes; the
HMAC key is the decoded bytes. Tasks of no application (authentication off)
are signed with the server-wide secret `signing_secret`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence

from .cache import TtlCache
from .store.apps import AppStore
from .tasks import Task

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
SERVER_SECRET = "signing_secret"  # the name in server_secrets
MAX_CACHED_APPS = 10_000


def new_signing_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a "whsec_..." secret stands for; ValueError if it is none."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a signing secret is 'whsec_' followed by base64") from None
    if not key:
        raise ValueError("a signing secret must not be empty")
    return key


def signed_content(message_id: str, timestamp: int, body: bytes) -> bytes:
    """What is signed: "id.timestamp.body", the body as its raw bytes."""
    return b"%s.%d.%s" % (message_id.encode(), timestamp, body)


def digest(secret: str, content: bytes) -> bytes:
    """HMAC-SHA256 of signed content under a "whsec_..." secret."""
    return hmac.new(secret_key(secret), content, hashlib.sha256).digest()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One "v1,<base64>" signature of a call."""
    signed = digest(secret, signed_content(message_id, timestamp, body))
    return "v1," + base64.b64encode(signed).decode()


def message_id(task: Task) -> str:
    """Stable across a task's attempts; the creation time (microseconds) keeps
    ids from different deployments, or a reset database, apart."""
    return f"msg_{task.id}_{round(task.created * 1_000_000)}"


def signature_headers(
    secrets_in_use: Sequence[str], task: Task, timestamp: int, body: bytes | None = None
) -> dict[str, str]:
    msg_id = message_id(task)
    signed = task.body if body is None else body
    signatures = [signature(secret, msg_id, timestamp, signed) for secret in secrets_in_use]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }


class Signer:
    """The signature headers of each attempt; secrets cached for cache_s."""

    def __init__(
        self,
        apps: AppStore,
        *,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.apps = apps
        self.wall = wall
        self._cache: TtlCache[int | None, tuple[str, ...]] = TtlCache(
            cache_s, max_entries=MAX_CACHED_APPS, clock=clock
        )

    async def headers(self, task: Task, body: bytes | None = None) -> dict[str, str]:
        """The headers of a call carrying body (the task's own when None)."""
        in_use = await self.secrets_for(task.app_id)
        if not in_use:
            return {}
        return signature_headers(in_use, task, int(self.wall()), body)

    async def secrets_for(self, app_id: int | None) -> tuple[str, ...]:
        """The application's secrets, newest first (the server's for no application)."""
        return await self._cache.get(app_id, lambda: self._load(app_id))

    async def _load(self, app_id: int | None) -> tuple[str, ...]:
        if app_id is None:
            return (await self.apps.server_secret(SERVER_SECRET, new_signing_secret, self.wall()),)
        return await self.apps.signing_secrets(app_id, new_signing_secret)
