"""Run the simulator offline and feed its streams to the shipped detectors, as the worker would.

``simulate(setup)`` runs one seed without a broker and returns every warning revision the
detectors publish, plus the simulator's ground truth. The detectors and lifecycles are the
library's own (``streams.detect``), with the shipped default configurations; the feeding
follows ``docs/detection.md`` and ``docs/detection-sensors.md``:

* **counts**: hour buckets (and local-day buckets) per grid x subcategory of inspector reports
  and hotline requests together, with community and street roll-ups; a key gets a state at
  its first event, counted from the start of the run (``rebuild(since=…)``), and every key
  with a state is fed every closed bucket (0 when empty). An event whose record reached the
  broker later than its hour's end + grace is late: not counted (the worker does not re-feed
  late events). Hour buckets also feed ``Hotspots`` with each warm grid's expectation.
* **sensors**: every reading goes to ``SensorRules`` (shipped ``default_sensor_rules``) and to
  one value-mode ``SeasonalDetector`` per sensor (``value_series``, interval = the simulated
  reading period).
* **patrol**: every inspector report to ``PatrolGaps`` (every grid tracked from the start).
* **timers**: ``due_silent`` and ``PatrolGaps.due`` run before each record, with
  ``now = watermark =`` its event time (a caught-up worker).

Everything is processed in event-time order (a reorder buffer longer than the simulator's
largest reporting delay restores it from the broker's record-time order).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from shapely.geometry import shape

from core.city import UNLOCATED, City, GridPath
from core.events import HotlineRequest, SensorEnvelope, SensorReading, SupervisorReport
from core.settings import WindowSettings
from core.warning import EarlyWarning
from sources.citygen import CityGenConfig, generate_city
from sources.simulator import DEFAULT_RATES, Incident, SimConfig, SimEmission, Simulator, ms_of
from streams.detect.config import DetectionConfig, sensitivity_at, value_lifecycle, value_series
from streams.detect.lifecycle import WarningLifecycle
from streams.detect.patrol import PatrolGaps
from streams.detect.seasonal import SeasonalDetector, SeriesState, verdicts
from streams.detect.sensors import RULES_LIFECYCLE, SensorRules
from streams.detect.spatial import Hotspots, adjacency
from streams.detect.verdict import Verdict

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SAMPLE_GRIDS = CityGenConfig().cols * CityGenConfig().rows
"""Grids of ``config/cities/sample.yaml``: event rates are scaled to its per-grid intensity."""
EVIDENCE_IDS = 20
CHUNK_S = 600.0
"""Simulated seconds generated at a time: 10 min instead of 1 (same processes, less overhead)."""


class EvalSetup(BaseModel):
    """One evaluation run: the seed, the simulated span and the (small, generated) city.

    The city is ``sources.citygen`` with a ``cols`` x ``rows`` lattice and ``sensors_per_kind``
    sensors of each kind; event rates are the simulator's defaults scaled by grids / 800, so
    a grid sees the traffic of a grid of the 800-grid sample city. Incidents: the simulator's
    default sizes, ``bursts``/``spikes``/``silences`` every ``incident_every_h`` hours.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 1
    days: float = Field(default=14.0, gt=0)
    start: datetime = datetime.fromisoformat("2025-06-02T00:00:00+08:00")  # a Monday
    city_seed: int = 7
    cols: int = Field(default=12, ge=3)
    rows: int = Field(default=6, ge=2)
    sensors_per_kind: int = Field(default=20, ge=1)
    incident_every_h: float = Field(default=12.0, gt=0)
    bursts: int = Field(default=2, ge=0)
    spikes: int = Field(default=2, ge=0)
    silences: int = Field(default=2, ge=0)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)


def eval_city(setup: EvalSetup) -> City:
    """The generated city of ``setup`` (same ``city_seed`` and sizes: same city)."""
    kinds = ("water_level", "manhole_tilt", "pm25", "noise", "bin_fill")
    cfg = CityGenConfig(
        cols=setup.cols,
        rows=setup.rows,
        communities_per_band=3,
        streets_per_district=(2, 1),
        street_communities=(1, 4),
        sensors_per_kind=dict.fromkeys(kinds, setup.sensors_per_kind),
    )
    return City.model_validate(generate_city(setup.city_seed, cfg))


