"""Figures from what the load generator sent and what the receiver recorded.

- lost: enqueued (201) but never answered 200 by the receiver.
- duplicates: 200 answers beyond the first for one task (one task = one n).
- latency: the task's first hook call arriving minus the `t` the load
  generator put in its body just before sending the POST (both wall clocks
  of this machine): enqueue round trip + queueing + dispatch.
- end to end: tasks / (last 200 answer - first POST sent).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from .loadgen import Sent
from .receiver import Record


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of unsorted values (nan when there are none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def calls_by_task(records: Sequence[Record]) -> dict[int, list[Record]]:
    """Each task's calls, in arrival order."""
    calls: dict[int, list[Record]] = defaultdict(list)
    for record in sorted(records, key=lambda record: record[4]):
        calls[record[0]].append(record)
    return calls


def summarize(sent: Sent, records: Sequence[Record]) -> dict[str, Any]:
    calls = calls_by_task(records)
    answered = {n for n, made in calls.items() if any(call[5] == 200 for call in made)}
    latencies_ms = [(made[0][4] - made[0][3]) * 1000 for made in calls.values()]
    last_ok = max((call[4] for call in records if call[5] == 200), default=sent.last_s)
    accepted = len(sent.accepted)
    return {
        "tasks": accepted,
        "refused": sent.refused,
        "hook_calls": len(records),
        "enqueue_per_s": round(sent.enqueue_per_s, 1),
        "end_to_end_per_s": round(accepted / max(last_ok - sent.first_s, 1e-9), 1),
        "seconds": round(last_ok - sent.first_s, 3),
        "latency_ms": {f"p{p}": round(percentile(latencies_ms, p), 2) for p in (50, 95, 99)},
        "enqueue_round_trip_ms": {
            f"p{p}": round(percentile(sent.round_trips_s, p) * 1000, 2) for p in (50, 99)
        },
        "duplicates": sum(max(0, sum(c[5] == 200 for c in made) - 1) for made in calls.values()),
        "lost": len(set(sent.accepted) - answered),
    }


def expected_delay_s(failures: int, min_s: float, max_s: float) -> float:
    """The documented exponential backoff after the `failures`-th failed attempt."""
    return float(min(min_s * 2.0 ** (failures - 1), max_s))


def retry_schedule(
    records: Sequence[Record], min_s: float, max_s: float, tolerance_s: float
) -> dict[str, Any]:
    """Each retry's gap after the previous call, against the backoff delay.

    Early: the gap is shorter than the delay minus the tolerance. Late: how
    much longer than the delay it was. A retry count header that does not
    count the calls made so far is a mismatch.
    """
    early, mismatched, late_ms = 0, 0, []
    for made in calls_by_task(records).values():
        for number, call in enumerate(made):
            mismatched += call[2] != number
            if number:
                gap = call[4] - made[number - 1][4]
                expected = expected_delay_s(number, min_s, max_s)
                early += gap < expected - tolerance_s
                late_ms.append((gap - expected) * 1000)
    return {
        "retries": len(late_ms),
        "early": early,
        "retry_count_header_mismatches": mismatched,
        "late_ms": {f"p{p}": round(percentile(late_ms, p), 1) for p in (50, 99, 100)},
        "on_schedule": early == 0 and mismatched == 0,
    }
