"""The early-warning stage of the worker: count anomalies per grid, community and street.

Contract:

- Every worker reports, each tick, how far each ingest partition it owns is stored
  (``ingest_progress``): the record time of the newest stored message, or the tick's wall
  time when the partition is caught up.
- The worker owning partition 0 of the inspector topic judges. An hour ``[b, b + 1h)`` is
  judged once every ingest partition has reported progress past ``b + 1h + grace``: its
  on-time counts are then final (anything later is late and counted apart). The hour's
  counts of inspector reports and hotline requests are read from the store, summed per grid,
  community and street × subcategory, and every known key is fed to the seasonal detector
  (0 where it has no row, so drops are seen). Verdicts become warning revisions through the
  lifecycle; they are published on the warnings topic, then stored, then the cursor moves.
- Taking over (first tick as judge): the lifecycle is rebuilt from the latest stored
  revisions, the detectors from the stored counts of the last ``history_hours``, the cursor
  from the store. With no cursor (a new deployment) judging starts ``backfill_hours`` before
  the last closed hour, so history raises no alarm unless asked to.

A revision is deterministic, so a crash between publishing and storing re-publishes the same
(fingerprint, revision), which consumers drop and the table stores once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import yaml
from shapely.geometry import shape

from core.city import UNLOCATED
from core.settings import Settings
from core.warning import EarlyWarning, fingerprint
from sinks.base import BatchSink, RetryPolicy, Store, StoreLayout
from sinks.base.store import DETECTION_CURSOR, INGEST_PROGRESS, WARNINGS, WindowCount
from streams.detect.backlog import BacklogSpikes, open_counts, snapshot_times
from streams.detect.backlog import rebuild as rebuild_backlog
from streams.detect.config import ALERT_THRESHOLD, DetectionConfig, sensitivity_at
from streams.detect.lifecycle import WarningLifecycle
from streams.detect.patrol import PatrolConfig, PatrolGaps
from streams.detect.patrol import rebuild as rebuild_patrol
from streams.detect.seasonal import SeasonalDetector, SeriesState, verdicts
from streams.detect.sensors import RULES_LIFECYCLE
from streams.detect.spatial import HotspotConfig, Hotspots, adjacency
from streams.detect.verdict import Verdict

log = logging.getLogger("gridpulse.warnings")

HOUR = 3600
SCALE = "hour"
DAY_SCALE = "day"
SCALE_SECONDS = {SCALE: HOUR, DAY_SCALE: 86_400}
"""The count scales the worker judges: hours (bursts) and local days (rises over days)."""
COUNTED_SOURCES = ("inspector", "hotline")
"""The streams whose hourly counts are judged (sensor readings have their own rules)."""

COUNT_KINDS = ("count_spike", "count_drop", "level_shift")
"""The warning kinds the count detector's verdicts carry."""
PATROL_KINDS = ("patrol_gap",)
HOTSPOT_KINDS = ("hotspot",)
BACKLOG_KINDS = ("backlog_spike",)

Key = tuple[tuple[str, str], ...]
"""A count key: sorted (label, value) pairs, e.g. district, street, grid_code, category."""

LEVELS: dict[str, tuple[str, ...]] = {
    "grid": ("district", "street", "community", "grid_code"),
    "community": ("district", "street", "community"),
    "street": ("district", "street"),
}
"""The places a count is judged at: each level's path labels."""


def keys_of(row: WindowCount) -> list[Key]:
    """The keys (one per level) a grid's hourly count adds to; none for unlocated events."""
    if row.grid_code == UNLOCATED or not row.district:
        return []
    path = {
        "district": row.district,
        "street": row.street,
        "community": row.community,
        "grid_code": row.grid_code,
    }
    return [
        tuple(sorted([*((label, path[label]) for label in labels), ("category", row.category)]))
        for labels in LEVELS.values()
    ]


def hour_counts(rows: Iterable[WindowCount]) -> Counter[Key]:
    """One hour's counts summed per key."""
    counts: Counter[Key] = Counter()
    for row in rows:
        for key in keys_of(row):
            counts[key] += row.n
    return counts


