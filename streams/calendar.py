"""Deadline arithmetic on a city's working calendar (``core.calendar_config``).

Everything goes through a *working clock*: the working seconds elapsed between local
midnight of ``CLOCK_EPOCH`` (in the calendar's timezone) and an instant. It is monotone
non-decreasing, flat outside working time, and its slope is 1 inside work periods, so

* working time between a and b  = clock(b) - clock(a),
* a deadline ``s`` working seconds after ``a`` = the earliest instant whose clock is
  clock(a) + s,

and a service holding ~1 M open cases can keep each case's start and deadline as floats on
this clock: elapsed time, fraction used and pause shifts become float arithmetic.

Work periods are local wall-clock times, turned into instants per local day through the
timezone database, so days with a DST change get the right amount of working time.
Per-day intervals are built a calendar year at a time and cached (``lru_cache``); after
that a clock conversion is a bisect and a loop over one day's periods, whatever the span.

Conventions:

* Periods are half-open ``[start, end)``: 12:00 with a 08:30-12:00 period is not working.
* A deadline landing exactly on a period end stays there (e.g. Friday 17:30, not Monday
  08:30): it is the earliest instant at which the allowed working time has elapsed.
* ``working_days`` limits count ``amount * hours_per_working_day`` working hours from the
  start instant, not "the same clock time n working days later". This is how 数字城管
  case systems convert 工作日 limits into working time (one 工作日 = the day's duty hours),
  and it makes fractional limits (0.5 工作日) and pauses uniform with working hours.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from core.calendar_config import SECONDS_PER_HOUR, WorkingCalendar

Unit = Literal["working_hours", "working_days", "natural_hours"]
UNITS: tuple[Unit, ...] = ("working_hours", "working_days", "natural_hours")

CLOCK_EPOCH = date(2020, 1, 1)
"""Local date whose midnight is working-clock zero; recent, so clock floats stay precise."""
UTC_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
"""Instants are handled as float seconds since this; ~1e8 s keeps sub-microsecond ulps."""
TYPICAL_WORKING_DAYS = 250
"""Working days in a typical year: only the first guess of the year holding a clock value."""
DAYS_PER_YEAR = 365
YEAR_CACHE = 512
DAY_CACHE = 8192

Interval = tuple[float, float]


def _seconds(t: datetime) -> float:
    """An aware instant as float seconds since ``UTC_EPOCH`` (exact to the microsecond)."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t!r}: pass an aware datetime")
    d = t - UTC_EPOCH
    return d.days * 86400 + d.seconds + d.microseconds / 1e6


def _instant(x: float) -> datetime:
    """Float seconds since ``UTC_EPOCH`` as an aware UTC datetime (rounded to 1 µs)."""
    return UTC_EPOCH + timedelta(seconds=x)


def _natural_add(t: datetime, seconds: float) -> datetime:
    """``t`` plus elapsed (not wall-clock) seconds, in UTC: DST changes do not shift it."""
    _seconds(t)
    return t.astimezone(UTC) + timedelta(seconds=seconds)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=64)
def _day_sets(cal: WorkingCalendar) -> tuple[frozenset[date], frozenset[date], frozenset[int]]:
    """Holidays, adjusted workdays and weekend as sets, for O(1) membership."""
    return frozenset(cal.holidays), frozenset(cal.adjusted_workdays), frozenset(cal.weekend)


@lru_cache(maxsize=64)
def _day_seconds(cal: WorkingCalendar) -> float:
    """Length of one working day as a duration (``seconds_per_working_day``), cached."""
    return cal.seconds_per_working_day


def is_working_day(cal: WorkingCalendar, d: date) -> bool:
    """Whether local date ``d`` has working time: 调休 days yes, holidays and weekends no."""
    holidays, adjusted, weekend = _day_sets(cal)
    if d in adjusted:
        return True
    return d not in holidays and d.isoweekday() not in weekend


