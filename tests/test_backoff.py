"""The retry delay after each failed attempt."""

from __future__ import annotations

import pytest

from ntorque import backoff

# -- backoff ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(0, 2), (1, 2), (2, 4), (3, 8), (4, 16), (12, 4096), (13, 7200), (36, 7200), (10_000, 7200)],
)
def test_exponential_backoff(attempts: int, expected: float) -> None:
    delay = backoff.delay_s(attempts, kind="exponential", min_s=2, max_s=7200)
    assert delay == expected
    assert type(delay) is float


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(0, 2), (1, 2), (2, 4), (3, 6), (36, 72), (3599, 7198), (3600, 7200), (10_000, 7200)],
)
def test_linear_backoff(attempts: int, expected: float) -> None:
    delay = backoff.delay_s(attempts, kind="linear", min_s=2, max_s=7200)
    assert delay == expected
    assert type(delay) is float


def test_backoff_with_fractional_delays() -> None:
    assert backoff.delay_s(3, kind="exponential", min_s=0.5, max_s=1.5) == 1.5
    assert backoff.delay_s(2, kind="exponential", min_s=0.5, max_s=1.5) == 1.0
    assert backoff.delay_s(2, kind="linear", min_s=0.25, max_s=10) == 0.5