def load_detection_config(settings: Settings) -> DetectionConfig:
    """The detection config of ``settings.detect.config_file``, or the shipped defaults; the
    time zone is the city's unless the file names one."""
    path = settings.detect.config_file
    data: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    data.setdefault("timezone", settings.city.timezone)
    return DetectionConfig.model_validate(data)


def warning_row(w: EarlyWarning, published_at: int) -> dict[str, Any]:
    """A warning revision as the warnings table's row (times in epoch seconds)."""

    def s(t: datetime | None) -> int:
        return int(t.timestamp()) if t is not None else 0

    return {
        "fingerprint": w.fingerprint,
        "revision": w.revision,
        "status": w.status,
        "kind": w.kind,
        "severity": w.severity,
        "district": w.where.district,
        "street": w.where.street,
        "community": w.where.community,
        "grid_code": w.where.grid_code,
        "category": w.category,
        "sensor_id": w.sensor_id,
        "unit": w.unit,
        "window_start": s(w.window_start),
        "window_end": s(w.window_end),
        "observed": w.observed,
        "expected": w.expected,
        "score": w.score,
        "detector": w.detector,
        "params": json.dumps(w.params, sort_keys=True),
        "evidence": json.dumps(w.evidence),
        "summary": w.summary,
        "started_at": s(w.started_at),
        "updated_at": s(w.updated_at),
        "resolved_at": s(w.resolved_at),
        "published_at": published_at,
    }


class CountJudge:
    """The count detectors of every key and their warning lifecycle (pure, no I/O)."""

    def __init__(
        self,
        config: DetectionConfig,
        lifecycle: WarningLifecycle | None = None,
        scale: str = SCALE,
    ) -> None:
        self.config = config
        self.scale = scale
        interval = timedelta(seconds=SCALE_SECONDS[scale])
        self.detector = SeasonalDetector(config.scales[scale], interval, config.timezone)
        self.lifecycle = lifecycle or WarningLifecycle(config.lifecycle)
        self.states: dict[Key, SeriesState] = {}
        self._fingerprints: dict[Key, tuple[str, ...]] = {}
        self.since: datetime | None = None  # the first hour of the city's data
        # the last judged hour, per category: each grid's count, and its expectation when warm
        self.grid_counts: dict[str, dict[str, int]] = {}
        self.grid_expected: dict[str, dict[str, float]] = {}

    def rebuild(self, history: Iterable[WindowCount], until_s: int) -> None:
        """Detector states as if every hour from the first stored hour to ``until_s`` had
        been judged: a key's hours before its first count are zeros once the city's data has
        begun (the first hour with any count)."""
        series: dict[Key, list[tuple[datetime, float]]] = {}
        hours = sorted(_by_hour(history).items())
        for bucket_s, counts in hours:
            at = datetime.fromtimestamp(bucket_s, UTC)
            for key, n in counts.items():
                series.setdefault(key, []).append((at, float(n)))
        if not hours:
            self.states = {}
            return
        since = self.since = datetime.fromtimestamp(hours[0][0], UTC)
        until = datetime.fromtimestamp(until_s, UTC)
        rebuild = self.detector.rebuild
        self.states = {key: rebuild(rows, until=until, since=since) for key, rows in series.items()}

    def _open(self, key: Key) -> bool:
        """Whether any warning of ``key`` is firing."""
        fps = self._fingerprints.get(key)
        if fps is None:
            labels = {**dict(key), "scale": self.scale}
            fps = self._fingerprints[key] = tuple(fingerprint(k, labels) for k in COUNT_KINDS)
        tracks = self.lifecycle.tracks
        return any(fp in tracks and tracks[fp].firing for fp in fps)

    def judge(self, bucket_s: int, counts: Counter[Key]) -> list[EarlyWarning]:
        """Feed one closed hour to every key; the warning revisions it publishes."""
        at = datetime.fromtimestamp(bucket_s, UTC)
        if self.since is None:
            self.since = at
        self.grid_counts, self.grid_expected = {}, {}
        out: list[EarlyWarning] = []
        for key in sorted(set(self.states) | set(counts)):
            state = self.states.get(key)
            if state is None:  # a new key: zeros since the city's data began, as rebuilt
                state = self.detector.new_state()
                if self.since < at:
                    state = self.detector.rebuild([], until=at, since=self.since)
                self.states[key] = state
            labels = dict(key)
            category = labels["category"]
            grid = labels.get("grid_code")
            if grid is not None:
                self.grid_counts.setdefault(category, {})[grid] = int(counts.get(key, 0))
                if self.detector.is_warm(state):
                    self.grid_expected.setdefault(category, {})[grid] = self.detector.expected(
                        state, at
                    )
            assessment = self.detector.update(
                state, at, float(counts.get(key, 0)), sensitivity_at(self.config, category, at)
            )
            if assessment is None:
                continue
            if assessment.score < ALERT_THRESHOLD and not self._open(key):
                continue  # quiet, and nothing of this key is firing: the lifecycle has no use
            found = verdicts(
                self.detector,
                assessment,
                labels,
                detect_drops=self.config.policy(category).detect_drops,
                scale=self.scale,
            )
            out.extend(self.lifecycle.observe_all(found))
        return out


