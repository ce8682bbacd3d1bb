"""Pure: when a task asked to be called first (delay= or eta=), and the
times the API reads (ISO 8601 with an offset, or epoch seconds)."""

from __future__ import annotations

import math
import time
from datetime import datetime

from .errors import InvalidRequest

# An eta this far in the past is taken as "now" (clocks differ a little, and
# a request takes time); further back it is a mistake.
PAST_TOLERANCE_S = 5.0


def due(
    delay: str | float | None, eta: str | float | None, ahead_s: float, now: float | None
) -> float | None:
    """The due date asked for, or None (now). 400 for both, for an eta in the
    past beyond PAST_TOLERANCE_S, or beyond max_schedule_ahead_s."""
    if _blank(delay) and _blank(eta):
        return None
    if not _blank(delay) and not _blank(eta):
        raise InvalidRequest("give delay or eta, not both", field="eta")
    now = time.time() if now is None else now
    ahead = ahead_s
    if delay is not None and not _blank(delay):
        seconds = _number(delay, "delay")
        if not 0 <= seconds <= ahead:
            raise InvalidRequest(f"delay must be between 0 and {ahead:.15g} seconds", field="delay")
        return now + seconds
    assert eta is not None
    when = parse_time(eta, "eta")
    if when < now - PAST_TOLERANCE_S:
        raise InvalidRequest("eta is in the past", field="eta")
    if when > now + ahead:
        raise InvalidRequest(f"eta is more than {ahead:.15g} seconds ahead", field="eta")
    return max(when, now)


def parse_time(value: str | float, field: str) -> float:
    """Epoch seconds, or an ISO 8601 time with an offset, as epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _finite(value, field)
    text = str(value).strip()
    try:
        return _finite(text, field)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{field} must be an ISO 8601 time with an offset, or epoch seconds", field=field
        ) from None
    if parsed.tzinfo is None:
        raise InvalidRequest(f"{field} needs an offset (Z or +hh:mm)", field=field)
    return parsed.timestamp()


def _number(value: str | float, field: str) -> float:
    try:
        return _finite(value, field)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{field} must be a number of seconds", field=field) from None


def _finite(value: str | float, field: str) -> float:
    """float(value), within ±1e11 (past year 5000: not a time). A whole
    number too large for a float (JSON has them) is out of range too."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or abs(number) > 1e11:
        raise InvalidRequest(f"{field} is out of range", field=field)
    return number


def _blank(value: str | float | None) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
