"""Python clients of ntorque, and the verifier of its signed calls.

`Client` is the plain HTTP client (standard library only). `transaction()`
is the original's "hybrid" client, a transactional outbox: tasks are written
inside your own transaction on ntorque's database, so they exist exactly when
your other changes commit, and are notified after the commit. A lost
notification only delays them: the requeuer finds every due task.
`verify()` checks a call's Standard Webhooks signature in a web-hook receiver.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import intake
from .config import Settings
from .signing import digest, signed_content
from .store import outbox
from .targets import Policy

log = logging.getLogger(__name__)


class ClientError(Exception):
    """ntorque answered with an error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Client:
    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def enqueue(
        self,
        url: str,
        body: bytes | str = b"",
        *,
        content_type: str | None = None,
        method: str = "POST",
        timeout: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Enqueue a task; its JSON once ntorque has stored it."""
        query = {"url": url, "method": method, **({"timeout": str(timeout)} if timeout else {})}
        sent = _passthrough(headers)
        if content_type:
            sent["Content-Type"] = content_type
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self._request("POST", "/?" + urlencode(query), data, sent)

    def task(self, task_id: int) -> dict[str, Any]:
        return self._request("GET", f"/task/{task_id}")

    def push(self, task_id: int) -> dict[str, Any]:
        """Notify a task again (e.g. one added through the outbox)."""
        return self._request("POST", f"/task/{task_id}/push", b"")

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        sent = dict(headers or {})
        if self.api_key:
            sent["NTORQUE-API-KEY"] = self.api_key
        request = urllib.request.Request(self.base_url + path, body, sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                result: dict[str, Any] = json.loads(answer.read())
                return result
        except urllib.error.HTTPError as error:
            raise ClientError(error.code, _error_message(error.read())) from None


def _passthrough(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Headers for the hook, named as ntorque expects them on enqueue."""
    return {f"NTORQUE-PASSTHROUGH-{name}": value for name, value in (headers or {}).items()}


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", body[:200]))
    except ValueError:
        return body[:200].decode("utf-8", "replace")


class Outbox:
    """Adds tasks with the caller's connection, inside the caller's transaction."""

    def __init__(
        self,
        client: Client,
        connection: AsyncConnection,
        *,
        default_timeout_s: int = Settings.default_timeout_s,
        max_timeout_s: float = Settings.max_due_delay_s,
    ) -> None:
        self.client = client
        self.connection = connection
        self.default_timeout_s = default_timeout_s
        self.max_timeout_s = max_timeout_s
        self.ids: list[int] = []
        self._app_ids: list[int | None] = []  # looked up once per transaction

    async def add(
        self,
        url: str,
        body: bytes = b"",
        *,
        content_type: str = "",
        method: str = "POST",
        timeout: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Write a pending task (validated like the API does); its id."""
        sent = _passthrough(headers)
        sent["Content-Type"] = content_type
        spec = intake.new_task(
            app_id=await self._app_id(),
            query={"url": url, "method": method, "timeout": str(timeout or "")},
            headers=sent,
            body=body,
            default_timeout_s=self.default_timeout_s,
            max_timeout_s=self.max_timeout_s,
            policy=Policy(),
        )
        task_id = await outbox.insert_task(self.connection, spec, time.time())
        self.ids.append(task_id)
        return task_id

    async def _app_id(self) -> int | None:
        if not self._app_ids:
            self._app_ids.append(await self._find_app_id())
        return self._app_ids[0]

    async def _find_app_id(self) -> int | None:
        if not self.client.api_key:
            return None
        app_id = await outbox.active_app_id(self.connection, self.client.api_key)
        if app_id is None:
            raise ClientError(401, "the API key belongs to no active application")
        return app_id


@contextlib.asynccontextmanager
async def transaction(client: Client, engine: AsyncEngine) -> AsyncIterator[Outbox]:
    """`async with transaction(client, engine) as outbox:` — use outbox.connection
    for your own statements and outbox.add() for tasks; after the commit the
    tasks are pushed. Nothing is pushed when the block raises (rolled back)."""
    async with engine.begin() as connection:
        outbox = Outbox(client, connection)
        yield outbox
    for task_id in outbox.ids:
        try:
            await asyncio.to_thread(client.push, task_id)
        except (OSError, ClientError) as error:
            log.warning("task %s not pushed (the requeuer will find it): %s", task_id, error)


# -- verifying signed calls (Standard Webhooks) --------------------------------

DEFAULT_TOLERANCE_S = 300


class SignatureError(Exception):
    """A call's signature does not hold: answer it 4xx and ignore it."""


def verify(
    secrets: str | Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> str:
    """Check a signed call; its webhook-id (for de-duplication) when it holds.

    `secrets` is your "whsec_..." secret (or several, while you rotate);
    `headers` the request's headers (any case); `body` its raw bytes, exactly
    as received, before any parsing. The timestamp must be within
    tolerance_s of now, either way, so a recorded call cannot be replayed
    later. Raises SignatureError otherwise.
    """
    found = {name.lower(): value for name, value in headers.items()}
    msg_id, stamp = found.get("webhook-id", ""), found.get("webhook-timestamp", "")
    if not (msg_id and stamp and found.get("webhook-signature")):
        raise SignatureError("the webhook-id, -timestamp and -signature headers are required")
    timestamp = _timestamp(stamp, time.time() if now is None else now, tolerance_s)
    signed = signed_content(msg_id, timestamp, body)
    expected = [digest(secret, signed) for secret in _secrets(secrets)]
    matched = False
    for given in _signatures(found["webhook-signature"]):
        for wanted in expected:  # every pair is compared: no early exit on a secret
            matched |= hmac.compare_digest(given, wanted)
    if not matched:
        raise SignatureError("no signature matches")
    return msg_id


def _timestamp(text: str, now: float, tolerance_s: float) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise SignatureError("webhook-timestamp is not a number of seconds")
    timestamp = int(text)
    if timestamp < now - tolerance_s:
        raise SignatureError("webhook-timestamp is too old")
    if timestamp > now + tolerance_s:
        raise SignatureError("webhook-timestamp is in the future")
    return timestamp


def _secrets(secrets: str | Iterable[str]) -> list[str]:
    found = [secrets] if isinstance(secrets, str) else list(secrets)
    if not found:
        raise ValueError("verify() needs at least one signing secret")
    return found


def _signatures(header: str) -> list[bytes]:
    """The v1 signatures of a webhook-signature header (others are skipped)."""
    found = []
    for item in header.split():
        version, _, encoded = item.partition(",")
        if version != "v1":
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            continue
    return found
