"""Realistic, deterministic city streams: inspectors, sensors, the hotline and cases.

A pure generator (no I/O): ``Simulator(city, SimConfig(...))`` is an iterator of
``SimEmission``s in record-time order (the time a message reaches the broker), the same
bytes for the same seed and config. Simulated time only: pacing belongs to the publisher.

- Inspector and hotline events are a non-homogeneous Poisson process per subcategory
  (thinning against hourly diurnal and weekday profiles), spread over grids by fixed
  gamma-distributed grid weights; a small fraction lies outside every grid.
- Each event reaches the broker after a short delay; ``late_fraction`` of them after
  minutes (longer than the worker's grace).
- Sensors report every ``sensor_period_s / rate`` seconds with noise, diurnal swing, slow
  drift and random gaps; gateways (one per community) batch readings into envelopes.
- Some events open cases whose lifecycle events follow on the case stream.
- Injected incidents (complaint bursts, sensor spikes, silent sensors) are recorded as
  ground truth (``truth()``, ``write_truth``); their events carry the incident id.
- ``bad_fraction`` of messages are deliberately malformed, each labelled with the
  rejection code the decoder (``DECODE_KINDS``) or the worker (``WORKER_KINDS``) gives it.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, model_validator
from shapely.geometry import shape

from core.city import UNLOCATED, City
from core.events import (
    CaseEvent,
    HotlineRequest,
    Location,
    SensorReading,
    SupervisorReport,
    decode,
    encode,
)
from sources.emission import Emission

EventStream = Literal["inspector", "hotline"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIME_CACHE = 100_000  # formatted seconds kept by TimeFormat before it starts afresh

DECODE_KINDS = frozenset({"empty", "bad_json", "schema", "wrong_topic"})
"""Bad kinds ``core.events.decode`` rejects (with that rejection code)."""
WORKER_KINDS = frozenset(
    {"unknown_grid", "unknown_sensor", "unknown_category", "impossible_time", "impossible_value"}
)
"""Bad kinds that decode but the worker's normalization rejects (with that code)."""

# hourly profiles (value at hh:00, linear in between, local time); normalised to mean 1
INSPECTOR_HOURS = [
    0.02, 0.02, 0.02, 0.02, 0.02, 0.05, 0.1, 0.4, 1.6, 2.3, 2.3, 2.0,
    0.7, 0.6, 1.9, 2.3, 2.3, 1.9, 0.7, 0.3, 0.2, 0.1, 0.05, 0.02,
]  # fmt: skip
HOTLINE_HOURS = [
    0.25, 0.15, 0.1, 0.08, 0.08, 0.12, 0.3, 0.7, 1.3, 1.8, 1.9, 1.7,
    1.2, 1.2, 1.6, 1.7, 1.6, 1.4, 1.1, 1.0, 1.0, 0.8, 0.6, 0.4,
]  # fmt: skip


class SensorModel(BaseModel):
    """How one sensor kind's readings behave."""

    baseline: float  # typical level (for sawtooth kinds: the fill reached before emptying)
    baseline_sd: float = 0.0  # spread of levels between sensors
    noise_sd: float = 0.0
    drift_sd_per_hour: float = 0.0  # random-walk drift
    diurnal_amplitude: float = 0.0  # cosine swing peaking at ``diurnal_peak_hour``
    diurnal_peak_hour: float = 14.0
    sawtooth_hours: float | None = None  # fill levels: ramp 0 -> baseline, then emptied
    spike: float = 0.0  # added during a spike incident
    decimals: int = Field(default=2, ge=0, le=6)


DEFAULT_SENSOR_MODELS: dict[str, SensorModel] = {
    "water_level": SensorModel(baseline=0.3, baseline_sd=0.1, noise_sd=0.01,
                               drift_sd_per_hour=0.005, spike=1.5, decimals=3),
    "manhole_tilt": SensorModel(baseline=1.0, baseline_sd=0.4, noise_sd=0.2,
                                drift_sd_per_hour=0.01, spike=35.0, decimals=1),
    "pm25": SensorModel(baseline=35.0, baseline_sd=8.0, noise_sd=3.0, drift_sd_per_hour=2.0,
                        diurnal_amplitude=10.0, diurnal_peak_hour=8.0, spike=400.0, decimals=1),
    "noise": SensorModel(baseline=55.0, baseline_sd=5.0, noise_sd=2.0, drift_sd_per_hour=0.2,
                         diurnal_amplitude=9.0, spike=35.0, decimals=1),
    "bin_fill": SensorModel(baseline=85.0, baseline_sd=5.0, noise_sd=1.0, sawtooth_hours=20.0,
                            spike=100.0, decimals=0),
}  # fmt: skip

DEFAULT_RATES: dict[str, dict[str, float]] = {
    "inspector": {
        "sanitation.overflowing_bin": 160, "sanitation.exposed_garbage": 200,
        "sanitation.street_cleanliness": 180, "facilities.broken_streetlight": 80,
        "facilities.damaged_road": 70, "facilities.manhole_cover": 40,
        "order.illegal_construction": 60, "order.street_vending": 220,
        "order.illegal_parking": 200, "disputes.neighbour_dispute": 30,
        "disputes.noise_complaint": 20, "safety.fire_hazard": 60,
        "safety.hazardous_structure": 15, "environment.water_logging": 20,
    },
    "hotline": {
        "sanitation.overflowing_bin": 160, "sanitation.exposed_garbage": 150,
        "sanitation.street_cleanliness": 100, "facilities.broken_streetlight": 180,
        "facilities.damaged_road": 150, "facilities.manhole_cover": 60,
        "order.illegal_construction": 120, "order.street_vending": 140,
        "order.illegal_parking": 300, "disputes.neighbour_dispute": 160,
        "disputes.noise_complaint": 400, "safety.fire_hazard": 60,
        "safety.hazardous_structure": 30, "environment.water_logging": 80,
        "environment.air_quality": 60,
    },
}  # fmt: skip
"""Mean events per hour (over a day) per stream and subcategory, at ``rate`` 1."""

