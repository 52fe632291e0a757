"""A city's working calendar: the configuration that case time limits are counted on.

Limits are given in working hours, working days or natural hours. Working time is the
union of the daily work periods (local wall-clock times) on working days; a working day is
a weekday that is not a holiday, or a weekend day listed as an adjusted workday (调休).
The arithmetic lives in ``streams.calendar``; this module only validates the config.

The model is frozen and its collections are tuples so that it is hashable: the arithmetic
caches per-calendar and per-day data keyed by the calendar itself.
"""

from __future__ import annotations

from datetime import date, time

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator, model_validator

from core.types import TimeZoneName

SECONDS_PER_HOUR = 3600
ISO_SATURDAY, ISO_SUNDAY = 6, 7
DEFAULT_WORK_PERIODS: tuple[tuple[time, time], ...] = (
    (time(8, 30), time(12, 0)),
    (time(14, 0), time(17, 30)),
)
DEFAULT_WEEKEND: tuple[int, ...] = (ISO_SATURDAY, ISO_SUNDAY)
ISO_WEEKDAYS = range(1, 8)


def _wall_seconds(t: time) -> float:
    """Seconds since local midnight of a wall-clock time."""
    return t.hour * SECONDS_PER_HOUR + t.minute * 60 + t.second + t.microsecond / 1e6


class WorkingCalendar(BaseModel):
    """Work periods, weekend, holidays and adjusted workdays of one city, in its timezone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: TimeZoneName
    work_periods: tuple[tuple[time, time], ...] = DEFAULT_WORK_PERIODS
    weekend: tuple[int, ...] = DEFAULT_WEEKEND  # ISO weekday numbers, 1 = Monday
    holidays: tuple[date, ...] = ()  # days off, even when they fall on a weekday
    adjusted_workdays: tuple[date, ...] = ()  # 调休: weekend days that are working days
    _hash: int = PrivateAttr(default=0)

    @field_validator("work_periods")
    @classmethod
    def _ordered_periods(cls, v: tuple[tuple[time, time], ...]) -> tuple[tuple[time, time], ...]:
        if not v:
            raise ValueError("a calendar needs at least one work period")
        for start, end in v:
            if start.tzinfo is not None or end.tzinfo is not None:
                raise ValueError("work periods are local wall-clock times, without an offset")
            if not start < end:
                raise ValueError(f"work period {start}-{end}: start must be before end")
        for (_, prev_end), (start, _) in zip(v, v[1:], strict=False):
            if start < prev_end:
                raise ValueError("work periods must be sorted and must not overlap")
        return v

    @field_validator("weekend")
    @classmethod
    def _iso_weekdays(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(d not in ISO_WEEKDAYS for d in v) or len(set(v)) != len(v):
            raise ValueError("weekend must list distinct ISO weekday numbers 1..7")
        if len(v) == len(ISO_WEEKDAYS):
            raise ValueError("a calendar whose every day is weekend has no working time")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _consistent_days(self) -> WorkingCalendar:
        both = sorted(set(self.holidays) & set(self.adjusted_workdays))
        if both:
            raise ValueError(f"dates both holiday and adjusted workday: {both}")
        weekdays = [d for d in self.adjusted_workdays if d.isoweekday() not in self.weekend]
        if weekdays:
            raise ValueError(f"adjusted workdays must fall on a weekend day: {weekdays}")
        return self

    def model_post_init(self, __context: object) -> None:
        # hashed once: the arithmetic's caches hash the calendar on every call
        self._hash = hash(
            (self.timezone, self.work_periods, self.weekend, self.holidays, self.adjusted_workdays)
        )

    def __hash__(self) -> int:
        # read the slot directly: pydantic's private-attribute lookup costs ~2 µs per call
        return self.__pydantic_private__["_hash"]  # type: ignore[index, no-any-return]

    @property
    def hours_per_working_day(self) -> float:
        """Working hours in one working day: the length of a 'working day' as a duration."""
        return self.seconds_per_working_day / SECONDS_PER_HOUR

    @property
    def seconds_per_working_day(self) -> float:
        """Sum of the work periods' wall-clock lengths, in seconds."""
        return sum(_wall_seconds(e) - _wall_seconds(s) for s, e in self.work_periods)
