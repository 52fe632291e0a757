"""What every part of one simulation shares: the clock, random streams, grid weights, ids.

Each part draws only from its own named random stream (``World.rng``), so the parts stay
independent of each other and a seed gives the same bytes every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import TypeAdapter

from core.city import City
from sources.emission import Emission
from sources.simulator.config import EventStream, SimConfig

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIME_CACHE = 100_000  # formatted seconds kept by TimeFormat before it starts afresh
RNG_STREAMS = ("city", "events", "points", "sensors", "cases", "bad", "incidents", "text")
"""The independent random streams, in the order they are spawned from the seed."""


@dataclass(frozen=True, slots=True)
class SimEmission(Emission):
    """An ``Emission`` with what the simulator knows: ground truth for tests.

    ``message`` is None for bad messages, and also for sensor emissions when
    ``SimConfig.materialize`` is off (then ``bad_kind`` is None: decode the payload).
    """

    readings: int = 0  # sensor readings in the message
    truth_grid: str | None = None  # where the event must be counted (grid code or UNLOCATED)
    incidents: tuple[tuple[str, int], ...] = ()  # (incident id, events of it in the message)


@dataclass(slots=True)
class PendingEvent:
    """An inspector/hotline event before it becomes a wire message."""

    ms: int
    stream: EventStream
    sub: str
    grid: int  # index into the grid list, or -1 when outside every grid
    incident: str | None = None


class TimeFormat:
    """Epoch ms -> the exact ISO string pydantic writes for an aware datetime in ``tz``."""

    def __init__(self, tz: ZoneInfo | timezone) -> None:
        self._tz = tz
        self._seconds: dict[int, tuple[str, str]] = {}

    def datetime(self, ms: int) -> datetime:
        return (EPOCH + timedelta(milliseconds=ms)).astimezone(self._tz)

    def __call__(self, ms: int) -> str:
        sec, frac = divmod(ms, 1000)
        parts = self._seconds.get(sec)
        if parts is None:
            if len(self._seconds) > TIME_CACHE:
                self._seconds.clear()
            iso = _iso(self.datetime(sec * 1000))
            parts = self._seconds[sec] = (iso[:19], iso[19:])
        return f"{parts[0]}.{frac:03d}000{parts[1]}" if frac else f"{parts[0]}{parts[1]}"


_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


def _iso(dt: datetime) -> str:
    """What pydantic writes for ``dt`` (``+HH:MM`` offsets, ``Z`` for UTC)."""
    return str(_DATETIME.dump_python(dt, mode="json"))


def ms_of(dt: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return (dt - EPOCH) // timedelta(milliseconds=1)


class World:
    """The city, config, clock and random streams of one run, plus its id counters."""

    def __init__(self, city: City, cfg: SimConfig) -> None:
        self.city = city
        self.cfg = cfg
        self.tz = ZoneInfo(city.timezone)
        self.fmt = TimeFormat(self.tz)
        self.t_start, self.t_end = ms_of(cfg.start), ms_of(cfg.end)
        seeds = np.random.SeedSequence(cfg.seed).spawn(len(RNG_STREAMS))
        self.rng = {
            name: np.random.default_rng(s) for name, s in zip(RNG_STREAMS, seeds, strict=True)
        }
        self.grids = list(city.iter_grids())
        self.grid_index = {g.code: i for i, g in enumerate(self.grids)}
        weights = self.rng["city"].gamma(cfg.grid_weight_shape, 1.0, len(self.grids))
        households = np.array([max(g.households, 1) for g in self.grids], dtype=float)
        self.grid_p = weights * households / (weights * households).sum()
        self._counters: dict[str, int] = {}

    @cached_property
    def subs(self) -> dict[EventStream, list[str]]:
        """Subcategories reported on each event stream, in the city's order."""
        return {
            s: [c for c, (_, sub) in self.city.subcategories.items() if s in sub.streams]
            for s in ("inspector", "hotline")
        }

    def next_id(self, prefix: str) -> str:
        """``<prefix>-<seed>-<n>``, numbered per prefix from 1."""
        n = self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return f"{prefix}-{self.cfg.seed}-{n:09d}"

    def offset_s(self, ms: int) -> float:
        """The city's UTC offset in seconds at epoch milliseconds ``ms``."""
        off = self.fmt.datetime(ms).utcoffset()
        return off.total_seconds() if off else 0.0