CASE_UNITS = {
    "sanitation": "环卫中心", "facilities": "市政设施中心", "order": "城管执法大队",
    "disputes": "社区调解委员会", "safety": "消防救援站", "environment": "生态环境局",
}  # fmt: skip


class SimConfig(BaseModel):
    """Every tunable of the simulation."""

    seed: int = 7
    start: AwareDatetime = datetime(2025, 6, 2, 0, 0, tzinfo=timezone(timedelta(hours=8)))
    duration_s: float = Field(default=3600.0, gt=0)
    rate: float = Field(default=1.0, gt=0)  # multiplies event rates and sensor reporting frequency
    chunk_s: float = Field(default=60.0, gt=0)  # simulated seconds generated at a time

    # events (inspector, hotline)
    rates: dict[str, dict[str, float]] = DEFAULT_RATES
    default_rate_per_hour: float = 20.0  # subcategories absent from ``rates``
    inspector_hours: list[float] = INSPECTOR_HOURS
    hotline_hours: list[float] = HOTLINE_HOURS
    inspector_weekdays: list[float] = [1, 1, 1, 1, 1, 0.5, 0.3]  # Monday first
    hotline_weekdays: list[float] = [1, 1, 1, 1, 1, 0.85, 0.8]
    grid_weight_shape: float = Field(default=1.5, gt=0)  # gamma shape: smaller = more uneven grids
    outside_fraction: float = Field(default=0.005, ge=0, le=1)  # events outside every grid
    outside_margin_deg: tuple[float, float] = (0.002, 0.02)
    inspector_location_fraction: float = Field(default=0.9, ge=0, le=1)
    inspector_grid_fraction: float = Field(default=0.95, ge=0, le=1)
    hotline_location_fraction: float = Field(default=0.95, ge=0, le=1)  # else the grid code
    channels: dict[str, float] = {
        "phone": 0.55, "app": 0.13, "wechat": 0.15, "web": 0.07, "sms": 0.04,
        "email": 0.01, "walk_in": 0.03, "other": 0.02,
    }  # fmt: skip
    callers: int = Field(default=50_000, ge=1)  # size of the (Zipf-like) caller population

    # record time = event time + delay
    delay_mean_s: float = Field(default=3.0, ge=0)
    delay_max_s: float = Field(default=30.0, ge=0)
    late_fraction: float = Field(default=0.02, ge=0, le=1)
    late_delay_s: tuple[float, float] = (180.0, 900.0)  # beyond the worker's 120 s grace

    # deliberately malformed messages: fraction of all emitted messages, kinds by weight
    bad_fraction: float = Field(default=0.01, ge=0, lt=1)
    bad_kinds: dict[str, float] = {
        "bad_json": 2, "empty": 0.5, "schema": 2, "wrong_topic": 1, "unknown_grid": 1,
        "unknown_sensor": 1, "unknown_category": 1, "impossible_time": 1, "impossible_value": 1,
    }  # fmt: skip
    bad_future_s: float = 86_400.0  # how far in the future an impossible time lies

    # sensors
    sensors: bool = True
    sensor_period_s: float = Field(default=60.0, gt=0)
    sensor_gap_fraction: float = Field(default=0.01, ge=0, le=1)
    sensor_models: dict[str, SensorModel] = DEFAULT_SENSOR_MODELS
    envelopes: bool = True
    envelope_size: int = Field(default=500, ge=1, le=5000)  # max readings per envelope (< 1 MB)
    gateway_interval_s: float = Field(default=60.0, gt=0)  # a gateway flushes at least this often
    # build ``message`` for sensor emissions (costly: ~9 µs a reading); False for benchmarks
    materialize: bool = True

    # cases
    cases: bool = True
    case_fraction: float = Field(default=0.3, ge=0, le=1)
    case_step_minutes: tuple[float, float] = (2.0, 90.0)
    case_verify_fail: float = Field(default=0.1, ge=0, le=1)
    case_ratings: dict[str, float] = {
        "satisfied": 0.7, "basically_satisfied": 0.2, "dissatisfied": 0.1,
    }  # fmt: skip

    # injected incidents
    incidents: bool = True
    incident_every_s: float = Field(
        default=21_600.0, gt=0
    )  # each such window gets the counts below
    bursts: int = Field(default=2, ge=0)
    spikes: int = Field(default=2, ge=0)
    silences: int = Field(default=2, ge=0)
    burst_minutes: tuple[float, float] = (10.0, 30.0)
    burst_events: tuple[int, int] = (20, 40)
    burst_hotline_share: float = 0.7
    burst_center_share: float = 0.5
    spike_minutes: tuple[float, float] = (5.0, 20.0)
    silence_minutes: tuple[float, float] = (15.0, 60.0)
    incident_min_periods: float = 3.0  # sensor incidents span at least this many periods

    @model_validator(mode="after")
    def _consistent(self) -> SimConfig:
        if self.sensor_period_s * 1000 / self.rate < 1:
            raise ValueError("sensor period / rate must be at least 1 ms")
        if self.sensors and self.envelopes:
            steps = self.chunk_s / self.gateway_interval_s
            if abs(steps - round(steps)) > 1e-9:
                raise ValueError("chunk_s must be a multiple of gateway_interval_s")
        if self.late_delay_s[0] <= self.delay_max_s + self.gateway_interval_s:
            raise ValueError("late delays must exceed every on-time delay")
        if len(self.inspector_hours) != 24 or len(self.hotline_hours) != 24:
            raise ValueError("hourly profiles need 24 values")
        return self

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)