@lru_cache(maxsize=DAY_CACHE)
def day_intervals(cal: WorkingCalendar, d: date) -> tuple[Interval, ...]:
    """The working intervals of local date ``d`` as (start, end) seconds since ``UTC_EPOCH``.

    Each wall-clock period is mapped through the timezone; a period squeezed by a DST gap
    is clipped so the intervals stay ordered and disjoint.
    """
    if not is_working_day(cal, d):
        return ()
    tz = _zone(cal.timezone)
    out: list[Interval] = []
    floor = -math.inf
    for start, end in cal.work_periods:
        s = max(_seconds(datetime.combine(d, start, tzinfo=tz)), floor)
        e = max(_seconds(datetime.combine(d, end, tzinfo=tz)), s)
        if e > s:
            out.append((s, e))
        floor = e
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Year:
    """One local calendar year: per-day intervals and cumulative working seconds."""

    first: int  # ordinal of 1 January
    start: float  # working clock at local midnight of 1 January
    days: tuple[tuple[Interval, ...], ...]
    cum: tuple[float, ...]  # cum[i] = working seconds from 1 Jan 00:00 to day i; len = days+1

    @property
    def total(self) -> float:
        return self.cum[-1]


@lru_cache(maxsize=YEAR_CACHE)
def _year_days(cal: WorkingCalendar, year: int) -> tuple[tuple[Interval, ...], ...]:
    first = date(year, 1, 1).toordinal()
    n = date(year + 1, 1, 1).toordinal() - first if year < date.max.year else DAYS_PER_YEAR
    return tuple(day_intervals(cal, date.fromordinal(first + i)) for i in range(n))


def _total(days: tuple[tuple[Interval, ...], ...]) -> float:
    return sum(e - s for ivs in days for s, e in ivs)


@lru_cache(maxsize=YEAR_CACHE)
def _year(cal: WorkingCalendar, year: int) -> _Year:
    """The year's tables, including its clock offset (a sum over the years since the epoch)."""
    days = _year_days(cal, year)
    if year >= CLOCK_EPOCH.year:
        start = sum(_total(_year_days(cal, y)) for y in range(CLOCK_EPOCH.year, year))
    else:
        start = -sum(_total(_year_days(cal, y)) for y in range(year, CLOCK_EPOCH.year))
    cum = [0.0]
    for ivs in days:
        cum.append(cum[-1] + sum(e - s for s, e in ivs))
    return _Year(first=date(year, 1, 1).toordinal(), start=start, days=days, cum=tuple(cum))


def _year_start(cal: WorkingCalendar, year: int) -> float:
    """Working clock at local midnight of 1 January ``year``."""
    return _year(cal, year).start


def to_working_clock(cal: WorkingCalendar, t: datetime) -> float:
    """Working seconds from local midnight of ``CLOCK_EPOCH`` to ``t`` (negative before)."""
    x = _seconds(t)
    d = t.astimezone(_zone(cal.timezone)).date()
    yr = _year(cal, d.year)
    i = d.toordinal() - yr.first
    w = yr.start + yr.cum[i]
    for s, e in yr.days[i]:
        if x <= s:
            break
        w += (e if x >= e else x) - s
    return w


def _find_year(cal: WorkingCalendar, w: float, right: bool) -> int:
    """The year holding clock value ``w``: start <= w < next start (right) or start < w <= next."""
    per_year = _day_seconds(cal) * TYPICAL_WORKING_DAYS
    y = CLOCK_EPOCH.year + math.floor(w / per_year)
    y = min(max(y, date.min.year), date.max.year)

    def before(a: float) -> bool:  # w lies before clock value a (a start of year)
        return w < a if right else w <= a

    while before(_year_start(cal, y)):
        y -= 1
    while not before(_year_start(cal, y + 1)):
        y += 1
    return y


