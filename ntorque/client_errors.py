"""What the clients raise for an error answer: one class per status the API
answers (see "Errors" in the README), all of them a `ClientError`. Pure: no I/O.

Catch `ClientError` for any error answer, or one subclass for the case your
code can act on (`NotFound`, `Conflict`, `Unavailable` ... ). A network failure
(no answer at all) is an `OSError`, not one of these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


class ClientError(Exception):
    """ntorque answered with an error: `status`, `message` (the JSON "error"),
    `data` (the whole JSON error), and where one input is at fault, `field`
    (or a batch's `errors`). `retry_after_s`: the wait a 429 or 503 asks for."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
        data: Mapping[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.field = field
        self.errors = list(errors)
        self.data = dict(data or {})
        self.retry_after_s = retry_after_s


class ValidationError(ClientError):
    """400: the request is malformed or out of bounds; `field` (or a batch's
    `errors`) names the input at fault. Sending it again will not help."""


class KeyReused(ValidationError):
    """422: this idempotency key was used before with another url, method or body."""


class Unauthorized(ClientError):
    """401: no valid API key (missing, wrong or revoked)."""


class NotFound(ClientError):
    """404: no such task, queue or schedule, or one of another application's."""


class Conflict(ClientError):
    """409: its state forbids this (cancel a finished task, delete a queue in use)."""


class PayloadTooLarge(ClientError):
    """413: the body is larger than the server takes (max_body_bytes)."""


class TooManyRequests(ClientError):
    """429: too many failed keys from this address; try again after `retry_after_s`."""


class Unavailable(ClientError):
    """503: the database is away and nothing was changed; try again after
    `retry_after_s`."""


BY_STATUS: dict[int, type[ClientError]] = {
    400: ValidationError,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: KeyReused,
    429: TooManyRequests,
    503: Unavailable,
}


def client_error(status: int, headers: Mapping[str, str], body: bytes) -> ClientError:
    """The exception an error answer means (headers' names in lower case); a
    status without a class of its own (405, a proxy's 502 ...) is a ClientError."""
    kind = BY_STATUS.get(status, ClientError)
    wait = retry_after_s(headers.get("retry-after"))
    try:
        data = json.loads(body)
    except ValueError:
        return kind(status, body[:200].decode("utf-8", "replace"), retry_after_s=wait)
    if not isinstance(data, dict):
        return kind(status, str(data)[:200], retry_after_s=wait)
    message, field = str(data.get("error", "")), data.get("field")
    errors = data.get("errors") or ()
    return kind(status, message, field=field, errors=errors, data=data, retry_after_s=wait)


def retry_after_s(header: str | None) -> float | None:
    """Retry-After in seconds (ntorque sends seconds; a date is not read)."""
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None