@dataclass(frozen=True, slots=True)
class SimEmission(Emission):
    """An ``Emission`` with what the simulator knows: ground truth for tests.

    ``message`` is None for bad messages, and also for sensor emissions when
    ``SimConfig.materialize`` is off (then ``bad_kind`` is None: decode the payload).
    """

    readings: int = 0  # sensor readings in the message
    truth_grid: str | None = None  # where the event must be counted (grid code or UNLOCATED)
    incidents: tuple[tuple[str, int], ...] = ()  # (incident id, events of it in the message)


class Incident(BaseModel):
    """Ground truth of one injected incident."""

    id: str
    kind: Literal["complaint_burst", "sensor_spike", "sensor_silence"]
    start: datetime
    end: datetime
    grids: list[str] = []
    sensors: list[str] = []
    subcategory: str | None = None
    events: int = 0  # emitted events/readings carrying this incident
    suppressed: int = 0  # readings a silent sensor did not send
    grid_counts: dict[str, int] = {}
    stream_counts: dict[str, int] = {}


@dataclass(slots=True)
class _Event:
    """An inspector/hotline event before it becomes a wire message."""

    ms: int
    stream: EventStream
    sub: str
    grid: int  # index into the grid list, or -1 when outside every grid
    incident: str | None = None


# ---------------------------------------------------------------- pure helpers


def profile_factor(hours_local: np.ndarray, hourly: list[float]) -> np.ndarray:
    """Hourly profile (normalised to mean 1) linearly interpolated at fractional hours."""
    knots = np.asarray(hourly, dtype=float)
    knots = knots / knots.mean()
    return np.interp(hours_local, np.arange(25), np.append(knots, knots[0]))