def _clock_to_seconds(cal: WorkingCalendar, w: float, right: bool) -> float:
    """The instant (seconds since ``UTC_EPOCH``) where the clock reaches ``w``.

    ``right``: the first working instant with clock ``w`` (a period start, not the end of
    the previous one). Otherwise the earliest instant with clock ``w`` (a period end stays).
    """
    y = _find_year(cal, w, right)
    yr = _year(cal, y)
    rel = w - yr.start
    i = (bisect_right(yr.cum, rel) if right else bisect_left(yr.cum, rel)) - 1
    i = min(max(i, 0), len(yr.days) - 1)
    acc = yr.cum[i]
    ivs = yr.days[i]
    for s, e in ivs:
        length = e - s
        if rel < acc + length or (not right and rel <= acc + length):
            return s + max(rel - acc, 0.0)
        acc += length
    return ivs[-1][1]  # float round-off at the day's end


def from_working_clock(cal: WorkingCalendar, w: float) -> datetime:
    """The first working instant whose working clock is ``w`` (UTC); inverse of the clock."""
    return _instant(_clock_to_seconds(cal, w, right=True))


def working_seconds_between(cal: WorkingCalendar, a: datetime, b: datetime) -> float:
    """Working seconds in [a, b); 0 when b <= a."""
    return max(to_working_clock(cal, b) - to_working_clock(cal, a), 0.0)


def add_working_seconds(cal: WorkingCalendar, start: datetime, seconds: float) -> datetime:
    """The (UTC) instant at which ``seconds`` of working time have elapsed since ``start``.

    Outside working time counting begins at the next period start; zero seconds is ``start``.
    """
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    x0 = _seconds(start)
    if seconds == 0:
        return _instant(x0)
    x = _clock_to_seconds(cal, to_working_clock(cal, start) + seconds, right=False)
    return _instant(max(x, x0))


def limit_seconds(cal: WorkingCalendar, amount: float, unit: Unit) -> float:
    """A limit in seconds of the unit's own measure (working or natural seconds)."""
    if unit == "working_hours" or unit == "natural_hours":
        return amount * SECONDS_PER_HOUR
    if unit == "working_days":
        return amount * _day_seconds(cal)
    raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")


def deadline(cal: WorkingCalendar, start: datetime, amount: float, unit: Unit) -> datetime:
    """When a limit of ``amount`` ``unit`` started at ``start`` runs out (UTC).

    Natural hours are a plain timedelta; working days are ``amount * hours_per_working_day``
    working hours (see the module docstring).
    """
    seconds = limit_seconds(cal, amount, unit)
    if unit == "natural_hours":
        return _natural_add(start, seconds)
    return add_working_seconds(cal, start, seconds)


def elapsed(cal: WorkingCalendar, start: datetime, now: datetime, unit: Unit) -> float:
    """Seconds used since ``start`` in the unit's measure: natural or working seconds."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")
    if unit == "natural_hours":  # via UTC: same-zone datetimes subtract by wall clock
        return max(_seconds(now) - _seconds(start), 0.0)
    return working_seconds_between(cal, start, now)


def fraction_used(
    cal: WorkingCalendar, start: datetime, deadline: datetime, now: datetime, unit: Unit
) -> float:
    """Share of the limit used at ``now``: 0 at start, 1 at the deadline, > 1 when overdue.

    A zero-length limit is 0 until any time is used, then infinite.
    """
    allowed = elapsed(cal, start, deadline, unit)
    used = elapsed(cal, start, now, unit)
    if allowed <= 0:
        return math.inf if used > 0 else 0.0
    return used / allowed


def shift_for_pause(
    cal: WorkingCalendar,
    deadline: datetime,
    pause_start: datetime,
    pause_end: datetime,
    unit: Unit,
) -> datetime:
    """``deadline`` moved later by the time (of the unit's measure) the case was paused."""
    paused = elapsed(cal, pause_start, pause_end, unit)
    if unit == "natural_hours":
        return _natural_add(deadline, paused)
    return add_working_seconds(cal, deadline, paused)
