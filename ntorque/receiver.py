"""What a web-hook receiver needs: verify() checks a call's Standard Webhooks
signature (see `signing` for how ntorque signs). Re-exported by ntorque.client.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Iterable, Mapping

from .signing import digest, signed_content

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
