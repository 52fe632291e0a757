"""Working-calendar deadline arithmetic: hand-checked cases and properties (two time zones)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.calendar_config import WorkingCalendar
from core.city import City, load_city
from streams.calendar import (
    add_working_seconds,
    deadline,
    elapsed,
    fraction_used,
    from_working_clock,
    is_working_day,
    shift_for_pause,
    to_working_clock,
    working_seconds_between,
)

CITIES = Path(__file__).resolve().parents[2] / "config" / "cities"
SH = ZoneInfo("Asia/Shanghai")
LA = ZoneInfo("America/Los_Angeles")
HOUR = 3600
US = 1e-6  # one microsecond: datetimes carry no finer time

SAMPLE_CAL = load_city(CITIES / "sample.yaml").calendar
LA_CAL = load_city(CITIES / "la.yaml").calendar
PLAIN_SH = WorkingCalendar(timezone="Asia/Shanghai")
# periods across the DST changes (02:00 local) and no weekend: stresses wall-clock mapping
LA_NIGHT = WorkingCalendar(
    timezone="America/Los_Angeles",
    work_periods=[(time(0, 30), time(1, 30)), (time(1, 45), time(3, 15)), (time(22), time(23))],
    weekend=[],
    holidays=[date(2025, 12, 25)],
)
CALENDARS = [SAMPLE_CAL, LA_CAL, LA_NIGHT]


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)  # type: ignore[misc]


def la(*args: int) -> datetime:
    return datetime(*args, tzinfo=LA)  # type: ignore[misc]


# --- hand-checked examples ------------------------------------------------------------------


def test_friday_afternoon_rolls_over_the_weekend() -> None:
    # Fri 16:00-17:30 is 1.5 h, the remaining 0.5 h ends Mon 09:00
    assert deadline(PLAIN_SH, sh(2025, 3, 7, 16), 2, "working_hours") == sh(2025, 3, 10, 9)
    assert working_seconds_between(PLAIN_SH, sh(2025, 3, 7, 16), sh(2025, 3, 10, 9)) == 2 * HOUR


def test_deadline_on_a_period_end_stays_there() -> None:
    assert deadline(PLAIN_SH, sh(2025, 3, 7, 16), 1.5, "working_hours") == sh(2025, 3, 7, 17, 30)
    assert deadline(PLAIN_SH, sh(2025, 3, 5, 10), 2, "working_hours") == sh(2025, 3, 5, 12)


def test_lunch_break() -> None:
    # reported during lunch: counting starts at 14:00
    assert deadline(PLAIN_SH, sh(2025, 3, 5, 12, 30), 1, "working_hours") == sh(2025, 3, 5, 15)
    start, due = sh(2025, 3, 5, 10), sh(2025, 3, 5, 12)
    # a 12:00 deadline has used exactly its limit through the break, and is exceeded after
    assert fraction_used(PLAIN_SH, start, due, sh(2025, 3, 5, 13), "working_hours") == 1.0
    assert fraction_used(PLAIN_SH, start, due, sh(2025, 3, 5, 14, 30), "working_hours") == 1.25
    assert fraction_used(PLAIN_SH, start, due, sh(2025, 3, 5, 11), "working_hours") == 0.5


def test_holiday_monday_is_skipped() -> None:
    # 2025-06-02 (Mon) is 端午 in the sample city's calendar
    assert not is_working_day(SAMPLE_CAL, date(2025, 6, 2))
    assert deadline(SAMPLE_CAL, sh(2025, 5, 30, 16), 2, "working_hours") == sh(2025, 6, 3, 9)


def test_adjusted_saturday_counts() -> None:
    # 2025-02-08 (Sat) is a 调休 working day after 春节
    assert is_working_day(SAMPLE_CAL, date(2025, 2, 8))
    assert not is_working_day(SAMPLE_CAL, date(2025, 2, 9))
    assert deadline(SAMPLE_CAL, sh(2025, 2, 7, 16), 2, "working_hours") == sh(2025, 2, 8, 9)


def test_working_days_are_duty_hours_and_skip_golden_week() -> None:
    assert SAMPLE_CAL.hours_per_working_day == 7.0
    # 15 working days = 105 working hours = three plain weeks
    assert deadline(PLAIN_SH, sh(2025, 3, 7, 16), 15, "working_days") == sh(2025, 3, 28, 16)
    # Tue 30 Sep 10:00: 5.5 h that day, Oct 1-8 off, 1.5 h on Thu 9 Oct
    assert deadline(SAMPLE_CAL, sh(2025, 9, 30, 10), 1, "working_days") == sh(2025, 10, 9, 10)
    assert deadline(SAMPLE_CAL, sh(2025, 9, 30, 10), 0.5, "working_days") == sh(2025, 9, 30, 15, 30)


def test_natural_hours_cross_midnight_and_dst() -> None:
    got = deadline(SAMPLE_CAL, sh(2025, 10, 3, 22, 30), 3, "natural_hours")
    assert got == sh(2025, 10, 4, 1, 30) and got.tzinfo is UTC
    # LA springs forward at 02:00 on 2025-03-09: 6 elapsed hours end at 05:00 PDT
    assert deadline(LA_CAL, la(2025, 3, 8, 22), 6, "natural_hours") == la(2025, 3, 9, 5)
    assert elapsed(LA_CAL, la(2025, 3, 8, 22), la(2025, 3, 9, 5), "natural_hours") == 6 * HOUR


def test_la_calendar_and_dst_days() -> None:
    assert not is_working_day(LA_CAL, date(2018, 1, 15))  # MLK Day
    assert deadline(LA_CAL, la(2018, 1, 12, 16), 2, "working_hours") == la(2018, 1, 16, 9)
    assert LA_CAL.hours_per_working_day == 8.0
    # spring forward: 01:45-03:15 wall is 30 real minutes; fall back: 01:45 is the PDT one
    day = working_seconds_between(LA_NIGHT, la(2025, 3, 9), la(2025, 3, 10))
    assert day == (1 + 0.5 + 1) * HOUR
    day = working_seconds_between(LA_NIGHT, la(2025, 11, 2), la(2025, 11, 3))
    assert day == (1 + 2.5 + 1) * HOUR
    assert working_seconds_between(LA_NIGHT, la(2025, 12, 25), la(2025, 12, 26)) == 0


def test_pause_shifts_by_the_paused_working_time() -> None:
    due = deadline(PLAIN_SH, sh(2025, 3, 5, 9), 8, "working_hours")  # Thu 10:00
    assert due == sh(2025, 3, 6, 10)
    # paused Wed 11:00-15:00: 1 h + 1 h of working time, so Thu 12:00; 4 natural hours
    got = shift_for_pause(PLAIN_SH, due, sh(2025, 3, 5, 11), sh(2025, 3, 5, 15), "working_hours")
    assert got == sh(2025, 3, 6, 12)
    got = shift_for_pause(PLAIN_SH, due, sh(2025, 3, 5, 11), sh(2025, 3, 5, 15), "natural_hours")
    assert got == sh(2025, 3, 6, 14)


def test_clock_round_trip_lands_on_working_instants() -> None:
    for t, first in [
        (sh(2025, 3, 5, 12, 30), sh(2025, 3, 5, 14)),
        (sh(2025, 3, 5, 12), sh(2025, 3, 5, 14)),
        (sh(2025, 3, 8, 10), sh(2025, 3, 10, 8, 30)),
        (sh(2025, 3, 5, 9, 15, 7), sh(2025, 3, 5, 9, 15, 7)),
    ]:
        assert from_working_clock(PLAIN_SH, to_working_clock(PLAIN_SH, t)) == first
    assert to_working_clock(PLAIN_SH, sh(2020, 1, 1)) == 0.0
    assert to_working_clock(PLAIN_SH, sh(2019, 12, 31, 17, 30)) == 0.0
    assert to_working_clock(PLAIN_SH, sh(2019, 12, 31, 16, 30)) == -HOUR


def test_rejects_naive_datetimes_and_bad_input() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_working_clock(PLAIN_SH, datetime(2025, 3, 5, 9))
    with pytest.raises(ValueError, match="naive"):
        elapsed(PLAIN_SH, datetime(2025, 3, 5, 9), sh(2025, 3, 5, 9), "natural_hours")
    with pytest.raises(ValueError):
        add_working_seconds(PLAIN_SH, sh(2025, 3, 5, 9), -1)
    with pytest.raises(ValueError, match="unit"):
        deadline(PLAIN_SH, sh(2025, 3, 5, 9), 1, "fortnights")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"work_periods": [("08:00", "12:00"), ("11:00", "13:00")]}, "overlap"),
        ({"work_periods": [("14:00", "17:00"), ("08:00", "12:00")]}, "sorted"),
        ({"work_periods": [("12:00", "08:00")]}, "start must be before end"),
        ({"work_periods": []}, "at least one"),
        ({"weekend": [6, 8]}, "ISO weekday"),
        ({"weekend": list(range(1, 8))}, "no working time"),
        ({"holidays": ["2025-02-08"], "adjusted_workdays": ["2025-02-08"]}, "both"),
        ({"adjusted_workdays": ["2025-02-07"]}, "weekend day"),
    ],
)
def test_calendar_validation(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorkingCalendar.model_validate({"timezone": "Asia/Shanghai", **fields})


def test_city_calendar_defaults_to_city_timezone() -> None:
    base = {"code": "X", "name": "X", "districts": [], "categories": []}
    assert City.model_validate(base).calendar == PLAIN_SH
    la_city = City.model_validate({**base, "timezone": "America/Los_Angeles"})
    assert la_city.calendar == WorkingCalendar(timezone="America/Los_Angeles")
    with pytest.raises(ValidationError, match="calendar timezone"):
        City.model_validate({**base, "calendar": {"timezone": "America/Los_Angeles"}})


def test_yaml_calendars() -> None:
    assert SAMPLE_CAL.timezone == "Asia/Shanghai" and LA_CAL.timezone == "America/Los_Angeles"
    assert date(2026, 2, 28) in SAMPLE_CAL.adjusted_workdays
    assert len(SAMPLE_CAL.holidays) == len(set(SAMPLE_CAL.holidays)) == 61
    assert LA_CAL.work_periods == ((time(8), time(12)), (time(13), time(17)))


# --- properties -----------------------------------------------------------------------------

LO, HI = datetime(2024, 6, 1, tzinfo=UTC), datetime(2027, 6, 1, tzinfo=UTC)
calendars = st.sampled_from(CALENDARS)
MAX_WORK = 40 * 8 * HOUR  # 40 working days of the longest calendar
instants = st.integers(0, int((HI - LO).total_seconds() * 1e6)).map(
    lambda us: LO + timedelta(microseconds=us)
)
whole_second_instants = st.integers(0, int((HI - LO).total_seconds())).map(
    lambda s: LO + timedelta(seconds=s)
)
durations = st.integers(0, MAX_WORK * 10**6).map(lambda us: us / 1e6)
whole_seconds = st.integers(0, MAX_WORK).map(float)
units = st.sampled_from(["working_hours", "working_days", "natural_hours"])
PROPS = settings(max_examples=150, deadline=None)


def reference_working_seconds(cal: WorkingCalendar, a: datetime, b: datetime) -> float:
    """Slow and obvious: clip each local day's periods (in UTC) to [a, b)."""
    tz = ZoneInfo(cal.timezone)
    a, b = a.astimezone(UTC), b.astimezone(UTC)
    total = 0.0
    d = a.astimezone(tz).date()
    while d <= b.astimezone(tz).date():
        if is_working_day(cal, d):
            prev_end = a  # a period squeezed by a DST gap starts no earlier than the last end
            for s, e in cal.work_periods:
                start = datetime.combine(d, s, tzinfo=tz).astimezone(UTC)
                end = datetime.combine(d, e, tzinfo=tz).astimezone(UTC)
                lo = max(start, prev_end)
                hi = min(max(end, lo), b)
                total += max((hi - lo).total_seconds(), 0.0)
                prev_end = max(end, prev_end)
        d += timedelta(days=1)
    return total


