"""Pure: schedule rules and their ticks (daylight-saving nights included),
what a firing makes after a gap, and the settings read from JSON."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ntorque.errors import InvalidRequest
from ntorque.schedules import (
    FRESH_S,
    MAX_CATCH_UP,
    Rule,
    Settings,
    plan,
    settings_from_json,
)

NOW = datetime.fromisoformat("2026-12-07T10:20:30+00:00").timestamp()


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def local(tick: float, zone: str) -> str:
    return datetime.fromtimestamp(tick, ZoneInfo(zone)).isoformat()


# -- every_s ---------------------------------------------------------------------


def test_every_s_ticks_fall_on_the_anchor_plus_whole_intervals() -> None:
    rule = Rule(every_s=60.0, anchor=1000.0)
    assert rule.after(1000.0) == 1060.0
    assert rule.after(1059.999) == 1060.0
    assert rule.after(1060.0) == 1120.0
    assert rule.after(0.0) == 1060.0  # never before the first interval has passed
    assert rule.upcoming(1000.0, 3) == [1060.0, 1120.0, 1180.0]
    assert rule.latest(1200.0, 2) == [1120.0, 1180.0]
    assert rule.latest(1059.0, 5) == []
    assert rule.between(1000.0, 1180.0) == [1060.0, 1120.0, 1180.0]


def test_every_s_with_a_fraction_still_ticks_strictly_forwards() -> None:
    rule = Rule(every_s=1.1, anchor=1_700_000_000.0)
    tick = rule.anchor
    for _ in range(2000):
        following = rule.after(tick)
        assert following is not None and following > tick
        assert math.isclose(following - tick, 1.1, abs_tol=1e-6)
        tick = following


# -- cron ------------------------------------------------------------------------


def test_cron_ticks_in_its_time_zone() -> None:
    rule = Rule(cron="0 9 * * 1-5", timezone="Europe/Paris")
    friday_evening = at("2026-12-11T18:00:00+01:00")
    assert [local(t, "Europe/Paris") for t in rule.upcoming(friday_evening, 2)] == [
        "2026-12-14T09:00:00+01:00",
        "2026-12-15T09:00:00+01:00",
    ]
    assert rule.describe() == "At 09:00 on Monday through Friday (Europe/Paris)"


def test_six_fields_put_seconds_first() -> None:
    rule = Rule(cron="*/20 * * * * *")
    assert rule.upcoming(at("2026-12-07T10:00:05+00:00"), 3) == [
        at("2026-12-07T10:00:20+00:00"),
        at("2026-12-07T10:00:40+00:00"),
        at("2026-12-07T10:01:00+00:00"),
    ]


def test_a_cron_that_never_fires_has_no_next_tick() -> None:
    assert Rule(cron="* * */20 * 1L").after(NOW) is None


def test_the_latest_ticks_of_a_rare_rule_stop_at_since_and_fifty_years_back() -> None:
    """The fifth Monday of February: a 29 February on a Monday, every 28
    years (2016, 2044). Back 100 of them is before the year 1 (walking there
    raised OverflowError): a search looks back 50 years at most, and a
    firing only to its next tick."""
    rule = Rule(cron="0 0 * 2 MON#5")
    leap_monday = at("2044-02-29T00:00:00+00:00")
    every = rule.latest(leap_monday + 60, MAX_CATCH_UP)
    assert every == [at("2016-02-29T00:00:00+00:00"), leap_monday]
    assert rule.latest(leap_monday + 60, MAX_CATCH_UP, since=leap_monday - 1) == [leap_monday]
    firing = plan(rule, "all", leap_monday, leap_monday + 60)
    assert firing.ticks == [leap_monday] and firing.next_tick == at("2072-02-29T00:00:00+00:00")


def test_a_catch_up_over_chathams_clock_change_ends_and_misses_nothing() -> None:
    """Pacific/Chatham's clocks go back at 03:45: cronsim's walk backwards
    over that went round for ever, so the ticker firing "every 2 hours"
    there with catch_up all hung its node (the API with it). Ticks are found
    walking forwards only: on time and over the change alike, every tick."""
    rule = Rule(cron="0 */2 * * *", timezone="Pacific/Chatham")
    first_after = at("2026-04-05T04:00:00+12:45")
    assert rule.latest(first_after + 1, MAX_CATCH_UP, since=first_after) == [first_after]
    on_time = plan(rule, "all", first_after, first_after + 0.004)
    assert (on_time.ticks, on_time.skipped) == ([first_after], 0)
    over = plan(rule, "all", at("2026-04-04T20:00:00+13:45"), first_after + 1)
    local_ticks = [local(tick, "Pacific/Chatham") for tick in over.ticks]
    assert local_ticks == [
        "2026-04-04T20:00:00+13:45", "2026-04-04T22:00:00+13:45",
        "2026-04-05T00:00:00+13:45", "2026-04-05T02:00:00+13:45",
        "2026-04-05T04:00:00+12:45",
    ]  # fmt: skip
    assert over.skipped == 0
    assert over.next_tick == at("2026-04-05T06:00:00+12:45")
    for minutes in range(-120, 180, 15):  # from around the change, each walk ends
        assert len(rule.latest(first_after + minutes * 60, 5)) <= 5


def test_the_latest_ticks_are_the_ones_after_gives() -> None:
    rule = Rule(cron="*/15 * * * *", timezone="America/New_York")
    latest = rule.latest(NOW, 4)
    assert latest == rule.between(latest[0] - 1, NOW)
    assert latest[-1] <= NOW < rule.after(latest[-1])  # type: ignore[operator]
    assert len(latest) == 4


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "Australia/Sydney"])
@pytest.mark.parametrize("cron", ["30 2 * * *", "0 2 * * *", "0 3 * * *", "45 1 * * *"])
def test_a_daily_job_runs_exactly_once_every_local_day_of_the_year(zone: str, cron: str) -> None:
    """Through both of the year's clock changes: no day skipped, none twice."""
    rule = Rule(cron=cron, timezone=zone)
    start = at("2026-01-01T00:00:00+00:00")
    ticks = rule.upcoming(start, 365)
    days = [datetime.fromtimestamp(t, ZoneInfo(zone)).date() for t in ticks]
    first = days[0]
    assert days == [first + timedelta(days=n) for n in range(365)]


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "Australia/Lord_Howe"])
@pytest.mark.parametrize("cron", ["*/30 * * * *", "0 * * * *", "15 */2 * * *", "0 30 * * * *"])
def test_frequent_jobs_tick_at_every_real_instant_across_clock_changes(
    zone: str, cron: str
) -> None:
    """More often than hourly: ticks are real instants, strictly increasing,
    and spaced by the rule in real (UTC) time, whatever the wall clock does."""
    rule = Rule(cron=cron, timezone=zone)
    ticks = rule.between(at("2026-03-27T00:00:00+00:00"), at("2026-04-07T00:00:00+00:00"))
    ticks += rule.between(at("2026-10-23T00:00:00+00:00"), at("2026-11-03T00:00:00+00:00"))
    assert ticks == sorted(set(ticks))
    wall = {datetime.fromtimestamp(t, ZoneInfo(zone)).replace(tzinfo=None) for t in ticks}
    assert all(time.minute in (0, 15, 30) for time in wall)