class PatrolJudge:
    """Patrol gaps per grid from the hourly inspector counts (pure, no I/O): a grid with no
    inspector report for longer than its interval warns, escalating with the gap; its next
    report resolves it. An hour with reports counts as patrolled up to its last second."""

    def __init__(
        self,
        grids: Mapping[str, Mapping[str, str]],
        config: PatrolConfig | None = None,
        lifecycle: WarningLifecycle | None = None,
    ) -> None:
        self.labels = grids
        self.config = config or PatrolConfig()
        self.lifecycle = lifecycle or WarningLifecycle(RULES_LIFECYCLE)
        self.gaps = PatrolGaps(self.config, grids)

    def rebuild(self, history: Iterable[WindowCount], until_s: int) -> None:
        """Each grid's last patrolled hour before ``until_s``; grids without one are watched
        from the first stored hour. Open gaps fire again at the next judged hour, and the
        lifecycle (rebuilt from the stored warnings) drops those already published."""
        last: dict[str, int] = {}
        first = until_s
        for row in history:
            first = min(first, row.bucket_s)
            if row.source == "inspector" and row.grid_code in self.labels:
                last[row.grid_code] = max(last.get(row.grid_code, 0), row.bucket_s + HOUR - 1)
        reports = {grid: (_at(t), "") for grid, t in last.items()}
        self.gaps = rebuild_patrol(reports, self.config, self.labels, self.labels, _at(first))

    def judge(self, bucket_s: int, rows: Iterable[WindowCount]) -> list[EarlyWarning]:
        """Feed one closed hour's inspector counts; the revisions it publishes."""
        end = bucket_s + HOUR
        if not self.gaps.grids:
            self.gaps.track(self.labels, _at(bucket_s))
        verdicts: list[Verdict] = []
        patrolled = {r.grid_code for r in rows if r.source == "inspector" and r.n > 0}
        for grid in sorted(patrolled & set(self.labels)):
            verdicts += self.gaps.observe(grid, _at(end - 1))
        verdicts += self.gaps.due(_at(end), _at(end))
        return self.lifecycle.observe_all(verdicts)


class HotspotJudge:
    """The same subcategory rising in adjacent grids within one hour (pure, no I/O): fed each
    judged hour's grid counts and the count detector's expectations of the warm grids."""

    def __init__(
        self,
        neighbours: Mapping[str, frozenset[str]],
        grids: Mapping[str, Mapping[str, str]],
        config: HotspotConfig | None = None,
        lifecycle: WarningLifecycle | None = None,
    ) -> None:
        self.hotspots = Hotspots(neighbours, config, grids)
        self.lifecycle = lifecycle or WarningLifecycle(RULES_LIFECYCLE)

    def restore(self, warnings: Iterable[EarlyWarning]) -> None:
        """The open hotspots of the firing hotspot warnings (anchor = grid, members = the
        ``grid:`` evidence, since = the window start)."""
        snapshot: dict[str, list[tuple[str, list[str], int]]] = {}
        for w in warnings:
            if w.kind == "hotspot" and w.status == "firing":
                members = [e.removeprefix("grid:") for e in w.evidence if e.startswith("grid:")]
                since = int(w.window_start.timestamp())
                snapshot.setdefault(w.category, []).append((w.where.grid_code, members, since))
        self.hotspots.restore(snapshot)

    def judge(
        self,
        bucket_s: int,
        counts: Mapping[str, Mapping[str, int]],
        expected: Mapping[str, Mapping[str, float]],
    ) -> list[EarlyWarning]:
        verdicts: list[Verdict] = []
        start, end = _at(bucket_s), _at(bucket_s + HOUR)
        for category in sorted(counts):
            verdicts += self.hotspots.observe_window(
                category, start, end, counts[category], expected.get(category, {})
            )
        return self.lifecycle.observe_all(verdicts)


