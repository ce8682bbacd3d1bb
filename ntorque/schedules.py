"""Pure: recurring schedules. A rule (a cron expression in an IANA time
zone, or every N seconds), the ticks it makes, which ticks a firing makes
after a gap (catch_up), a schedule's settings from JSON and its JSON. No I/O:
store/schedules.py keeps them, ticker.py fires them, api/schedules.py serves
them.

Cron expressions are read by cronsim (Debian cron's rules, daylight-saving
changes included: a job at a time skipped by the clock change runs at the
first time after it, and a time that happens twice runs once). Ticks are
instants (UTC seconds) and strictly increasing, which is what makes a tick's
task unique in the database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import InvalidRequest
from .tasks import NewTask, iso

MAX_CRON_CHARS = 200
MAX_TIMEZONE_CHARS = 64
MIN_EVERY_S = 1.0
MAX_EVERY_S = 366 * 86400.0
MAX_NAME_CHARS = 100
CATCH_UPS = ("latest", "all", "none")
# "all" makes at most this many of the ticks missed in a gap, the most recent
# ones: a schedule paused for a month must not flood its queue.
MAX_CATCH_UP = 100
# "none" still makes a tick this late (a restart, a busy round); an older
# one was missed and is skipped.
FRESH_S = 60.0
SHOWN_TICKS = 5  # the next fire times a schedule's JSON lists
# Steps one search for a tick may take before it gives up (cron) or jumps
# (a long gap): each step is a few tens of microseconds.
MAX_STEPS = 1_000

# How far back a search for a cron rule's latest ticks looks (cronsim finds
# none beyond 50 years either).
MAX_LOOK_BACK_S = 50 * 366 * 86400.0
# cronsim's walk backwards over a clock change that is not on the hour
# (Pacific/Chatham's, at 03:45) can go round without end: a step of the walk
# that takes more steps of its clock than this (a usual one takes under 200,
# a few milliseconds) is given up.
MAX_CLOCK_STEPS = 2_000

RULE_FIELDS = ("cron", "timezone", "every_s")
FIELDS = ("name", *RULE_FIELDS, "catch_up", "paused", "task")


@dataclass(frozen=True)
class Rule:
    """When a schedule ticks: cron in timezone, or every every_s seconds
    counted from anchor (a tick falls at anchor + k * every_s, k >= 1)."""

    cron: str | None = None
    timezone: str = "UTC"
    every_s: float | None = None
    anchor: float = 0.0

    def after(self, t: float) -> float | None:
        """The first tick strictly after t; None when there is none (cron
        finds none within 50 years)."""
        if self.every_s is not None:
            passed, anchor = self._intervals(t)
            return _ms_time(anchor + max(passed + 1, 1) * _ms(self.every_s))
        assert self.cron is not None
        ticks = CronSim(self.cron, datetime.fromtimestamp(t, self.zone))
        for _ in range(MAX_STEPS):
            try:
                tick = next(ticks).timestamp()
            except StopIteration:
                return None
            if tick > t:  # a repeated wall time maps to an earlier instant: skip it
                return tick
        return None

    def latest(self, t: float, count: int, since: float = -math.inf) -> list[float]:
        """Up to count of the most recent ticks in [since, t], oldest first."""
        if self.every_s is not None:
            passed, anchor = self._intervals(t)
            every, first = _ms(self.every_s), max(passed - count + 1, 1)
            ticks = [_ms_time(anchor + k * every) for k in range(first, passed + 1)]
            return [tick for tick in ticks if tick >= since]
        # A gap of a few ticks is walked forwards, from since. Past that (a
        # frequent rule, a long gap), back count ticks (cron can walk
        # backwards), then forwards again, so that the ticks are the
        # instants after() gives.
        assert self.cron is not None
        floor = max(since - 0.001, t - MAX_LOOK_BACK_S)  # ticks are whole milliseconds
        found, complete = self._walk(floor, t, max(4 * count, 64))
        if complete:
            return found[-count:]
        back = _Backwards(self.cron, datetime.fromtimestamp(t, self.zone))
        start = t
        for _ in range(count):
            try:
                start = min(start, next(back).timestamp())
            except (StopIteration, OverflowError):  # none in 50 years; year 1; going round
                break
            if start <= floor:
                break
        return [tick for tick in self.between(max(start - 1.0, floor), t)[-count:]]

    def _intervals(self, t: float) -> tuple[int, int]:
        """(whole intervals from the anchor to t, the anchor), in integer
        milliseconds: float steps drift, and a tick read back must be the
        same tick, never one a hair later."""
        anchor = _ms(self.anchor)
        return (math.floor(t * 1000 + 1e-3) - anchor) // _ms(self.every_s or 1), anchor

    def between(self, start: float, end: float) -> list[float]:
        """The ticks in (start, end], oldest first (at most MAX_STEPS)."""
        return self._walk(start, end, MAX_STEPS)[0]

    def _walk(self, start: float, end: float, limit: int) -> tuple[list[float], bool]:
        """The ticks in (start, end], at most limit of them, and whether
        that is all of them."""
        found: list[float] = []
        tick = self.after(start)
        while tick is not None and tick <= end:
            if len(found) == limit:
                return found, False
            found.append(tick)
            tick = self.after(tick)
        return found, True

    def upcoming(self, t: float, count: int = SHOWN_TICKS) -> list[float]:
        found: list[float] = []
        tick = self.after(t)
        while tick is not None and len(found) < count:
            found.append(tick)
            tick = self.after(tick)
        return found

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def describe(self) -> str:
        """The rule in words, as the console shows it."""
        if self.every_s is not None:
            return f"Every {_seconds(self.every_s)}"
        assert self.cron is not None
        words = CronSim(self.cron, datetime.fromtimestamp(0, self.zone)).explain()
        return f"{words} ({self.timezone})"


class _Backwards(CronSim):
    """cronsim's walk backwards, which ends (StopIteration) where one step of
    it goes round without end. Only a long gap of a frequent rule walks
    backwards (a short one is walked forwards): across Chatham's clock
    change, such a catch-up makes the ticks after the change."""

    def __init__(self, expr: str, dt: datetime) -> None:
        super().__init__(expr, dt, reverse=True)
        self._steps = 0

    def __next__(self) -> datetime:
        self._steps = 0
        return super().__next__()

    def tick(self, seconds: int = 1) -> None:
        self._steps += 1
        if self._steps > MAX_CLOCK_STEPS:
            raise StopIteration
        super().tick(seconds)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _ms_time(milliseconds: int) -> float:
    return milliseconds / 1000


def _seconds(every_s: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if every_s >= size and every_s % size == 0:
            count = int(every_s // size)
            return f"{count} {unit}s" if count != 1 else unit
    return f"{every_s:g} seconds" if every_s != 1 else "second"


@dataclass(frozen=True)
class Firing:
    """What one firing of a schedule does: the ticks it makes tasks for,
    those it skips, and its next tick afterwards."""

    ticks: list[float]
    skipped: int
    next_tick: float | None


def plan(rule: Rule, catch_up: str, next_tick: float, now: float) -> Firing:
    """The firing of a schedule whose next tick (next_tick <= now) is due.
    latest: one task, for the most recent tick; all: every tick missed since
    next_tick (the MAX_CATCH_UP most recent); none: the most recent tick only
    if it is at most FRESH_S late."""
    count = MAX_CATCH_UP if catch_up == "all" else 1
    ticks = rule.latest(now, count, since=next_tick) or [next_tick]
    if catch_up == "none" and now - ticks[-1] > FRESH_S:
        ticks = []
    made_or_passed = _passed(rule, next_tick, now)
    return Firing(ticks, max(made_or_passed - len(ticks), 0), rule.after(now))


def _passed(rule: Rule, next_tick: float, now: float) -> int:
    """How many ticks fell in [next_tick, now] (counted up to MAX_STEPS)."""
    return 1 + len(rule.between(next_tick, now))


def check_rule(body: Mapping[str, Any], current: Rule | None, now: float) -> Rule:
    """The rule the body gives (exactly one of cron and every_s; timezone
    with cron), else the current one. A new or changed rule counts from now."""
    given = [name for name in RULE_FIELDS if name in body]
    if not given:
        if current is None:
            raise InvalidRequest("give cron (with timezone) or every_s", field="cron")
        return current
    cron, every_s = body.get("cron"), body.get("every_s")
    if current is not None and "cron" not in body and "every_s" not in body:
        cron = current.cron  # a new time zone alone
    if cron is None and every_s is None:
        raise InvalidRequest("give cron (with timezone) or every_s", field="cron")
    if cron is not None and every_s is not None:
        raise InvalidRequest("give cron or every_s, not both", field="every_s")
    if every_s is not None:
        if "timezone" in body:
            raise InvalidRequest("timezone goes with cron, not every_s", field="timezone")
        return Rule(every_s=_every(every_s), anchor=math.floor(now))
    zone = body.get("timezone", current.timezone if current and current.cron else "UTC")
    rule = Rule(cron=_cron(cron), timezone=_timezone(zone))
    try:
        first = rule.after(now)
    except (CronSimError, ValueError, IndexError, OverflowError) as error:
        raise InvalidRequest(f"cron: {error}", field="cron") from None
    if first is None:
        raise InvalidRequest("this cron expression never fires", field="cron")
    return rule


def _cron(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(
            "cron must be a cron expression (5 fields, or 6 with seconds first)", field="cron"
        )
    if len(value) > MAX_CRON_CHARS:
        raise InvalidRequest(f"cron is longer than {MAX_CRON_CHARS} characters", field="cron")
    text = " ".join(value.split())
    if len(text.split()) not in (5, 6):
        raise InvalidRequest("cron must have 5 fields, or 6 with seconds first", field="cron")
    try:
        CronSim(text, datetime(2000, 1, 1))
    except (CronSimError, ValueError, IndexError) as error:
        raise InvalidRequest(f"cron: {error}", field="cron") from None
    return text


def _timezone(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TIMEZONE_CHARS:
        raise InvalidRequest(
            "timezone must be an IANA time zone name, like Europe/Paris", field="timezone"
        )
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidRequest(f"unknown time zone {value!r}", field="timezone") from None
    return value


def _every(value: Any) -> float:
    # An integer is compared as it is: JSON's have no bound, and one too big
    # for a float is no float's to check (math.isfinite raised OverflowError).
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if isinstance(value, bool) or not finite:
        raise InvalidRequest("every_s must be a number of seconds", field="every_s")
    if not MIN_EVERY_S <= value <= MAX_EVERY_S:
        raise InvalidRequest(
            f"every_s must be between {MIN_EVERY_S:g} and {MAX_EVERY_S:g} seconds", field="every_s"
        )
    return _ms(value) / 1000  # ticks are whole milliseconds


@dataclass(frozen=True)
class Settings:
    """What a schedule's owner sets, the task template aside."""

    rule: Rule
    name: str | None = None
    catch_up: str = "latest"
    paused: bool = False


