"""Pure data: a named queue's settings (validated from JSON), its live
figures, and its JSON. No I/O here: store/queues.py reads and writes them,
api/queues.py serves them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest
from .tasks import BACKOFFS, DEFAULT_QUEUE, iso

QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
QUEUE_NAME_RULE = "queue must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' and '-'"
MAX_CONCURRENCY = 10_000
MAX_RATE_PER_S = 10_000.0
# One call a day fits; a slower rate is a pause. Bounded below because the
# acquire divides by it and multiplies it by a fraction of a second: near
# the smallest floats, PostgreSQL's double precision arithmetic raises
# (overflow, underflow) and every acquire holding one of its tasks fails.
MIN_RATE_PER_S = 0.00001
MAX_BURST = 10_000
RECENT_S = 300.0  # the window of the completed and failed figures

SETTINGS = (
    "max_concurrency", "rate_per_s", "burst", "paused", "retries", "backoff", "timeout",
)  # fmt: skip


@dataclass(frozen=True)
class QueueSettings:
    """What a queue's owner sets; None: no limit, or the server's default."""

    max_concurrency: int | None = None  # calls in flight at once, across every node
    rate_per_s: float | None = None  # calls started per second, across every node
    burst: int | None = None  # calls started at once after a quiet spell (with rate_per_s)
    paused: bool = False
    retries: int | None = None  # defaults for its tasks; a task's own values win
    backoff: str | None = None
    timeout_s: int | None = None

    @property
    def limited(self) -> bool:
        """Its acquire must count: paused, or a concurrency or rate limit."""
        return self.paused or self.max_concurrency is not None or self.rate_per_s is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "paused": self.paused,
            "max_concurrency": self.max_concurrency,
            "rate_per_s": self.rate_per_s,
            "burst": self.burst,
            "retries": self.retries,
            "backoff": self.backoff,
            "timeout": self.timeout_s,
        }


@dataclass(frozen=True)
class Figures:
    """A queue's live figures, as of `now`."""

    pending: int = 0  # waiting to be called: due now, later, or for a retry
    due_now: int = 0  # due, not yet started (or their lease ran out)
    in_flight: int = 0  # being called, their lease running
    completed_recently: int = 0  # in the last RECENT_S
    failed_recently: int = 0
    oldest_due: float | None = None  # the due date of the longest-waiting due task

    def to_json(self, now: float) -> dict[str, Any]:
        age = None if self.oldest_due is None else round(max(now - self.oldest_due, 0.0), 3)
        return {
            "pending": self.pending,
            "due_now": self.due_now,
            "in_flight": self.in_flight,
            "completed_5m": self.completed_recently,
            "failed_5m": self.failed_recently,
            "oldest_due_age_s": age,
        }


@dataclass(frozen=True)
class NamedQueue:
    """A queue of one application: its settings and figures."""

    app_id: int  # 0: requests are not authenticated
    name: str
    settings: QueueSettings = QueueSettings()
    figures: Figures = Figures()
    configured: bool = False  # it has a stored row (settings, or a task named it)
    created: float | None = None
    modified: float | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.settings.to_json(),
            "figures": self.figures.to_json(now),
            "created": None if self.created is None else iso(self.created),
            "modified": None if self.modified is None else iso(self.modified),
        }


def check_name(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name):
        raise InvalidRequest(QUEUE_NAME_RULE, field="queue")
    return name


def settings_from_json(
    data: Any, *, max_retries: int, max_timeout_s: float, base: QueueSettings | None = None
) -> QueueSettings:
    """Settings from a PUT body (base None: every field not given is reset)
    or a PATCH body (base: the current settings, changed where given)."""
    if not isinstance(data, Mapping):
        raise InvalidRequest("the body must be a JSON object of queue settings")
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise InvalidRequest(f"unknown setting {unknown[0]!r}", field=unknown[0])
    old = base or QueueSettings()

    def kept(field: str, value: Any, was: Any) -> Any:
        """PUT takes the value (null when not given); PATCH only what is given."""
        return value if base is None or field in data else was

    paused = _flag(data, "paused")
    settings = QueueSettings(
        max_concurrency=kept(
            "max_concurrency",
            _whole(data, "max_concurrency", 1, MAX_CONCURRENCY),
            old.max_concurrency,
        ),
        rate_per_s=kept("rate_per_s", _rate(data), old.rate_per_s),
        burst=kept("burst", _whole(data, "burst", 1, MAX_BURST), old.burst),
        paused=kept("paused", bool(paused), old.paused),
        retries=kept("retries", _whole(data, "retries", 1, max_retries), old.retries),
        backoff=kept("backoff", _backoff(data), old.backoff),
        timeout_s=kept("timeout", _whole(data, "timeout", 1, int(max_timeout_s)), old.timeout_s),
    )
    return _with_burst(settings, burst_given=data.get("burst") is not None)


def _with_burst(settings: QueueSettings, burst_given: bool) -> QueueSettings:
    """A rate limit's burst defaults to one second's worth of calls."""
    if settings.rate_per_s is None:
        if burst_given and settings.burst is not None:
            raise InvalidRequest("burst needs a rate_per_s", field="burst")
        return dataclasses.replace(settings, burst=None)
    if settings.burst is None:
        return dataclasses.replace(settings, burst=max(1, math.ceil(settings.rate_per_s)))
    return settings


def _whole(data: Mapping[str, Any], field: str, low: int, high: int) -> int | None:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{field} must be a whole number from {low} to {high}", field=field)
    return value


def _rate(data: Mapping[str, Any]) -> float | None:
    value = data.get("rate_per_s")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        # A JSON integer has no bound: math.isfinite raised OverflowError
        # (a 500) on one too large for a float; the range check refuses it.
        or (isinstance(value, float) and not math.isfinite(value))
        or not MIN_RATE_PER_S <= value <= MAX_RATE_PER_S
    ):
        error = f"rate_per_s must be a number from {MIN_RATE_PER_S:.5f} to {MAX_RATE_PER_S:g}"
        raise InvalidRequest(error, field="rate_per_s")
    return float(value)


def _flag(data: Mapping[str, Any], field: str) -> bool | None:
    value = data.get(field)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"{field} must be true or false", field=field)
    return value


def _backoff(data: Mapping[str, Any]) -> str | None:
    value = data.get("backoff")
    if value is not None and value not in BACKOFFS:
        raise InvalidRequest(f"backoff must be one of {', '.join(BACKOFFS)}", field="backoff")
    return value if value is None else str(value)


__all__ = ["DEFAULT_QUEUE", "Figures", "NamedQueue", "QueueSettings", "settings_from_json"]
