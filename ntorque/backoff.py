"""Pure: how long a task waits after a failed attempt.

With min_due_delay 2 s and max_due_delay 7200 s, exponential waits 2, 4, 8,
16 ... seconds and stays at 7200 from the 13th attempt; linear waits 2, 4,
6, 8 ... seconds.
"""

from __future__ import annotations


def delay_s(attempts: int, *, kind: str, min_s: float, max_s: float) -> float:
    """The wait after the `attempts`-th failed attempt (attempts >= 1)."""
    attempts = max(attempts, 1)
    if kind == "linear":
        return float(min(min_s * attempts, max_s))
    # Cap the exponent: 2**64 * min_s is far past any max_s, and stays a float.
    return float(min(min_s * 2.0 ** min(attempts - 1, 64), max_s))