def sim_config(setup: EvalSetup, grids: int) -> SimConfig:
    """The simulator's defaults, event rates scaled to the sample city's per-grid intensity,
    incidents as set up, no cases and no malformed messages (neither feeds a detector here),
    generated in chunks of ``CHUNK_S``."""
    scale = grids / SAMPLE_GRIDS
    rates = {s: {c: r * scale for c, r in table.items()} for s, table in DEFAULT_RATES.items()}
    return SimConfig(
        seed=setup.seed,
        start=setup.start,
        duration_s=setup.days * 86_400.0,
        rates=rates,
        default_rate_per_hour=SimConfig().default_rate_per_hour * scale,
        chunk_s=CHUNK_S,
        cases=False,
        bad_fraction=0.0,
        incident_every_s=setup.incident_every_h * 3600.0,
        bursts=setup.bursts,
        spikes=setup.spikes,
        silences=setup.silences,
    )


# -- records in event-time order ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    """A located inspector report or hotline request; ``late`` when its record reached the
    broker after its hour's end + grace."""

    occurred_at: datetime
    stream: str
    grid: str
    category: str
    event_id: str
    late: bool


Record = Report | SensorReading


def bucket_start(at: datetime, width: timedelta, zone: ZoneInfo) -> datetime:
    """The start of the bucket holding ``at``: a local day in ``zone``, else a UTC hour."""
    if width == DAY:
        return at.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def records_of(em: SimEmission, zone: ZoneInfo, grace: timedelta) -> list[Record]:
    """What the worker would take from one emission: located events, sensor readings."""
    msg = em.message
    if isinstance(msg, SensorEnvelope):
        return list(msg.readings)
    if isinstance(msg, SensorReading):
        return [msg]
    if isinstance(msg, SupervisorReport | HotlineRequest) and em.truth_grid not in (
        None,
        UNLOCATED,
    ):
        late = em.record_ts > bucket_start(msg.occurred_at, HOUR, zone) + HOUR + grace
        stream = "inspector" if isinstance(msg, SupervisorReport) else "hotline"
        return [
            Report(msg.occurred_at, stream, str(em.truth_grid), msg.category, msg.event_id, late)
        ]
    return []


def event_time_order(
    emissions: Iterator[SimEmission], zone: ZoneInfo, grace: timedelta, horizon: timedelta
) -> Iterator[Record]:
    """The emissions' records in event-time order: each is held until the broker's record
    time is ``horizon`` past it (longer than any reporting delay of the simulator)."""
    heap: list[tuple[int, int, Record]] = []
    seq = 0
    hold = horizon // timedelta(milliseconds=1)
    for em in emissions:
        for rec in records_of(em, zone, grace):
            seq += 1
            heapq.heappush(heap, (ms_of(rec.occurred_at), seq, rec))
        now = ms_of(em.record_ts)
        while heap and heap[0][0] < now - hold:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


# -- the detectors, fed as the worker feeds them --------------------------------------------

CountKey = tuple[str, str, str]
"""(level: ``grid`` / ``community`` / ``street``, that level's code, subcategory)."""


def grid_labels(path: GridPath) -> dict[str, str]:
    """The key labels of a grid (``GridPath`` of a warning)."""
    return {
        "district": path.district,
        "street": path.street,
        "community": path.community,
        "grid_code": path.grid,
    }


def count_keys(path: GridPath, category: str) -> list[CountKey]:
    """The keys an event of ``category`` in the grid counts towards: grid and roll-ups."""
    return [
        ("grid", path.grid, category),
        ("community", path.community, category),
        ("street", path.street, category),
    ]


def key_labels(key: CountKey, path: GridPath) -> dict[str, str]:
    """Labels of a count key: the grid path cut at its level, plus the category."""
    level, _, category = key
    labels = grid_labels(path)
    cut = {"grid": 4, "community": 3, "street": 2}[level]
    names = ("district", "street", "community", "grid_code")[:cut]
    return {**{n: labels[n] for n in names}, "category": category}