def test_paris_nights_as_a_person_reads_them() -> None:
    half_past_two = Rule(cron="30 2 * * *", timezone="Europe/Paris")
    spring = half_past_two.between(at("2026-03-28T12:00:00+01:00"), at("2026-03-30T12:00:00+02:00"))
    assert [local(t, "Europe/Paris") for t in spring] == [
        "2026-03-29T03:00:00+02:00",  # 02:30 never happened: run at the first time after
        "2026-03-30T02:30:00+02:00",
    ]
    autumn = half_past_two.between(at("2026-10-24T12:00:00+02:00"), at("2026-10-26T12:00:00+01:00"))
    assert [local(t, "Europe/Paris") for t in autumn] == [
        "2026-10-25T02:30:00+02:00",  # 02:30 happened twice: once
        "2026-10-26T02:30:00+01:00",
    ]
    # Set (made, or changed) during the hour that happens twice, after the
    # first 02:30: the wall clock reads 02:15 again, but 02:30 has run.
    second_quarter_past_two = at("2026-10-25T02:15:00+01:00")
    assert local(half_past_two.after(second_quarter_past_two), "Europe/Paris") == (  # type: ignore[arg-type]
        "2026-10-26T02:30:00+01:00"
    )


# -- firing after a gap ------------------------------------------------------------

HOURLY = Rule(cron="0 * * * *")


def test_latest_makes_the_most_recent_missed_tick_only() -> None:
    firing = plan(HOURLY, "latest", at("2026-12-07T05:00:00+00:00"), NOW)
    assert firing.ticks == [at("2026-12-07T10:00:00+00:00")]
    assert firing.skipped == 5
    assert firing.next_tick == at("2026-12-07T11:00:00+00:00")


def test_an_on_time_tick_is_made_whatever_catch_up_says() -> None:
    tick = at("2026-12-07T10:00:00+00:00")
    for catch_up in ("latest", "all", "none"):
        firing = plan(HOURLY, catch_up, tick, tick + 0.004)
        assert (firing.ticks, firing.skipped) == ([tick], 0)