def local_clock(ms: np.ndarray, offset_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(fractional local hour, weekday Monday=0) of epoch milliseconds."""
    local_s = ms / 1000.0 + offset_s
    days = np.floor(local_s / 86_400.0)
    return (local_s - days * 86_400.0) / 3600.0, ((days + 3) % 7).astype(int)  # 1970-01-01: Thu


def thinned_poisson(
    rng: np.random.Generator, t0: int, t1: int, peak_per_s: float, accept: Any
) -> np.ndarray:
    """Sorted event times (ms) in [t0, t1) of a NHPP by thinning a homogeneous one."""
    n = rng.poisson(peak_per_s * (t1 - t0) / 1000.0)
    times = np.sort(rng.integers(t0, t1, size=n))
    if n == 0:
        return times
    return times[rng.random(n) < accept(times)]


def pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """One key of ``weights``, drawn with probability proportional to its weight."""
    keys = list(weights)
    cum = np.cumsum(np.asarray(list(weights.values()), dtype=float))
    return keys[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(keys) - 1)]


def reporting_delays(rng: np.random.Generator, n: int, cfg: SimConfig) -> np.ndarray:
    """Milliseconds from event to broker: short, or (a ``late_fraction``) minutes."""
    on_time = np.minimum(rng.exponential(cfg.delay_mean_s, n), cfg.delay_max_s)
    late = rng.uniform(*cfg.late_delay_s, n)
    return np.round(np.where(rng.random(n) < cfg.late_fraction, late, on_time) * 1000).astype(
        np.int64
    )


def adjacency(city: City) -> dict[str, list[str]]:
    """Grids sharing at least one polygon vertex (so edges too) with each grid."""
    by_vertex: dict[tuple[float, float], list[str]] = {}
    for g in city.iter_grids():
        for p in g.polygon.coordinates[0][:-1]:
            by_vertex.setdefault((p[0], p[1]), []).append(g.code)
    out: dict[str, set[str]] = {g.code: set() for g in city.iter_grids()}
    for codes in by_vertex.values():
        for c in codes:
            out[c].update(codes)
    return {c: sorted(n - {c}) for c, n in out.items()}


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
    return (dt - EPOCH) // timedelta(milliseconds=1)


# ---------------------------------------------------------------- the simulator


class Simulator:
    """Iterate to get the city's emissions in record-time order (deterministic by seed)."""

    def __init__(self, city: City, config: SimConfig | None = None) -> None:
        self.city = city
        self.cfg = cfg = config or SimConfig()
        self.tz = ZoneInfo(city.timezone)
        self.fmt = TimeFormat(self.tz)
        self.t_start, self.t_end = ms_of(cfg.start), ms_of(cfg.end)
        seeds = np.random.SeedSequence(cfg.seed).spawn(8)
        self._rng = {
            name: np.random.default_rng(s)
            for name, s in zip(
                ["city", "events", "points", "sensors", "cases", "bad", "incidents", "text"],
                seeds, strict=True,
            )
        }  # fmt: skip
        self.grids = list(city.iter_grids())
        self.grid_index = {g.code: i for i, g in enumerate(self.grids)}
        self.community = [city.grid_paths[g.code].community for g in self.grids]
        self.community_name = {
            c.code: c.name for d in city.districts for s in d.streets for c in s.communities
        }
        weights = self._rng["city"].gamma(cfg.grid_weight_shape, 1.0, len(self.grids))
        households = np.array([max(g.households, 1) for g in self.grids], dtype=float)
        self.grid_p = weights * households / (weights * households).sum()
        self._incidents: dict[str, Incident] = {}
        self._planned: list[_Event] = []
        self._spikes: list[tuple[str, int, int, int]] = []  # (incident, sensor idx, t0, t1)
        self._silences: list[tuple[str, int, int, int]] = []
        self._cases: list[tuple[int, int, CaseEvent]] = []  # heap of (ms, seq, event)
        self._seq = 0
        self._counters: dict[str, int] = {}
        self._sensor_state: dict[str, np.ndarray] | None = None
        self._started = False

    # ---- public

    def __iter__(self) -> Iterator[SimEmission]:
        if self._started:
            raise RuntimeError("a Simulator runs once: make a new one to replay the same seed")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[SimEmission]:
        heap: list[tuple[int, int, SimEmission]] = []
        step = max(1, round(self.cfg.chunk_s * 1000))
        windows = self._incident_windows() if self.cfg.incidents else iter(())
        window = next(windows, None)
        for t0 in range(self.t_start, self.t_end, step):
            t1 = min(t0 + step, self.t_end)
            while window is not None and window[0] < t1:
                self._plan_incidents(*window)
                window = next(windows, None)
            for em in self._chunk(t0, t1):
                heapq.heappush(heap, (ms_of(em.record_ts), self._next_seq(), em))
            while heap and heap[0][0] < t1:
                yield heapq.heappop(heap)[2]
        while heap:
            yield heapq.heappop(heap)[2]

    def emissions(self) -> Iterator[SimEmission]:
        """The same as iterating the simulator."""
        return iter(self)

    def truth(self) -> list[Incident]:
        """The injected incidents; event counts are final once iteration has finished."""
        return list(self._incidents.values())

    def write_truth(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for inc in self.truth():
                fh.write(inc.model_dump_json() + "\n")

    # ---- structure

    @cached_property
    def geoms(self) -> list[Any]:
        geoms = [shape(g.polygon.model_dump()) for g in self.grids]
        for geom in geoms:
            shapely.prepare(geom)
        return geoms

    @cached_property
    def city_bounds(self) -> tuple[float, float, float, float]:
        return tuple(shapely.total_bounds(self.geoms).tolist())  # type: ignore[return-value]

    @cached_property
    def subs(self) -> dict[EventStream, list[str]]:
        return {
            s: [c for c, (_, sub) in self.city.subcategories.items() if s in sub.streams]
            for s in ("inspector", "hotline")
        }

    def _rate_per_s(self, stream: EventStream) -> np.ndarray:
        table = self.cfg.rates.get(stream, {})
        per_h = [table.get(c, self.cfg.default_rate_per_hour) for c in self.subs[stream]]
        return np.asarray(per_h, dtype=float) * self.cfg.rate / 3600.0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _next_id(self, prefix: str) -> str:
        n = self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return f"{prefix}-{self.cfg.seed}-{n:09d}"

    def _offset_s(self, ms: int) -> float:
        off = self.fmt.datetime(ms).utcoffset()
        return off.total_seconds() if off else 0.0

    # ---- incidents

    def _window(
        self,
        rng: np.random.Generator,
        minutes: tuple[float, float],
        w0: int,
        w1: int,
        min_ms: int = 0,
    ) -> tuple[int, int]:
        """A random sub-window of [w0, w1) lasting ``minutes`` (at least ``min_ms``; clipped)."""
        length = min(max(int(rng.uniform(*minutes) * 60_000), min_ms), w1 - w0)
        t0 = int(rng.integers(w0, w1 - length + 1))
        return t0, t0 + length

    @cached_property
    def _adjacency(self) -> dict[str, list[str]]:
        return adjacency(self.city)

    def _incident_windows(self) -> Iterator[tuple[int, int]]:
        every = round(self.cfg.incident_every_s * 1000)
        for w0 in range(self.t_start, self.t_end, every):
            yield w0, min(w0 + every, self.t_end)

    def _plan_incidents(self, w0: int, w1: int) -> None:
        """Place this window's bursts, spikes and silences; bursts' events are pre-drawn."""
        cfg, rng = self.cfg, self._rng["incidents"]
        both = [c for c in self.subs["hotline"] if c in self.subs["inspector"]]
        for _ in range(cfg.bursts if both else 0):
            self._plan_burst(rng, both, *self._window(rng, cfg.burst_minutes, w0, w1))
        self._planned.sort(key=lambda e: e.ms)
        sensors = self.city.sensors
        if not (cfg.sensors and sensors):
            return
        picks = rng.permutation(len(sensors))[: cfg.spikes + cfg.silences].tolist()
        sensor_min_ms = int(cfg.incident_min_periods * cfg.sensor_period_s * 1000 / cfg.rate)
        for k, idx in enumerate(picks):
            spike = k < cfg.spikes
            kind = "spike" if spike else "silence"
            minutes = cfg.spike_minutes if spike else cfg.silence_minutes
            t0, t1 = self._window(rng, minutes, w0, w1, min_ms=sensor_min_ms)
            s = sensors[idx]
            inc = Incident(
                id=self._incident_id(kind), kind=f"sensor_{kind}",  # type: ignore[arg-type]
                start=self.fmt.datetime(t0), end=self.fmt.datetime(t1),
                grids=[s.grid], sensors=[s.id],
            )  # fmt: skip
            (self._spikes if spike else self._silences).append((inc.id, idx, t0, t1))
            self._incidents[inc.id] = inc

    def _incident_id(self, kind: str) -> str:
        return f"{kind}-{self.cfg.seed}-{len(self._incidents) + 1}"

    def _plan_burst(self, rng: np.random.Generator, subs: list[str], t0: int, t1: int) -> None:
        """Complaints of one subcategory in a grid and its neighbours over [t0, t1)."""
        cfg = self.cfg
        center = self.grids[int(rng.choice(len(self.grids), p=self.grid_p))].code
        around = self._adjacency[center]
        sub = subs[int(rng.integers(len(subs)))]
        inc = Incident(id=self._incident_id("burst"), kind="complaint_burst",
                       start=self.fmt.datetime(t0), end=self.fmt.datetime(t1),
                       grids=[center, *around], subcategory=sub)  # fmt: skip
        n = int(rng.integers(cfg.burst_events[0], cfg.burst_events[1] + 1))
        for ms in np.sort(rng.integers(t0, max(t1, t0 + 1), size=n)).tolist():
            stream: EventStream = (
                "hotline" if rng.random() < cfg.burst_hotline_share else "inspector"
            )
            at_center = rng.random() < cfg.burst_center_share or not around
            grid = center if at_center else around[int(rng.integers(len(around)))]
            self._planned.append(_Event(ms, stream, sub, self.grid_index[grid], inc.id))
            inc.events += 1
            inc.grid_counts[grid] = inc.grid_counts.get(grid, 0) + 1
            inc.stream_counts[stream] = inc.stream_counts.get(stream, 0) + 1
        self._incidents[inc.id] = inc

    # ---- one chunk of simulated time

    def _chunk(self, t0: int, t1: int) -> list[SimEmission]:
        good: list[SimEmission] = []
        events = self._background(t0, t1)
        while self._planned and self._planned[0].ms < t1:
            events.append(self._planned.pop(0))
        events.sort(key=lambda e: e.ms)
        good.extend(self._event_emissions(events))
        if self.cfg.sensors and self.city.sensors:
            good.extend(self._sensor_emissions(t0, t1))
        if self.cfg.cases:
            good.extend(self._case_emissions(t1))
        return self._with_bad(good)

    def _background(self, t0: int, t1: int) -> list[_Event]:
        """Poisson inspector and hotline events of [t0, t1) (thinned by the profiles)."""
        cfg, rng = self.cfg, self._rng["events"]
        offset = self._offset_s(t0)
        out: list[_Event] = []
        for stream, hours, weekdays in (
            ("inspector", cfg.inspector_hours, cfg.inspector_weekdays),
            ("hotline", cfg.hotline_hours, cfg.hotline_weekdays),
        ):
            rates = self._rate_per_s(stream)  # type: ignore[arg-type]
            if not len(rates) or rates.sum() <= 0:
                continue
            hour_norm = np.asarray(hours, dtype=float) / np.mean(hours)
            peak = float(hour_norm.max()) * max(weekdays)

            def accept(ms: np.ndarray, hours=hours, weekdays=weekdays, peak=peak) -> np.ndarray:
                hour, dow = local_clock(ms, offset)
                return profile_factor(hour, hours) * np.asarray(weekdays)[dow] / peak

            times = thinned_poisson(rng, t0, t1, float(rates.sum()) * peak, accept)
            subs = rng.choice(len(rates), size=len(times), p=rates / rates.sum())
            grids = rng.choice(len(self.grids), size=len(times), p=self.grid_p)
            outside = rng.random(len(times)) < cfg.outside_fraction
            names = self.subs[stream]  # type: ignore[index]
            out.extend(
                _Event(int(ms), stream, names[int(s)], -1 if o else int(g))  # type: ignore[arg-type]
                for ms, s, g, o in zip(times, subs, grids, outside, strict=True)
            )
        return out

    # ---- inspector / hotline messages

    def _point_in(self, grid: int) -> tuple[float, float]:
        """A point strictly inside the grid (after rounding to 6 decimals)."""
        rng, geom = self._rng["points"], self.geoms[grid]
        x0, y0, x1, y1 = geom.bounds
        while True:
            xs = np.round(rng.uniform(x0, x1, 16), 6)
            ys = np.round(rng.uniform(y0, y1, 16), 6)
            inside = np.flatnonzero(shapely.contains_xy(geom, xs, ys))
            if len(inside):
                return float(xs[inside[0]]), float(ys[inside[0]])

    def _point_outside(self) -> tuple[float, float]:
        """A point beyond the city's bounding box: outside every grid."""
        rng = self._rng["points"]
        x0, y0, x1, y1 = self.city_bounds
        gap = rng.uniform(*self.cfg.outside_margin_deg)
        side = int(rng.integers(4))
        x = [x0 - gap, x1 + gap, rng.uniform(x0, x1), rng.uniform(x0, x1)][side]
        y = [rng.uniform(y0, y1), rng.uniform(y0, y1), y0 - gap, y1 + gap][side]
        return round(float(x), 6), round(float(y), 6)

    def _event_emissions(self, events: list[_Event]) -> list[SimEmission]:
        delays = reporting_delays(self._rng["events"], len(events), self.cfg)
        return [self._event_emission(e, int(d)) for e, d in zip(events, delays, strict=True)]

    def _event_emission(self, e: _Event, delay_ms: int) -> SimEmission:
        cfg, rng = self.cfg, self._rng["text"]
        located = e.grid >= 0
        grid = self.grids[e.grid] if located else None
        if located:
            lon, lat = self._point_in(e.grid)
        else:
            lon, lat = self._point_outside()
        when = self.fmt.datetime(e.ms)
        sub_zh = self.city.subcategories[e.sub][1].name_zh or e.sub
        place = self.community_name[self.community[e.grid]] if grid else "辖区外"
        msg: SupervisorReport | HotlineRequest
        if e.stream == "inspector":
            with_grid = located and rng.random() < cfg.inspector_grid_fraction
            with_loc = (
                not located or not with_grid or rng.random() < cfg.inspector_location_fraction
            )
            msg = SupervisorReport(
                event_id=self._next_id("ins"), occurred_at=when, report_id=self._next_id("R"),
                grid=grid.code if with_grid and grid else None, category=e.sub,
                location=Location(lon=lon, lat=lat) if with_loc else None,
                reporter_id=grid.owner.split()[0] if grid else "inspector-patrol",
                text=f"{sub_zh}：{grid.name if grid else place}",
            )  # fmt: skip
        else:
            with_loc = not located or rng.random() < cfg.hotline_location_fraction
            msg = HotlineRequest(
                event_id=self._next_id("hot"), occurred_at=when, request_id=self._next_id("H"),
                channel=pick(rng, cfg.channels),  # type: ignore[arg-type]
                category=e.sub, location=Location(lon=lon, lat=lat) if with_loc else None,
                address=f"{place}附近", grid=None if with_loc or not grid else grid.code,
                caller_id=self._caller(rng), text=f"市民反映{place}{sub_zh}",
            )  # fmt: skip
        truth = grid.code if grid else UNLOCATED
        if grid and self.cfg.cases and rng.random() < cfg.case_fraction:
            self._open_case(e, msg, truth)
        return SimEmission(
            record_ts=self.fmt.datetime(e.ms + delay_ms), stream=e.stream,
            key=msg.grid.encode() if msg.grid else b"", payload=encode(msg), message=msg,
            truth_grid=truth, incidents=((e.incident, 1),) if e.incident else (),
        )  # fmt: skip

    def _caller(self, rng: np.random.Generator) -> str:
        """A fake mobile number from a Zipf-like population (some people call often)."""
        n = int(min(rng.zipf(1.3), self.cfg.callers)) - 1
        return f"1{38 + n % 12}{(n * 7_919_993) % 100_000_000:08d}"

    # ---- cases

    def _open_case(self, e: _Event, msg: SupervisorReport | HotlineRequest, grid: str) -> None:
        """The lifecycle after the report/request: the worker derives the ``accept`` itself
        (case id ``H-<request_id>`` / ``I-<report_id>``); staff then register, dispatch, …"""
        cfg, rng = self.cfg, self._rng["cases"]
        hotline = e.stream == "hotline"
        case_id = f"H-{msg.request_id}" if hotline else f"I-{msg.report_id}"  # type: ignore[union-attr]
        steps = ["register", "dispatch", "acknowledge", "handle"]
        if rng.random() < cfg.case_verify_fail:
            steps += ["verify_fail", "handle"]
        steps += ["verify_pass", "close"]
        if hotline:
            steps.append("follow_up")
        unit = CASE_UNITS.get(e.sub.split(".")[0], "街道综治中心")
        ms = e.ms
        gaps = rng.uniform(*cfg.case_step_minutes, len(steps)) * 60_000
        for action, gap in zip(steps, gaps.tolist(), strict=True):
            ms += int(gap)
            rating = pick(rng, cfg.case_ratings) if action == "follow_up" else None
            ev = CaseEvent(
                event_id=self._next_id("cev"), occurred_at=self.fmt.datetime(ms), case_id=case_id,
                action=action, grid=grid if grid != UNLOCATED else None, category=e.sub,
                unit=unit, actor="dispatcher-01", rating=rating,  # type: ignore[arg-type]
                note=f"{msg.event_id}",
            )  # fmt: skip
            heapq.heappush(self._cases, (ms, self._next_seq(), ev))

    def _case_emissions(self, t1: int) -> list[SimEmission]:
        out = []
        delays = self._rng["cases"]
        while self._cases and self._cases[0][0] < t1:
            ms, _, ev = heapq.heappop(self._cases)
            if ms >= self.t_end:
                continue
            delay = int(min(delays.exponential(self.cfg.delay_mean_s), self.cfg.delay_max_s) * 1000)
            out.append(SimEmission(
                record_ts=self.fmt.datetime(ms + delay), stream="case", key=ev.case_id.encode(),
                payload=encode(ev), message=ev, truth_grid=ev.grid,
            ))  # fmt: skip
        return out

    # ---- sensors

    def _sensor_setup(self) -> dict[str, Any]:
        cfg, rng = self.cfg, self._rng["sensors"]
        sensors = self.city.sensors
        kinds = self.city.sensor_kind_index
        n = len(sensors)

        def model(kind: str) -> SensorModel:
            if kind in cfg.sensor_models:
                return cfg.sensor_models[kind]
            k = kinds[kind]
            span = k.max - k.min
            return SensorModel(baseline=k.min + 0.2 * span, noise_sd=0.01 * span, spike=0.5 * span)

        models = [model(s.kind) for s in sensors]

        def col(attr: str) -> np.ndarray:
            return np.asarray([getattr(m, attr) or 0.0 for m in models], dtype=float)

        gateways = sorted({self.city.grid_paths[s.grid].community for s in sensors})
        gw_index = {g: i for i, g in enumerate(gateways)}
        period = cfg.sensor_period_s * 1000.0 / cfg.rate
        units = {k: json.dumps(kinds[k].unit, ensure_ascii=False) for k in kinds}
        return {
            "baseline": col("baseline") + col("baseline_sd") * rng.standard_normal(n),
            "noise": col("noise_sd"),
            "drift_sd": col("drift_sd_per_hour"),
            "amp": col("diurnal_amplitude"),
            "peak": col("diurnal_peak_hour"),
            "saw": col("sawtooth_hours") * 3_600_000.0,
            "saw_phase": rng.random(n),
            "spike": col("spike"),
            "scale": 10.0 ** col("decimals"),
            "lo": np.asarray([kinds[s.kind].min for s in sensors]),
            "hi": np.asarray([kinds[s.kind].max for s in sensors]),
            "drift": np.zeros(n),
            "next": self.t_start + rng.random(n) * period,
            "period": period,
            "gw": np.asarray([gw_index[self.city.grid_paths[s.grid].community] for s in sensors]),
            "gw_ids": [f"GW-{g}" for g in gateways],
            "head": [f'{{"v":1,"type":"sensor.reading","event_id":"{s.id}@' for s in sensors],
            "tail": [f'","sensor_id":"{s.id}","kind":"{s.kind}","value":' for s in sensors],
            "unit": [f',"unit":{units[s.kind]}}}' for s in sensors],
        }

    def _readings(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sensor index, ms, value) of the readings of [a, b), gaps and silences removed."""
        st = self._sensor_state
        if st is None:
            st = self._sensor_state = self._sensor_setup()
        cfg, rng = self.cfg, self._rng["sensors"]
        period = st["period"]
        counts = np.maximum(0, np.ceil((b - st["next"]) / period)).astype(np.int64)
        idx = np.repeat(np.arange(len(counts)), counts)
        k = np.arange(len(idx)) - np.repeat(np.cumsum(counts) - counts, counts)
        ms = np.floor(st["next"][idx] + k * period).astype(np.int64)
        st["next"] = st["next"] + counts * period
        st["drift"] += (
            st["drift_sd"] * math.sqrt((b - a) / 3_600_000.0) * rng.standard_normal(len(counts))
        )
        hour, _ = local_clock(ms, self._offset_s(a))
        value = (
            st["baseline"][idx] + st["drift"][idx]
            + st["amp"][idx] * np.cos(2 * np.pi * (hour - st["peak"][idx]) / 24.0)
            + st["noise"][idx] * rng.standard_normal(len(idx))
        )  # fmt: skip
        saw = st["saw"][idx] > 0
        if saw.any():
            frac = (ms[saw] / st["saw"][idx][saw] + st["saw_phase"][idx][saw]) % 1.0
            value[saw] += st["baseline"][idx][saw] * (frac - 1.0)
        keep = rng.random(len(idx)) >= cfg.sensor_gap_fraction
        self._silences = [x for x in self._silences if x[3] > a]
        self._spikes = [x for x in self._spikes if x[3] > a]
        for inc_id, s, t0, t1 in self._silences:
            hit = keep & (idx == s) & (ms >= t0) & (ms < t1)
            self._incidents[inc_id].suppressed += int(hit.sum())
            keep &= ~hit
        for _, s, t0, t1 in self._spikes:
            value[(idx == s) & (ms >= t0) & (ms < t1)] += st["spike"][s]
        value = np.clip(value, st["lo"][idx], st["hi"][idx])
        value = np.round(value * st["scale"][idx]) / st["scale"][idx] + 0.0
        return idx[keep], ms[keep], value[keep]

    def _spike_tags(self, idx: np.ndarray, ms: np.ndarray) -> tuple[tuple[str, int], ...]:
        tags = []
        for inc_id, s, t0, t1 in self._spikes:
            n = int(((idx == s) & (ms >= t0) & (ms < t1)).sum())
            if n:
                self._incidents[inc_id].events += n
                tags.append((inc_id, n))
        return tuple(tags)

    def _sensor_emissions(self, t0: int, t1: int) -> list[SimEmission]:
        step = round(self.cfg.gateway_interval_s * 1000) if self.cfg.envelopes else t1 - t0
        out: list[SimEmission] = []
        for a in range(t0, t1, step):
            b = min(a + step, t1)
            idx, ms, value = self._readings(a, b)
            if self.cfg.envelopes:
                out.extend(self._envelopes(idx, ms, value, b))
            else:
                out.extend(self._single_readings(idx, ms, value))
        return out

    def _reading_json(self, idx: list[int], ms: list[int], value: list[float]) -> list[str]:
        st, fmt = self._sensor_state, self.fmt
        assert st is not None
        head, tail, unit = st["head"], st["tail"], st["unit"]
        return [
            f'{head[i]}{m}","occurred_at":"{fmt(m)}{tail[i]}{v!r}{unit[i]}'
            for i, m, v in zip(idx, ms, value, strict=True)
        ]

    def _envelopes(
        self, idx: np.ndarray, ms: np.ndarray, value: np.ndarray, flush_ms: int
    ) -> list[SimEmission]:
        """Per gateway, readings in time order, cut into envelopes of ``envelope_size``."""
        st, cfg = self._sensor_state, self.cfg
        assert st is not None
        gw = st["gw"][idx]
        order = np.lexsort((idx, ms, gw))
        idx, ms, value, gw = idx[order], ms[order], value[order], gw[order]
        starts = np.flatnonzero(np.diff(gw, prepend=-1))
        bounds: list[tuple[int, int]] = []
        for s, e in zip(starts.tolist(), [*starts[1:].tolist(), len(gw)], strict=True):
            size = cfg.envelope_size
            bounds.extend((a, min(a + size, e)) for a in range(s, e, size))
        delays = reporting_delays(self._rng["sensors"], len(bounds), cfg).tolist()
        parts = self._reading_json(idx.tolist(), ms.tolist(), value.tolist())
        out = []
        for (a, e), delay in zip(bounds, delays, strict=True):
            # a full envelope leaves at once, others at the flush; a late one is held back
            # by the gateway (its sent_at is late too), an on-time one is delayed in transit
            ready = int(ms[e - 1]) if e - a == cfg.envelope_size else flush_ms
            held = delay if delay > cfg.delay_max_s * 1000 else 0
            sent, record = ready + held, ready + delay
            gw_id = st["gw_ids"][int(gw[a])]
            payload = (
                f'{{"v":1,"type":"sensor.envelope","gateway_id":"{gw_id}",'
                f'"sent_at":"{self.fmt(sent)}","readings":[{",".join(parts[a:e])}]}}'
            ).encode()
            out.append(SimEmission(
                record_ts=self.fmt.datetime(record), stream="sensor", key=gw_id.encode(),
                payload=payload, message=decode("sensor", payload) if cfg.materialize else None,
                readings=e - a, incidents=self._spike_tags(idx[a:e], ms[a:e]),
            ))  # fmt: skip
        return out

    def _single_readings(
        self, idx: np.ndarray, ms: np.ndarray, value: np.ndarray
    ) -> list[SimEmission]:
        st, cfg = self._sensor_state, self.cfg
        assert st is not None
        delays = reporting_delays(self._rng["sensors"], len(idx), cfg)
        parts = self._reading_json(idx.tolist(), ms.tolist(), value.tolist())
        out = []
        for k, (i, m, d) in enumerate(zip(idx.tolist(), ms.tolist(), delays.tolist(), strict=True)):
            payload = parts[k].encode()
            out.append(SimEmission(
                record_ts=self.fmt.datetime(m + d), stream="sensor",
                key=self.city.sensors[i].id.encode(), payload=payload,
                message=decode("sensor", payload) if cfg.materialize else None, readings=1,
                incidents=self._spike_tags(idx[k : k + 1], ms[k : k + 1]),
            ))  # fmt: skip
        return out

    # ---- malformed messages

    def _with_bad(self, good: list[SimEmission]) -> list[SimEmission]:
        """Insert bad messages so that they are ``bad_fraction`` of everything emitted."""
        f = self.cfg.bad_fraction
        if f <= 0 or not good:
            return good
        rng = self._rng["bad"]
        hits = rng.random(len(good)) < f / (1 - f)
        out: list[SimEmission] = []
        for em, hit in zip(good, hits.tolist(), strict=True):
            out.append(em)
            if hit:
                out.append(self._bad(em, rng))
        return out

    def _bad(self, em: SimEmission, rng: np.random.Generator) -> SimEmission:
        weights = self.cfg.bad_kinds
        kind = pick(rng, {k: w for k, w in weights.items() if self._applies(k, em.stream)})
        payload = self._bad_payload(kind, em, rng)
        return SimEmission(record_ts=em.record_ts, stream=em.stream, key=em.key,
                           payload=payload, message=None, bad_kind=kind)  # fmt: skip

    @staticmethod
    def _applies(kind: str, stream: str) -> bool:
        if kind in ("unknown_sensor", "impossible_value"):
            return stream == "sensor"
        if kind == "unknown_category":
            return stream in ("inspector", "hotline")
        if kind == "unknown_grid":
            return stream in ("inspector", "hotline", "case")
        return True

    def _bad_payload(self, kind: str, em: SimEmission, rng: np.random.Generator) -> bytes:
        if kind == "empty":
            return b""
        if kind == "bad_json":
            return em.payload[: max(1, len(em.payload) // 2)]
        if kind == "schema":
            doc = json.loads(em.payload)
            doc.pop("gateway_id" if doc["type"] == "sensor.envelope" else "event_id")
            return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        record_ms = ms_of(em.record_ts)
        event_id = self._next_id("bad")
        if kind == "wrong_topic":
            other = "case" if em.stream != "case" else "inspector"
            return self._template(other, event_id, record_ms)
        if em.stream == "sensor":
            return self._bad_reading(kind, event_id, record_ms, rng)
        msg = em.message if em.message is not None else decode(em.stream, em.payload)
        update: dict[str, Any] = {"event_id": event_id}
        if kind == "unknown_grid":
            update |= {"grid": "ZZ99S99C999G99", "location": None}
        elif kind == "unknown_category":
            update["category"] = "unknown.nonexistent"
        elif kind == "impossible_time":
            update["occurred_at"] = self.fmt.datetime(record_ms + int(self.cfg.bad_future_s * 1000))
        return encode(msg.model_copy(update=update))

    def _bad_reading(
        self, kind: str, event_id: str, record_ms: int, rng: np.random.Generator
    ) -> bytes:
        s = self.city.sensors[int(rng.integers(len(self.city.sensors)))]
        k = self.city.sensor_kind_index[s.kind]
        value, sensor_id, when = k.min, s.id, record_ms
        if kind == "unknown_sensor":
            sensor_id = f"S-unknown-{int(rng.integers(10_000)):04d}"
        elif kind == "impossible_value":
            value = k.max + abs(k.max - k.min) + 1.0
        elif kind == "impossible_time":
            when = record_ms + int(self.cfg.bad_future_s * 1000)
        return encode(
            SensorReading(
                event_id=event_id,
                occurred_at=self.fmt.datetime(when),
                sensor_id=sensor_id,
                kind=s.kind,
                value=value,
                unit=k.unit,
            )
        )

    def _template(self, stream: str, event_id: str, record_ms: int) -> bytes:
        """A valid message of ``stream`` (to be sent on another stream's topic)."""
        when = self.fmt.datetime(record_ms)
        if stream == "case":
            return encode(CaseEvent(event_id=event_id, occurred_at=when, case_id=event_id,
                                    action="accept"))  # fmt: skip
        sub = self.subs["inspector"][0]
        return encode(SupervisorReport(event_id=event_id, occurred_at=when, report_id=event_id,
                                       grid=self.grids[0].code, category=sub,
                                       reporter_id="inspector-patrol"))  # fmt: skip