def fresh_state(detector: SeasonalDetector, since: datetime, at: datetime) -> SeriesState:
    """A key first seen at bucket ``at``: zero buckets from ``since`` up to it."""
    if at <= since:
        return detector.new_state()
    return detector.rebuild([], until=at, since=since)


@dataclass(slots=True)
class CountScale:
    """One time scale of the count detector: its open bucket and every key's state."""

    name: str
    width: timedelta
    detector: SeasonalDetector
    bucket: datetime
    states: dict[CountKey, SeriesState] = field(default_factory=dict)
    paths: dict[CountKey, GridPath] = field(default_factory=dict)
    counts: dict[CountKey, int] = field(default_factory=lambda: defaultdict(int))
    evidence: dict[CountKey, list[str]] = field(default_factory=lambda: defaultdict(list))


class WorkerDetectors:
    """Every ``streams.detect`` detector the simulated streams can feed, with its lifecycle.

    ``advance(t)`` closes the buckets that ended by ``t`` and runs the timers at ``t``;
    ``apply(record)`` feeds one record (after ``advance`` to its time). Published revisions
    accumulate in ``warnings`` in publication order.
    """

    def __init__(
        self,
        city: City,
        start: datetime,
        sensor_period: timedelta,
        config: DetectionConfig | None = None,
    ) -> None:
        self.config = config or DetectionConfig(timezone=city.timezone)
        self.zone = ZoneInfo(self.config.timezone)
        self.start = start
        self.paths = city.grid_paths
        grids = {g.code: g for g in city.iter_grids()}
        labels = {code: grid_labels(p) for code, p in self.paths.items()}
        sensor_grid = {s.id: s.grid for s in city.sensors}
        self.scales = [
            CountScale(
                name,
                width,
                SeasonalDetector(self.config.scales[name], width, self.config.timezone),
                bucket_start(start, width, self.zone),
            )
            for name, width in (("hour", HOUR), ("day", DAY))
            if name in self.config.scales
        ]
        polygons = {code: shape(g.polygon.model_dump()) for code, g in grids.items()}
        self.hotspots = Hotspots(adjacency(polygons), labels=labels)
        self.rules = SensorRules(labels=lambda sid: labels[sensor_grid[sid]])
        self.sensor_labels = {
            sid: {"sensor_id": sid, **labels[g]} for sid, g in sensor_grid.items()
        }
        self.values = SeasonalDetector(value_series(), sensor_period, self.config.timezone)
        self.value_states: dict[str, SeriesState] = {}
        self.patrol = PatrolGaps(labels=labels)
        self.patrol.track(sorted(grids), since=start)
        self.count_life = WarningLifecycle(self.config.lifecycle)
        self.rules_life = WarningLifecycle(RULES_LIFECYCLE)
        self.value_life = WarningLifecycle(value_lifecycle())
        self.warnings: list[EarlyWarning] = []

    def _publish(self, life: WarningLifecycle, found: list[Verdict]) -> None:
        self.warnings.extend(life.observe_all(found))

    def advance(self, t: datetime) -> None:
        """Close every bucket that ended by ``t``, then run the timers at ``t`` (caught up)."""
        for scale in self.scales:
            while scale.bucket + scale.width <= t:
                self._close(scale)
        self._publish(self.rules_life, self.rules.due_silent(t, t))
        self._publish(self.rules_life, self.patrol.due(t, t))

    def apply(self, record: Record) -> None:
        """Feed one record (inspector report, hotline request or sensor reading)."""
        if isinstance(record, SensorReading):
            self._reading(record)
            return
        if record.stream == "inspector":
            self._publish(
                self.rules_life,
                self.patrol.observe(record.grid, record.occurred_at, record.event_id),
            )
        if record.late:
            return
        path = self.paths[record.grid]
        for scale in self.scales:
            for key in count_keys(path, record.category):
                scale.counts[key] += 1
                scale.paths.setdefault(key, path)
                if len(scale.evidence[key]) < EVIDENCE_IDS:
                    scale.evidence[key].append(record.event_id)

    def _reading(self, r: SensorReading) -> None:
        self._publish(
            self.rules_life,
            self.rules.observe(r.sensor_id, r.kind, r.occurred_at, r.value, r.event_id),
        )
        state = self.value_states.get(r.sensor_id)
        if state is None:
            state = self.value_states[r.sensor_id] = self.values.new_state()
        a = self.values.update(state, r.occurred_at, r.value)
        if a is not None:
            key = self.sensor_labels[r.sensor_id]
            found = verdicts(self.values, a, key, name="seasonal-sensor", evidence=(r.event_id,))
            self._publish(self.value_life, found)

    def _close(self, scale: CountScale) -> None:
        """Judge the open bucket of ``scale`` for every key with a state, then move on."""
        b = scale.bucket
        detector = scale.detector
        counts, evidence = scale.counts, scale.evidence
        keys = sorted(set(scale.states) | set(counts))
        expected: dict[str, dict[str, float]] = defaultdict(dict)
        for key in keys:
            state = scale.states.get(key)
            if state is None:
                state = scale.states[key] = fresh_state(detector, self.start, b)
            category = key[2]
            a = detector.update(
                state, b, counts.get(key, 0), sensitivity_at(self.config, category, b)
            )
            if a is None:
                continue
            if key[0] == "grid" and a.warm:
                expected[category][key[1]] = a.expected
            found = verdicts(
                detector,
                a,
                key_labels(key, scale.paths[key]),
                name=f"seasonal-{scale.name}",
                evidence=tuple(evidence.get(key, ())),
                detect_drops=self.config.policy(category).detect_drops,
                scale=scale.name,
            )
            self._publish(self.count_life, found)
        if scale.name == "hour":
            self._hotspots(b, b + scale.width, counts, expected)
        scale.counts = defaultdict(int)
        scale.evidence = defaultdict(list)
        scale.bucket = bucket_start(b + scale.width + timedelta(seconds=1), scale.width, self.zone)

    def _hotspots(
        self,
        start: datetime,
        end: datetime,
        counts: Mapping[CountKey, int],
        expected: Mapping[str, Mapping[str, float]],
    ) -> None:
        by_category: dict[str, dict[str, int]] = defaultdict(dict)
        for (level, code, category), n in counts.items():
            if level == "grid":
                by_category[category][code] = n
        categories = sorted(set(by_category) | {c for c, hs in self.hotspots.open.items() if hs})
        for category in categories:
            found = self.hotspots.observe_window(
                category, start, end, by_category.get(category, {}), expected.get(category, {})
            )
            self._publish(self.rules_life, found)


