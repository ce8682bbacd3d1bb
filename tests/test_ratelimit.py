"""The failure limiter (ntorque.ratelimit): a token bucket of failed
authentications per client address, refilled over the window, holding at
most so many addresses. Its HTTP side (401, then 429 with Retry-After) is in
test_auth.py.
"""

from __future__ import annotations

from ntorque.ratelimit import FailureLimiter
from tests.inprocess import Clock


def test_the_limiter_allows_a_burst_then_refills() -> None:
    clock = Clock(1000.0)
    limiter = FailureLimiter(3, 60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 20  # one token per 20 s
    assert limiter.retry_after("10.0.0.2") == 0  # per address
    clock.advance(19.5)
    assert limiter.retry_after("10.0.0.1") == 1
    clock.advance(0.5)
    assert limiter.retry_after("10.0.0.1") == 0
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 20
    clock.advance(3600)  # a full bucket again, never more than the limit
    for _ in range(3):
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 20


def test_the_limiter_forgets_the_oldest_addresses() -> None:
    limiter = FailureLimiter(1, 60, max_addresses=100, clock=Clock(1000.0))
    for number in range(1000):
        limiter.failed(f"10.0.{number // 256}.{number % 256}")
    assert len(limiter._buckets) == 100
    assert limiter.retry_after("10.0.0.0") == 0  # forgotten
    assert limiter.retry_after("10.0.3.231") == 60  # the last one, remembered