class BacklogJudge:
    """A handling unit's open cases rising abnormally: one snapshot of open cases per unit at
    the end of each judged hour (pure, no I/O)."""

    def __init__(self, lifecycle: WarningLifecycle | None = None) -> None:
        self.spikes = BacklogSpikes()
        self.lifecycle = lifecycle or WarningLifecycle(RULES_LIFECYCLE)

    def rebuild(
        self, lifetimes: Iterable[tuple[str, int, int]], since_s: int, until_s: int
    ) -> None:
        """The baselines after hourly snapshots in ``[since_s, until_s)``, from the cases'
        lifetimes (unit, opened, ended or 0)."""
        cases = [(u, _at(o), _at(e) if e else None) for u, o, e in lifetimes]
        times = snapshot_times(_at(since_s + HOUR), _at(until_s + 1), timedelta(hours=1))
        self.spikes = rebuild_backlog(open_counts(cases, times))

    def judge(self, bucket_s: int, open_by_unit: Mapping[str, int]) -> list[EarlyWarning]:
        """The snapshot at the end of a judged hour; the revisions it publishes."""
        at = _at(bucket_s + HOUR)
        verdicts: list[Verdict] = []
        for unit in sorted(set(open_by_unit) | set(self.spikes.units)):
            verdicts += self.spikes.observe(unit, at, open_by_unit.get(unit, 0))
        return self.lifecycle.observe_all(verdicts)


def _is_daily(w: EarlyWarning) -> bool:
    """Whether a count warning is of the day scale (its detector's bucket is a day)."""
    return w.params.get("interval_s") == SCALE_SECONDS[DAY_SCALE]