@PROPS
@given(calendars, instants, instants)
def test_matches_the_reference(cal: WorkingCalendar, a: datetime, b: datetime) -> None:
    a, b = min(a, b), max(a, b)
    if (b - a) > timedelta(days=60):
        b = a + timedelta(days=60)
    assert working_seconds_between(cal, a, b) == pytest.approx(
        reference_working_seconds(cal, a, b), abs=US
    )


@PROPS
@given(calendars, instants, durations)
def test_add_then_measure_round_trips(cal: WorkingCalendar, start: datetime, s: float) -> None:
    end = add_working_seconds(cal, start, s)
    assert end >= start and end.tzinfo is UTC
    assert abs(working_seconds_between(cal, start, end) - s) <= US
    if s > 0:  # not before counting begins: the first working instant at or after start
        assert end > from_working_clock(cal, to_working_clock(cal, start))


@PROPS
@given(calendars, instants, durations, durations)
def test_add_is_monotone(cal: WorkingCalendar, start: datetime, s1: float, s2: float) -> None:
    s1, s2 = min(s1, s2), max(s1, s2)
    assert add_working_seconds(cal, start, s1) <= add_working_seconds(cal, start, s2)


@PROPS
@given(calendars, whole_second_instants, whole_seconds, whole_seconds)
def test_add_is_additive(cal: WorkingCalendar, start: datetime, a: float, b: float) -> None:
    twice = add_working_seconds(cal, add_working_seconds(cal, start, a), b)
    assert twice == add_working_seconds(cal, start, a + b)