@dataclass(frozen=True, slots=True)
class SimulatedRun:
    """One seed's outcome: the warning revisions published and the injected incidents."""

    setup: EvalSetup
    city: City
    warnings: list[EarlyWarning]
    incidents: list[Incident]
    sensor_period: timedelta


def simulate(setup: EvalSetup, config: DetectionConfig | None = None) -> SimulatedRun:
    """Run the simulator for ``setup`` offline and the detectors over it in event-time order."""
    city = eval_city(setup)
    sim_cfg = sim_config(setup, len(city.grid_paths))
    sim = Simulator(city, sim_cfg)
    zone = ZoneInfo(city.timezone)
    grace = timedelta(seconds=WindowSettings.model_fields["grace_seconds"].default)
    horizon = timedelta(
        seconds=sim_cfg.late_delay_s[1] + sim_cfg.gateway_interval_s + sim_cfg.delay_max_s
    )
    period = timedelta(seconds=sim_cfg.sensor_period_s / sim_cfg.rate)
    detectors = WorkerDetectors(city, setup.start, period, config)
    for record in event_time_order(iter(sim), zone, grace, horizon):
        detectors.advance(record.occurred_at)
        detectors.apply(record)
    detectors.advance(setup.end)
    return SimulatedRun(setup, city, detectors.warnings, sim.truth(), period)