def _at(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _by_hour(rows: Iterable[WindowCount]) -> dict[int, Counter[Key]]:
    hours: dict[int, list[WindowCount]] = {}
    for row in rows:
        hours.setdefault(row.bucket_s, []).append(row)
    return {b: hour_counts(r) for b, r in hours.items()}


def watermark_of(
    progress: Sequence[tuple[str, int, int, bool]], expected: set[tuple[str, int]]
) -> int | None:
    """The event time every ingest partition is stored past (None while one has not
    reported): the minimum of their reported progress."""
    seen = {(topic, part): progress_s for topic, part, progress_s, _ in progress}
    if not expected <= set(seen):
        return None
    return min(seen[tp] for tp in expected)


def closed_hours(after_s: int | None, watermark_s: int, grace_s: int) -> list[int]:
    """Starts of the hours after ``after_s`` whose end plus grace the watermark has passed."""
    last = (watermark_s - grace_s) // HOUR * HOUR - HOUR  # the last hour ending in time
    first = last if after_s is None else after_s + HOUR
    return list(range(first, last + HOUR, HOUR)) if first <= last else []


def day_start(epoch_s: int, timezone: str) -> int:
    """The local midnight (epoch s) starting the day that holds ``epoch_s``."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(epoch_s, zone)
    return int(datetime(local.year, local.month, local.day, tzinfo=zone).timestamp())


def next_day(day_s: int, timezone: str) -> int:
    """The local midnight after the day starting at ``day_s`` (23 to 25 h later with DST)."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(day_s, zone) + timedelta(days=1)
    return int(datetime(local.year, local.month, local.day, tzinfo=zone).timestamp())


def closed_days(after_s: int | None, watermark_s: int, grace_s: int, timezone: str) -> list[int]:
    """Starts (local midnight, epoch s) of the days after ``after_s`` whose end plus grace
    the watermark has passed; with no ``after_s``, the last such day only."""
    if after_s is None:
        open_day = day_start(watermark_s - grace_s, timezone)
        return [day_start(open_day - 1, timezone)]
    days = []
    day = next_day(after_s, timezone)
    while next_day(day, timezone) + grace_s <= watermark_s:
        days.append(day)
        day = next_day(day, timezone)
    return days


Send = Callable[[str, bytes | None, bytes, float | None, list], Awaitable[Any]]


class WarningOutlet:
    """Where warning revisions go: published on the warnings topic (key = fingerprint), then
    stored (idempotent by fingerprint × revision); waits out store outages."""

    def __init__(self, settings: Settings, store: Store, layout: StoreLayout, send: Send) -> None:
        self.topic = settings.topics.warnings
        self.store = store
        self.send = send
        self.layout = layout
        retry = RetryPolicy(settings.sink.retry_initial_seconds, settings.sink.retry_max_seconds)
        self.sink = BatchSink(store, [], retry)
        self.published = 0

    async def emit(self, warnings: list[EarlyWarning]) -> None:
        if not warnings:
            return
        futures = [
            await self.send(
                self.topic, w.fingerprint.encode(), w.model_dump_json().encode(), None, []
            )
            for w in warnings
        ]
        await asyncio.gather(*futures)
        now = int(time.time())
        frame = pd.DataFrame(
            [warning_row(w, now) for w in warnings],
            columns=list(self.layout.table(WARNINGS).columns),
        )
        await self.insert(WARNINGS, frame, f"storing {len(warnings)} warnings")
        self.published += len(warnings)

    async def insert(self, role: str, frame: pd.DataFrame, what: str) -> None:
        table = self.layout.table(role).name
        await self.sink.retrying(what, lambda: self.store.insert(table, frame))


class WarningRuntime:
    """The warning stage of one worker: progress reports, and judging when it is the judge."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        layout: StoreLayout,
        send: Send,
        progress: Callable[[float], list[tuple[str, int, int, bool]]],
        assigned: Callable[[], set[tuple[str, int]]],
        config: DetectionConfig | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.send = send
        self.progress = progress
        self.assigned = assigned
        self.config = config or load_detection_config(settings)
        self.tables = {role: layout.table(role) for role in (INGEST_PROGRESS, DETECTION_CURSOR)}
        self.outlet = WarningOutlet(settings, store, layout, send)
        self.sink = self.outlet.sink
        self.judge: CountJudge | None = None
        self.patrol: PatrolJudge | None = None
        self.hotspots: HotspotJudge | None = None
        self.backlog: BacklogJudge | None = None
        self.day_judge: CountJudge | None = None
        self.day_cursor: int | None = None
        self._neighbours: dict[str, frozenset[str]] | None = None
        paths = settings.city.grid_paths
        self.grid_labels: dict[str, Mapping[str, str]] = {
            code: {
                "district": p.district,
                "street": p.street,
                "community": p.community,
                "grid_code": code,
            }
            for code, p in paths.items()
            if p.district
        }
        self.cursor: int | None = None
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect")
        self.stats = {"hours_judged": 0, "published": 0, "firing": 0, "last_judged": 0}
        self.latencies: list[float] = []  # end of an hour with warnings -> warnings stored

    @property
    def judge_partition(self) -> tuple[str, int]:
        return (self.settings.topics.inspector, 0)

    def expected_partitions(self) -> set[tuple[str, int]]:
        n = self.settings.topics.partitions
        return {(topic, p) for topic in self.settings.topics.ingest for p in range(n)}

    async def tick(self, now: float | None = None) -> list[EarlyWarning]:
        """Report progress; if this worker judges, judge every newly closed hour."""
        now = time.time() if now is None else now
        await self._report_progress(now)
        if self.judge_partition not in self.assigned():
            self.judge = self.patrol = self.hotspots = self.backlog = None  # rebuilt on return
            self.day_judge = None
            return []
        rows = await self.store.ingest_progress()
        watermark = watermark_of(rows, self.expected_partitions())
        if watermark is None:
            return []
        grace = self.settings.window.grace_seconds
        if self.judge is None:
            await self._take_over(watermark, grace)
        out: list[EarlyWarning] = []
        for bucket in closed_hours(self.cursor, watermark, grace):
            out.extend(await self._judge_hour(bucket, now))
        if self.day_judge is not None:
            for day in closed_days(self.day_cursor, watermark, grace, self.config.timezone):
                out.extend(await self._judge_day(day))
        return out

    def neighbours(self) -> dict[str, frozenset[str]]:
        """Grid adjacency from the city's polygons (edge neighbours), computed once."""
        if self._neighbours is None:
            polygons = {
                g.code: shape(g.polygon.model_dump())
                for g in self.settings.city.iter_grids()
                if g.polygon is not None
            }
            self._neighbours = adjacency(polygons, min_shared=1e-6)
        return self._neighbours

    async def _report_progress(self, now: float) -> None:
        rows = self.progress(now)
        if not rows:
            return
        frame = pd.DataFrame(
            [(t, p, s, int(c), int(now)) for t, p, s, c in rows],
            columns=list(self.tables[INGEST_PROGRESS].columns),
        )
        await self.outlet.insert(INGEST_PROGRESS, frame, "reporting ingest progress")

    async def _take_over(self, watermark: int, grace: int) -> None:
        stored = await self.sink.retrying("reading warnings", self.store.latest_warnings)
        daily = [w for w in stored if w.kind in COUNT_KINDS and _is_daily(w)]
        lifecycle = WarningLifecycle.rebuild(
            [w for w in stored if w.kind in COUNT_KINDS and not _is_daily(w)],
            self.config.lifecycle,
        )
        patrol_lifecycle = WarningLifecycle.rebuild(
            [w for w in stored if w.kind in PATROL_KINDS], RULES_LIFECYCLE
        )
        hotspot_warnings = [w for w in stored if w.kind in HOTSPOT_KINDS]
        backlog_lifecycle = WarningLifecycle.rebuild(
            [w for w in stored if w.kind in BACKLOG_KINDS], RULES_LIFECYCLE
        )
        cursor = await self.sink.retrying(
            "reading the detection cursor", lambda: self.store.detection_cursor(SCALE)
        )
        if cursor is None:
            closed = closed_hours(None, watermark, grace)
            last = closed[-1] if closed else (watermark - grace) // HOUR * HOUR - HOUR
            cursor = last - self.settings.detect.backfill_hours * HOUR
        resume = cursor + HOUR
        replay = lifecycle.replay_from()
        if replay is not None:
            resume = min(resume, int(replay.timestamp()) // HOUR * HOUR)
        since = resume - self.settings.detect.history_hours * HOUR
        history = await self.sink.retrying(
            "reading count history",
            lambda: self.store.window_counts("1h", since, resume, COUNTED_SOURCES),
        )
        judge = CountJudge(self.config, lifecycle)
        loop = asyncio.get_running_loop()
        t = time.perf_counter()
        await loop.run_in_executor(self._cpu, judge.rebuild, history, resume)
        if self.settings.detect.patrol_gaps:
            self.patrol = PatrolJudge(self.grid_labels, lifecycle=patrol_lifecycle)
            self.patrol.rebuild(history, resume)
        if self.settings.detect.hotspots:
            lifecycle_h = WarningLifecycle.rebuild(hotspot_warnings, RULES_LIFECYCLE)
            self.hotspots = HotspotJudge(self.neighbours(), self.grid_labels, lifecycle=lifecycle_h)
            self.hotspots.restore(hotspot_warnings)
        if self.settings.detect.backlog:
            lifetimes = await self.sink.retrying(
                "reading case lifetimes", lambda: self.store.case_lifetimes(since)
            )
            self.backlog = BacklogJudge(backlog_lifecycle)
            self.backlog.rebuild(lifetimes, since, resume)
        self.judge, self.cursor = judge, resume - HOUR
        if self.settings.detect.day_scale:
            await self._take_over_days(watermark, grace, daily)
        self.stats["firing"] = len(lifecycle.firing())
        log.info(
            "warnings: judging from %s; %d keys rebuilt from %d stored counts in %.1fs, "
            "%d warnings open",
            datetime.fromtimestamp(resume, UTC).isoformat(),
            len(judge.states),
            len(history),
            time.perf_counter() - t,
            self.stats["firing"],
        )

    async def _take_over_days(self, watermark: int, grace: int, stored: list[EarlyWarning]) -> None:
        """The day scale: its own lifecycle, cursor and detectors (from ``counts_1d``)."""
        tz = self.config.timezone
        lifecycle = WarningLifecycle.rebuild(stored, self.config.lifecycle)
        cursor = await self.sink.retrying(
            "reading the day cursor", lambda: self.store.detection_cursor(DAY_SCALE)
        )
        if cursor is None:
            cursor = closed_days(None, watermark, grace, tz)[0]
        resume = next_day(cursor, tz)
        replay = lifecycle.replay_from()
        if replay is not None:
            resume = min(resume, day_start(int(replay.timestamp()) - 1, tz))
        since = resume - self.settings.detect.day_history_days * 86_400
        history = await self.sink.retrying(
            "reading daily count history",
            lambda: self.store.window_counts("1d", since, resume, COUNTED_SOURCES),
        )
        judge = CountJudge(self.config, lifecycle, scale=DAY_SCALE)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._cpu, judge.rebuild, history, resume)
        self.day_judge = judge
        self.day_cursor = day_start(resume - 1, tz)

    async def _judge_day(self, day: int) -> list[EarlyWarning]:
        assert self.day_judge is not None
        end = next_day(day, self.config.timezone)
        rows = await self.sink.retrying(
            "reading a day's counts",
            lambda: self.store.window_counts("1d", day, end, COUNTED_SOURCES),
        )
        loop = asyncio.get_running_loop()
        warnings = await loop.run_in_executor(
            self._cpu, self.day_judge.judge, day, hour_counts(rows)
        )
        await self.outlet.emit(warnings)
        cursor = pd.DataFrame(
            [(DAY_SCALE, day, int(time.time()))],
            columns=list(self.tables[DETECTION_CURSOR].columns),
        )
        await self.outlet.insert(DETECTION_CURSOR, cursor, "moving the day cursor")
        self.day_cursor = day
        self.stats["days_judged"] = self.stats.get("days_judged", 0) + 1
        self.stats["published"] += len(warnings)
        return warnings

    async def _judge_hour(self, bucket: int, now: float) -> list[EarlyWarning]:
        assert self.judge is not None
        rows = await self.sink.retrying(
            "reading an hour's counts",
            lambda: self.store.window_counts("1h", bucket, bucket + HOUR, COUNTED_SOURCES),
        )
        counts = hour_counts(rows)
        loop = asyncio.get_running_loop()
        warnings = await loop.run_in_executor(self._cpu, self.judge.judge, bucket, counts)
        if self.patrol is not None:
            warnings += self.patrol.judge(bucket, rows)
        if self.hotspots is not None:
            judge = self.judge
            warnings += self.hotspots.judge(bucket, judge.grid_counts, judge.grid_expected)
        if self.backlog is not None:
            backlog = await self.sink.retrying(
                "reading open cases", lambda: self.store.open_cases(bucket + HOUR)
            )
            warnings += self.backlog.judge(bucket, backlog)
        await self.outlet.emit(warnings)
        cursor = pd.DataFrame(
            [(SCALE, bucket, int(time.time()))], columns=list(self.tables[DETECTION_CURSOR].columns)
        )
        await self.outlet.insert(DETECTION_CURSOR, cursor, "moving the detection cursor")
        self.cursor = bucket
        self.stats["hours_judged"] += 1
        self.stats["published"] += len(warnings)
        self.stats["firing"] = len(self.judge.lifecycle.firing())
        self.stats["last_judged"] = bucket
        if warnings:
            self.latencies.append(time.time() - (bucket + HOUR))
        return warnings

    def snapshot(self) -> dict[str, Any]:
        judge = self.judge
        recent = sorted(self.latencies[-1000:])
        latency = (
            {"p50": round(recent[len(recent) // 2], 1), "max": round(recent[-1], 1)}
            if recent
            else {}
        )
        return {
            **self.stats,
            "window_end_to_stored_s": latency,
            "judging": judge is not None,
            "keys": len(judge.states) if judge else 0,
            "cursor": self.cursor or 0,
        }