def test_all_makes_every_missed_tick_up_to_the_bound() -> None:
    firing = plan(HOURLY, "all", at("2026-12-07T05:00:00+00:00"), NOW)
    assert firing.ticks == [at(f"2026-12-07T{h:02}:00:00+00:00") for h in range(5, 11)]
    assert firing.skipped == 0
    every_second = Rule(every_s=1.0, anchor=NOW - 10_000)
    flood = plan(every_second, "all", NOW - 9_999, NOW)
    assert len(flood.ticks) == MAX_CATCH_UP
    assert flood.ticks[-1] == NOW and flood.next_tick == NOW + 1


def test_none_skips_a_tick_older_than_fresh_s() -> None:
    stale = plan(HOURLY, "none", at("2026-12-07T10:00:00+00:00"), NOW)
    assert stale.ticks == [] and stale.next_tick == at("2026-12-07T11:00:00+00:00")
    fresh = plan(
        HOURLY, "none", at("2026-12-07T10:00:00+00:00"), at("2026-12-07T10:00:00Z") + FRESH_S
    )
    assert fresh.ticks == [at("2026-12-07T10:00:00+00:00")]


# -- settings --------------------------------------------------------------------


def read(body: dict[str, Any], current: Settings | None = None) -> Settings:
    return settings_from_json(body, current, NOW)


def test_a_new_every_s_rule_counts_from_now() -> None:
    settings = read({"every_s": 300, "name": "sweep", "catch_up": "all"})
    assert settings.rule == Rule(every_s=300.0, anchor=math.floor(NOW))
    assert (settings.name, settings.catch_up, settings.paused) == ("sweep", "all", False)
    assert settings.rule.describe() == "Every 5 minutes"


def test_patching_keeps_what_is_not_given() -> None:
    current = read({"cron": "0 9 * * *", "timezone": "Europe/Paris", "name": "daily"})
    moved = read({"timezone": "Asia/Tokyo"}, current)
    assert moved.rule == Rule(cron="0 9 * * *", timezone="Asia/Tokyo")
    assert moved.name == "daily"
    renamed = read({"name": None, "paused": True}, current)
    assert renamed.rule == current.rule and (renamed.name, renamed.paused) == (None, True)
    switched = read({"every_s": 60}, current)
    assert (switched.rule.cron, switched.rule.every_s) == (None, 60.0)
    back = read({"cron": "*/5 * * * *"}, switched)
    assert (back.rule.cron, back.rule.timezone) == ("*/5 * * * *", "UTC")


def test_cron_text_is_normalised() -> None:
    assert read({"cron": "  0   9 * *\t1-5 "}).rule.cron == "0 9 * * 1-5"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "cron"),
        ({"cron": "0 9 * * *", "every_s": 5}, "every_s"),
        ({"cron": 5}, "cron"),
        ({"cron": "0 9 * * * * *"}, "cron"),
        ({"cron": "x" * 201}, "cron"),
        ({"cron": "0 25 * * *"}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Europe/Nowhere"}, "timezone"),
        ({"cron": "0 9 * * *", "timezone": ""}, "timezone"),
        ({"cron": "0 9 * * *", "timezone": 1}, "timezone"),
        ({"every_s": True}, "every_s"),
        ({"every_s": float("inf")}, "every_s"),
        ({"every_s": 10**400}, "every_s"),  # JSON's integers have no bound: too big for a float
        ({"every_s": -(10**400)}, "every_s"),
        ({"every_s": 0.999}, "every_s"),
        ({"every_s": 366 * 86400 + 1}, "every_s"),
        ({"every_s": 60, "catch_up": None}, "catch_up"),
        ({"every_s": 60, "name": "a\nb"}, "name"),
        ({"every_s": 60, "name": ""}, "name"),
        ({"every_s": 60, "when": "now"}, "when"),
    ],
)
def test_bad_settings_name_their_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        read(body)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("cron", "last"),
    [
        ("* * 1 * *", "2026-12-01T23:59:00+00:00"),  # every minute of the 1st
        ("* * * 1 * *", "2026-12-01T23:59:59+00:00"),  # every second of the 1st
        ("0 0 1 1 *", "2026-01-01T00:00:00+00:00"),  # once a year
    ],
)
def test_the_latest_ticks_after_a_long_quiet_spell_are_the_last_ones(cron: str, last: str) -> None:
    """Searching back from the middle of the month, past days with no tick,
    into a day too full to walk whole: the latest ticks, found quickly."""
    rule = Rule(cron=cron)
    started = time.process_time()
    found = rule.latest(at("2026-12-17T12:00:00+00:00"), MAX_CATCH_UP)
    assert time.process_time() - started < 0.5
    assert found[-1] == at(last)
    assert found == rule.between(found[0] - 0.5, found[-1])  # consecutive ticks
    # A yearly rule: the 50 of the 50 years a search looks back.
    assert len(found) == (50 if cron.startswith("0 0 1 1") else MAX_CATCH_UP)