@PROPS
@given(calendars, instants, durations, st.floats(0, 1), st.floats(0, 1), units)
def test_pause_shift_equals_paused_time(
    cal: WorkingCalendar, start: datetime, s: float, u: float, v: float, unit: str
) -> None:
    if unit == "natural_hours":
        original = start + timedelta(seconds=s)
    else:
        original = add_working_seconds(cal, start, s)
    span = original - start
    p0 = start + span * min(u, v)
    p1 = start + span * max(u, v)
    shifted = shift_for_pause(cal, original, p0, p1, unit)  # type: ignore[arg-type]
    gained = elapsed(cal, start, shifted, unit) - elapsed(cal, start, original, unit)  # type: ignore[arg-type]
    assert abs(gained - elapsed(cal, p0, p1, unit)) <= 2 * US  # type: ignore[arg-type]


@PROPS
@given(calendars, instants, instants)
def test_clock_is_monotone_and_measures(cal: WorkingCalendar, a: datetime, b: datetime) -> None:
    a, b = min(a, b), max(a, b)
    wa, wb = to_working_clock(cal, a), to_working_clock(cal, b)
    assert wa <= wb
    assert abs((wb - wa) - working_seconds_between(cal, a, b)) <= US


@PROPS
@given(calendars, instants)
def test_clock_inverse_is_first_working_instant(cal: WorkingCalendar, t: datetime) -> None:
    w = to_working_clock(cal, t)
    first = from_working_clock(cal, w)
    assert first >= t - timedelta(microseconds=1)
    assert abs(to_working_clock(cal, first) - w) <= US
    local = first.astimezone(ZoneInfo(cal.timezone))
    assert is_working_day(cal, local.date())
    wall = local.time().replace(tzinfo=None)
    assert any(s <= wall < e for s, e in cal.work_periods) or cal is LA_NIGHT  # DST-squeezed
    # nothing working in between: measuring from t or from first is the same
    assert working_seconds_between(cal, t, first) <= US


@PROPS
@given(calendars, instants, durations, durations, units)
def test_fraction_used(
    cal: WorkingCalendar, start: datetime, s: float, n: float, unit: str
) -> None:
    amount = s / HOUR
    due = deadline(cal, start, amount, unit)  # type: ignore[arg-type]
    now = deadline(cal, start, n / HOUR, unit)  # type: ignore[arg-type]
    f = fraction_used(cal, start, due, now, unit)  # type: ignore[arg-type]
    if s > 1:
        # both instants are rounded to 1 µs: the ratio's error scales with 1/s
        assert f == pytest.approx(n / s, abs=2 * US * (1 + n / s) / s)
        assert fraction_used(cal, start, due, due, unit) == pytest.approx(1.0)  # type: ignore[arg-type]
