"""When a task asked to be called first: delay= or eta=, and the times the API
reads. Pure: each bound on either side, and each bad input a 400 naming its
field."""

from __future__ import annotations

import pytest

from ntorque import schedule
from ntorque.errors import InvalidRequest

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
AHEAD = 30 * 86400.0


def due(delay: str | float | None = None, eta: str | float | None = None) -> float | None:
    return schedule.due(delay, eta, AHEAD, NOW)


def refused(field: str, delay: str | float | None = None, eta: str | float | None = None) -> str:
    with pytest.raises(InvalidRequest) as caught:
        due(delay, eta)
    assert caught.value.field == field, caught.value.message
    return caught.value.message


def test_neither_is_now() -> None:
    assert due() is None
    assert due("", " ") is None


@pytest.mark.parametrize(
    ("delay", "expected"),
    [("0", NOW), ("1.5", NOW + 1.5), (" 60 ", NOW + 60), (str(AHEAD), NOW + AHEAD), (60, NOW + 60)],
)
def test_delay_counts_from_now(delay: str | float, expected: float) -> None:
    assert due(delay) == expected


@pytest.mark.parametrize("delay", ["-1", "-0.001", str(AHEAD + 1), "1e9"])
def test_delay_is_bounded(delay: str) -> None:
    assert "between 0 and 2592000 seconds" in refused("delay", delay=delay)


@pytest.mark.parametrize(
    "delay", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "9" * 400, float("nan")]
)
def test_delay_that_is_no_finite_number_is_out_of_range(delay: str | float) -> None:
    assert refused("delay", delay=delay) == "delay is out of range"


@pytest.mark.parametrize("delay", ["soon", "0x10", "1,5", "5s", "\x00"])
def test_delay_must_be_a_number(delay: str) -> None:
    assert refused("delay", delay=delay) == "delay must be a number of seconds"


def test_both_delay_and_eta_are_refused() -> None:
    assert refused("eta", delay="1", eta=str(NOW + 60)) == "give delay or eta, not both"


@pytest.mark.parametrize(
    ("eta", "expected"),
    [
        (str(NOW + 60), NOW + 60),
        (NOW + 60, NOW + 60),
        (int(NOW) + 60, NOW + 60),
        ("2027-01-15T08:01:00Z", NOW + 60),
        ("2027-01-15T08:01:00+00:00", NOW + 60),
        ("2027-01-15T09:01:00+01:00", NOW + 60),
        ("2027-01-14T22:31:00-09:30", NOW + 60),
        ("2027-01-15 08:01:00Z", NOW + 60),
        ("2027-01-15T08:01:00.500000Z", NOW + 60.5),
        ("20270115T080100Z", NOW + 60),
        (str(NOW - 4), NOW),  # within the tolerance: now
    ],
)
def test_eta_formats(eta: str | float, expected: float) -> None:
    assert due(eta=eta) == expected


def test_eta_bounds() -> None:
    assert due(eta=NOW + AHEAD) == NOW + AHEAD
    assert refused("eta", eta=NOW + AHEAD + 1) == "eta is more than 2592000 seconds ahead"
    assert refused("eta", eta=NOW - 6) == "eta is in the past"
    assert refused("eta", eta="0001-01-01T00:00:00+23:59") == "eta is in the past"
    assert "ahead" in refused("eta", eta="9999-12-31T23:59:59-23:59")


@pytest.mark.parametrize(
    "eta", ["nan", "inf", "-inf", "1e400", "1e12", float("inf"), 10**400, -(10**400)]
)
def test_eta_out_of_range(eta: str | float) -> None:
    # 10**400: a JSON whole number too large for a float (an OverflowError before)
    assert refused("eta", eta=eta) == "eta is out of range"


@pytest.mark.parametrize(
    "eta",
    ["tomorrow", "2027-13-45T00:00:00Z", "2027-01-15T25:00:00Z", "Fri, 15 Jan 2027 08:01 GMT"],
)
def test_eta_that_is_no_time(eta: str) -> None:
    message = refused("eta", eta=eta)
    assert message == "eta must be an ISO 8601 time with an offset, or epoch seconds"


@pytest.mark.parametrize("eta", ["2027-01-15T08:01:00", "2027-01-15"])
def test_eta_needs_an_offset(eta: str) -> None:
    assert refused("eta", eta=eta) == "eta needs an offset (Z or +hh:mm)"


def test_parse_time_names_the_field_it_reads() -> None:
    assert schedule.parse_time("1970-01-01T00:00:10Z", "created_after") == 10.0
    with pytest.raises(InvalidRequest) as caught:
        schedule.parse_time(10**400, "created_before")
    assert caught.value.field == "created_before"