def settings_from_json(body: Any, current: Settings | None, now: float) -> Settings:
    """A new schedule's settings (current None), or the current ones with
    the fields given changed (PATCH). 400 naming the field otherwise."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0][:40]!r}", field=unknown[0][:40])
    base = current or Settings(rule=Rule())
    return replace(
        base,
        rule=check_rule(body, current.rule if current else None, now),
        name=_name(body["name"]) if "name" in body else base.name,
        catch_up=_catch_up(body["catch_up"]) if "catch_up" in body else base.catch_up,
        paused=_paused(body["paused"]) if "paused" in body else base.paused,
    )


def check_name(value: Any) -> str:
    """A schedule's name: its handle within the application."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise InvalidRequest(f"name must be 1 to {MAX_NAME_CHARS} characters", field="name")
    if not value.isprintable():
        raise InvalidRequest("name must be printable text", field="name")
    return value


def _name(value: Any) -> str | None:
    return None if value is None else check_name(value)


def _catch_up(value: Any) -> str:
    if value not in CATCH_UPS:
        raise InvalidRequest("catch_up must be latest, all or none", field="catch_up")
    return str(value)


def _paused(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest("paused must be true or false", field="paused")
    return value


@dataclass(frozen=True)
class Template:
    """The task each tick makes (as NewTask holds it, less app, due and
    schedule): stored as JSON with the schedule."""

    url: str
    method: str
    timeout_s: int | None
    body: bytes
    content_type: str
    charset: str
    headers: tuple[tuple[str, str], ...]
    queue: str
    retries: int | None
    backoff: str | None
    callback_url: str | None

    @classmethod
    def of(cls, spec: NewTask) -> Template:
        """The template of a validated task (its app and due date aside)."""
        return cls(
            url=spec.url, method=spec.method, timeout_s=spec.timeout_s, body=spec.body,
            content_type=spec.content_type, charset=spec.charset, headers=spec.headers,
            queue=spec.queue, retries=spec.retries, backoff=spec.backoff,
            callback_url=spec.callback_url,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """As the schedule's JSON shows it (the body by size, as a task's)."""
        return {
            "url": self.url,
            "method": self.method,
            "queue": self.queue,
            "timeout": self.timeout_s,
            "retries": self.retries,
            "backoff": self.backoff,
            "callback": self.callback_url,
            "content_type": self.content_type,
            "charset": self.charset or None,
            "headers": dict(self.headers),
            "body_size": len(self.body),
        }


@dataclass(frozen=True)
class Schedule:
    """A stored schedule."""

    id: int
    app_id: int  # 0: requests are not authenticated
    settings: Settings
    template: Template
    next_tick: float | None  # the next tick no task was made for yet; None: never again
    last_tick: float | None
    created: float
    modified: float
    last_tasks: list[dict[str, Any]] = field(default_factory=list)  # the newest first

    @property
    def rule(self) -> Rule:
        return self.settings.rule

    def to_json(self, now: float, detail: bool = False) -> dict[str, Any]:
        """The one serialisation (API, console, CLI); detail adds the next
        fire times and the last tasks it made."""
        rule, settings = self.rule, self.settings
        data: dict[str, Any] = {
            "id": self.id,
            "name": settings.name,
            "cron": rule.cron,
            "timezone": rule.timezone if rule.cron else None,
            "every_s": rule.every_s,
            "description": rule.describe(),
            "catch_up": settings.catch_up,
            "paused": settings.paused,
            "task": self.template.to_json(),
            "next_tick": None if self.next_tick is None else iso(self.next_tick),
            "last_tick": None if self.last_tick is None else iso(self.last_tick),
            "created": iso(self.created),
            "modified": iso(self.modified),
        }
        if detail:
            if self.next_tick is not None and self.next_tick > now:
                upcoming = [self.next_tick, *rule.upcoming(self.next_tick, SHOWN_TICKS - 1)]
            else:  # paused, or due this moment: the ticks from now on
                upcoming = rule.upcoming(now)
            data["next_ticks"] = [iso(tick) for tick in upcoming]
            data["last_tasks"] = self.last_tasks
        return data
