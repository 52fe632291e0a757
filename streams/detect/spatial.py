"""Spatial detectors: hotspots over adjacent grids, duplicate clusters of reports, repeat
complaints.

- ``adjacency(polygons, tolerance)``: which grids touch (pure, shapely STRtree).
- ``Hotspots``: per category and closed count window, the grids whose count is improbably
  high for their expected count (Poisson / negative-binomial upper tail, from
  ``streams.detect.seasonal``) form connected components over the adjacency; a component of
  at least ``min_grids`` rising grids is a hotspot. The expected counts come from the caller
  (the seasonal count detector's expectation per grid x category), so no baseline is kept
  twice; a grid without an expectation (not warm yet) is never rising.
- ``DuplicateClusters``: a located report joins the nearest open cluster of its category
  whose seed lies within ``radius_m`` (haversine) and whose last report is within ``window``;
  otherwise it seeds a new cluster. A cluster of ``min_reports`` is one problem reported
  many times: a ``duplicate_cluster`` verdict with its member event ids as evidence.
- ``RepeatComplaints``: the same hashed caller or the same (normalised, hashed) address
  complaining ``min_complaints`` times within ``within``.

Every detector takes whole-second event times, emits verdicts on changes, and has a timer
(``expire(now, watermark)``) gated like the others: ``min(now, watermark)`` is the clock, so a
replayed backlog never ages anything out early. Each state is rebuilt by streaming the stored
rows again (``rebuild_*``) and equals the streamed state (``snapshot()``).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
import unicodedata
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import shapely
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.warning import Severity
from streams.detect.seasonal import nb_upper_tail, surprise_score
from streams.detect.verdict import Verdict

EARTH_RADIUS_M = 6_371_008.8


def _sec(at: datetime) -> int:
    return math.floor(at.timestamp())


def _dt(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _graded(n: float, grades: tuple[tuple[float, Severity], ...]) -> Severity | None:
    """The severity of the highest grade whose threshold ``n`` reaches."""
    severity: Severity | None = None
    for threshold, sev in grades:
        if n >= threshold:
            severity = sev
    return severity


# -- adjacency ------------------------------------------------------------------------------


def adjacency(
    polygons: Mapping[str, shapely.Polygon], tolerance: float = 1e-9, min_shared: float = 0.0
) -> dict[str, frozenset[str]]:
    """Neighbours of every grid: polygons within ``tolerance`` of each other (in the polygons'
    units, degrees for lon/lat). ``min_shared > 0`` also requires a shared boundary at least
    that long (edge neighbours only, no corner contact). Symmetric, irreflexive; every grid
    is a key."""
    codes = sorted(polygons)
    geoms = [polygons[c] for c in codes]
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="dwithin", distance=tolerance)
    neighbours: dict[str, set[str]] = {c: set() for c in codes}
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i >= j:
            continue
        a, b = geoms[i], geoms[j]
        if min_shared > 0.0:
            shared = a.boundary.buffer(tolerance).intersection(b.boundary).length
            if shared < min_shared:
                continue
        neighbours[codes[i]].add(codes[j])
        neighbours[codes[j]].add(codes[i])
    return {c: frozenset(n) for c, n in neighbours.items()}


def components(nodes: Iterable[str], neighbours: Mapping[str, frozenset[str]]) -> list[list[str]]:
    """Connected components of ``nodes`` in the graph restricted to them, each sorted, in
    order of their smallest node."""
    todo = set(nodes)
    out: list[list[str]] = []
    for start in sorted(todo):
        if start not in todo:
            continue
        todo.discard(start)
        comp, stack = [start], [start]
        while stack:
            for nb in neighbours.get(stack.pop(), frozenset()):
                if nb in todo:
                    todo.discard(nb)
                    comp.append(nb)
                    stack.append(nb)
        out.append(sorted(comp))
    return out


# -- hotspots -------------------------------------------------------------------------------


class HotspotConfig(BaseModel):
    """When rising grids make a hotspot. ``grid_surprise`` is -log10 of the upper-tail
    probability a grid's count must reach (2 = p <= 0.01)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_grids: int = Field(3, ge=2)
    keep_grids: int = Field(2, ge=1)  # an open hotspot lives on with this many rising grids
    min_count: int = Field(2, ge=1)
    grid_surprise: float = Field(2.0, gt=0)
    grades: tuple[tuple[float, Severity], ...] = ((3, "minor"), (6, "major"), (12, "critical"))

    @model_validator(mode="after")
    def _keep_le_min(self) -> HotspotConfig:
        if self.keep_grids > self.min_grids:
            raise ValueError("keep_grids must not exceed min_grids")
        return self


@dataclass(slots=True)
class OpenHotspot:
    """A hotspot being tracked: its anchor grid (the key), members and start."""

    anchor: str
    members: frozenset[str]
    since: int


@dataclass(frozen=True, slots=True)
class RisingGrid:
    grid: str
    count: int
    expected: float
    surprise: float


class Hotspots:
    """Hotspot detector for one set of grids; ``labels`` adds key labels per anchor grid."""

    def __init__(
        self,
        neighbours: Mapping[str, frozenset[str]],
        config: HotspotConfig | None = None,
        labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.neighbours = neighbours
        self.config = config or HotspotConfig()
        self._labels = labels or {}
        self.open: dict[str, list[OpenHotspot]] = {}  # per category
        self.last_window: dict[str, int] = {}

    def rising(
        self,
        counts: Mapping[str, int],
        expected: Mapping[str, float],
        dispersion: Mapping[str, float] | None = None,
    ) -> list[RisingGrid]:
        """Grids whose count is at least ``min_count`` and improbably high for its expected
        count; grids without an expectation are skipped."""
        cfg = self.config
        out: list[RisingGrid] = []
        for grid, count in counts.items():
            mean = expected.get(grid)
            if mean is None or count < cfg.min_count or count <= mean:
                continue
            disp = dispersion.get(grid, 0.0) if dispersion else 0.0
            p = nb_upper_tail(float(count), max(mean, 1e-9), disp)
            s = 300.0 if p <= 0.0 else -math.log10(p)
            if s >= cfg.grid_surprise:
                out.append(RisingGrid(grid, count, mean, s))
        return out

    def observe_window(
        self,
        category: str,
        window_start: datetime,
        window_end: datetime,
        counts: Mapping[str, int],
        expected: Mapping[str, float],
        dispersion: Mapping[str, float] | None = None,
    ) -> list[Verdict]:
        """Judge one closed window of one category (windows in order per category).

        Returns a verdict per open hotspot (firing while it lives, quiet when it ends or
        merges into an older one). A hotspot keeps its anchor grid, hence its fingerprint,
        as long as consecutive windows' components overlap it.
        """
        cfg = self.config
        ws = _sec(window_start)
        if ws <= self.last_window.get(category, -1):
            return []
        self.last_window[category] = ws
        rising = {r.grid: r for r in self.rising(counts, expected, dispersion)}
        comps = [c for c in components(rising, self.neighbours) if len(c) >= cfg.keep_grids]
        previous = sorted(self.open.get(category, []), key=lambda h: (h.since, h.anchor))
        claimed: set[int] = set()
        now_open: list[OpenHotspot] = []
        out: list[Verdict] = []
        for hot in previous:
            match = next(
                (
                    i
                    for i, c in enumerate(comps)
                    if i not in claimed and hot.members.intersection(c)
                ),
                None,
            )
            if match is None:
                out.append(self._verdict(category, hot, ws, _sec(window_end), [], False))
                continue
            claimed.add(match)
            hot.members = frozenset(comps[match])
            now_open.append(hot)
            members = [rising[g] for g in comps[match]]
            out.append(self._verdict(category, hot, ws, _sec(window_end), members, True))
        for i, comp in enumerate(comps):
            if i in claimed or len(comp) < cfg.min_grids:
                continue
            members = [rising[g] for g in comp]
            anchor = max(members, key=lambda r: (r.surprise, r.count, _neg(r.grid))).grid
            hot = OpenHotspot(anchor, frozenset(comp), ws)
            now_open.append(hot)
            out.append(self._verdict(category, hot, ws, _sec(window_end), members, True))
        self.open[category] = now_open
        return out

    def _verdict(
        self,
        category: str,
        hot: OpenHotspot,
        ws: int,
        we: int,
        members: list[RisingGrid],
        firing: bool,
    ) -> Verdict:
        cfg = self.config
        total_s = sum(r.surprise for r in members)
        severity: Severity | None = None
        if firing:
            severity = _graded(len(members), cfg.grades) or "minor"
        return Verdict(
            kind="hotspot",
            key={**self._labels.get(hot.anchor, {}), "grid_code": hot.anchor, "category": category},
            severity=severity,
            observed=float(sum(r.count for r in members)),
            expected=sum(r.expected for r in members),
            score=max(0.5, surprise_score(total_s, cfg.min_grids * cfg.grid_surprise))
            if firing
            else 0.0,
            window_start=_dt(min(hot.since, ws)),
            window_end=_dt(we),
            detector="hotspot_adjacent",
            params={
                "grids": len(members),
                "min_grids": cfg.min_grids,
                "grid_surprise": cfg.grid_surprise,
            },
            evidence=tuple(f"grid:{r.grid}" for r in sorted(members, key=lambda r: r.grid)),
            summary=(
                f"{category} rising in {len(members)} adjacent grids around {hot.anchor}"
                if firing
                else f"{category} hotspot around {hot.anchor} has ended"
            ),
        )

    def snapshot(self) -> dict[str, list[tuple[str, list[str], int]]]:
        """Open hotspots per category as JSON-ready tuples (anchor, members, since)."""
        return {
            c: [(h.anchor, sorted(h.members), h.since) for h in hs]
            for c, hs in sorted(self.open.items())
            if hs
        }

    def restore(self, snapshot: Mapping[str, Iterable[tuple[str, Iterable[str], int]]]) -> None:
        """Replace the open hotspots by a ``snapshot()``. The open hotspot warnings hold the
        same facts (anchor = ``grid_code``, members = the ``grid:`` evidence ids, since =
        ``window_start``), so the state can be restored from them on partition gain."""
        self.open = {
            c: [OpenHotspot(a, frozenset(m), since) for a, m, since in hs]
            for c, hs in snapshot.items()
        }


def _neg(code: str) -> tuple[int, ...]:
    """Sort key that puts the smallest code last under ``max`` (ties → smallest code)."""
    return tuple(-ord(ch) for ch in code)


def rebuild_hotspots(
    windows: Iterable[tuple[str, datetime, datetime, Mapping[str, int], Mapping[str, float]]],
    neighbours: Mapping[str, frozenset[str]],
    config: HotspotConfig | None = None,
) -> Hotspots:
    """Hotspots after replaying closed windows ``(category, start, end, counts, expected)``."""
    det = Hotspots(neighbours, config)
    for category, start, end, counts, expected in windows:
        det.observe_window(category, start, end, counts, expected)
    return det


# -- duplicate clusters ---------------------------------------------------------------------


class ClusterRule(BaseModel):
    """Radius and time window within which reports of one category are one problem."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    radius_m: float = Field(75.0, gt=0)
    window: timedelta = timedelta(hours=72)


class ClusterConfig(BaseModel):
    """Duplicate clustering: a default rule, overrides per category, and the cluster sizes
    that become warnings of each severity (the first grade is the firing size)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: ClusterRule = ClusterRule()
    categories: dict[str, ClusterRule] = Field(default_factory=dict)
    grades: tuple[tuple[int, Severity], ...] = ((3, "info"), (5, "minor"), (10, "major"))

    def rule(self, category: str) -> ClusterRule:
        return self.categories.get(category, self.default)

    @property
    def min_reports(self) -> int:
        return self.grades[0][0]


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(slots=True)
class Cluster:
    """Reports of one problem: seeded by its first report, open until ``window`` passes
    without a new one."""

    cluster_id: str
    category: str
    grid: str
    lon: float
    lat: float
    cell: tuple[int, int]
    first_t: int
    last_t: int
    size: int = 1
    members: list[str] = field(default_factory=list)  # first 100 event ids
    severity: Severity | None = None


@dataclass(frozen=True, slots=True)
class ClusterAssignment:
    """Where a report went: its cluster (id and size now) and any verdict it caused."""

    cluster_id: str
    size: int
    verdicts: list[Verdict]


class DuplicateClusters:
    """Online duplicate clustering of located reports, per category."""

    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        self.clusters: dict[str, Cluster] = {}
        self._cells: dict[tuple[str, int, int], list[str]] = {}
        self._heap: list[tuple[int, str]] = []  # (expiry, cluster id), lazily corrected
        self.ref_lat: float | None = None  # fixed by the first report

    def _cell(self, category: str, lon: float, lat: float) -> tuple[int, int]:
        assert self.ref_lat is not None
        size = self.config.rule(category).radius_m * 1.1
        x = math.radians(lon) * EARTH_RADIUS_M * math.cos(math.radians(self.ref_lat))
        y = math.radians(lat) * EARTH_RADIUS_M
        return math.floor(x / size), math.floor(y / size)

    def observe(
        self,
        event_id: str,
        category: str,
        at: datetime,
        lon: float,
        lat: float,
        grid: str = "",
    ) -> ClusterAssignment:
        """Assign a located report to a cluster; verdicts when the cluster reaches the first
        grade or grows while firing (updated evidence)."""
        t = _sec(at)
        rule = self.config.rule(category)
        window = math.ceil(rule.window.total_seconds())
        if self.ref_lat is None:
            self.ref_lat = round(lat, 1)
        cx, cy = self._cell(category, lon, lat)
        best: tuple[float, str] | None = None
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for cid in self._cells.get((category, cx + dx, cy + dy), ()):
                    c = self.clusters[cid]
                    if t - c.last_t > window or t < c.first_t:
                        continue
                    d = haversine_m(lon, lat, c.lon, c.lat)
                    if d <= rule.radius_m and (best is None or (d, cid) < best):
                        best = (d, cid)
        if best is None:
            cid = f"{category}/{event_id}"
            c = Cluster(cid, category, grid, lon, lat, (cx, cy), t, t, 1, [event_id])
            self.clusters[cid] = c
            self._cells.setdefault((category, cx, cy), []).append(cid)
            heapq.heappush(self._heap, (t + window, cid))
            return ClusterAssignment(cid, 1, [])
        c = self.clusters[best[1]]
        c.size += 1
        c.last_t = max(c.last_t, t)
        if len(c.members) < 100:
            c.members.append(event_id)
        sev = _graded(c.size, self.config.grades)
        if sev is None:
            return ClusterAssignment(c.cluster_id, c.size, [])
        c.severity = sev
        return ClusterAssignment(c.cluster_id, c.size, [self._verdict(c, t, sev)])

    def expire(self, now: datetime, watermark: datetime) -> list[Verdict]:
        """Close clusters whose window has passed at ``min(now, watermark)``; a quiet verdict
        for each one that had fired."""
        clock = min(_sec(now), _sec(watermark))
        out: list[Verdict] = []
        while self._heap and self._heap[0][0] < clock:
            _, cid = heapq.heappop(self._heap)
            c = self.clusters.get(cid)
            if c is None:
                continue
            expiry = c.last_t + math.ceil(self.config.rule(c.category).window.total_seconds())
            if expiry >= clock:
                heapq.heappush(self._heap, (expiry, cid))
                continue
            del self.clusters[cid]
            cell = self._cells[(c.category, *c.cell)]
            cell.remove(cid)
            if not cell:
                del self._cells[(c.category, *c.cell)]
            if c.severity is not None:
                c.severity = None
                out.append(self._verdict(c, clock, None))
        return out

    def _verdict(self, c: Cluster, t: int, severity: Severity | None) -> Verdict:
        rule = self.config.rule(c.category)
        key = {"category": c.category, "cluster": c.cluster_id}
        if c.grid:
            key["grid_code"] = c.grid
        return Verdict(
            kind="duplicate_cluster",
            key=key,
            severity=severity,
            observed=float(c.size),
            expected=1.0,
            score=(1.0 - 1.0 / c.size) if severity else 0.0,
            window_start=_dt(c.first_t),
            window_end=_dt(max(t, c.first_t)),
            detector="duplicate_cluster",
            params={"radius_m": rule.radius_m, "window_h": rule.window.total_seconds() / 3600},
            evidence=tuple(c.members),
            summary=f"{c.size} reports of {c.category} within {rule.radius_m:g} m",
        )

    def snapshot(self) -> dict[str, tuple[str, str, float, float, int, int, int, list[str], str]]:
        """Open clusters as JSON-ready tuples."""
        return {
            cid: (
                c.category,
                c.grid,
                c.lon,
                c.lat,
                c.first_t,
                c.last_t,
                c.size,
                list(c.members),
                c.severity or "",
            )
            for cid, c in sorted(self.clusters.items())
        }


@dataclass(frozen=True, slots=True)
class ReportRow:
    """A stored located report (inspector report or hotline request) for a rebuild."""

    event_id: str
    category: str
    at: datetime
    lon: float
    lat: float
    grid: str = ""
    caller_hash: str = ""
    address: str = ""


def rebuild_clusters(
    rows: Iterable[ReportRow],
    config: ClusterConfig | None = None,
    watermark: datetime | None = None,
) -> DuplicateClusters:
    """Clusters after replaying stored reports in consumption order, expired at
    ``watermark`` if given (as the timer would have)."""
    det = DuplicateClusters(config)
    for r in rows:
        det.observe(r.event_id, r.category, r.at, r.lon, r.lat, r.grid)
    if watermark is not None:
        det.expire(watermark, watermark)
    return det


# -- repeat complaints ----------------------------------------------------------------------


class RepeatConfig(BaseModel):
    """Repeat complaints: ``grades`` of complaint counts within ``within`` (the first grade is
    the firing count); per category or across categories."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    within: timedelta = timedelta(days=30)
    per_category: bool = True
    grades: tuple[tuple[int, Severity], ...] = ((2, "info"), (3, "minor"), (5, "major"))


_ADDRESS_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)


def address_key(address: str) -> str:
    """A privacy-preserving key of an address: NFKC, case-folded, without spaces and
    punctuation, hashed (16 hex digits); "" for an empty address."""
    norm = _ADDRESS_NOISE.sub("", unicodedata.normalize("NFKC", address).casefold())
    return hashlib.sha256(norm.encode()).hexdigest()[:16] if norm else ""


@dataclass(slots=True)
class Complaints:
    """Recent complaints of one subject (caller or address), oldest first."""

    times: deque[int] = field(default_factory=deque)
    events: deque[str] = field(default_factory=deque)
    severity: Severity | None = None


class RepeatComplaints:
    """Repeat complaints by hashed caller and by hashed address."""

    def __init__(self, config: RepeatConfig | None = None) -> None:
        self.config = config or RepeatConfig()
        self.subjects: dict[tuple[str, str, str], Complaints] = {}  # (label, value, category)
        self._heap: list[tuple[int, tuple[str, str, str]]] = []

    def observe(
        self, event_id: str, category: str, at: datetime, caller_hash: str = "", address: str = ""
    ) -> list[Verdict]:
        """Count a complaint for its caller and its address; a verdict for each subject whose
        grade changes (usually reached or climbed)."""
        t = _sec(at)
        span = math.ceil(self.config.within.total_seconds())
        cat = category if self.config.per_category else ""
        out: list[Verdict] = []
        for label, value in (("caller", caller_hash), ("address", address_key(address or ""))):
            if not value:
                continue
            key = (label, value, cat)
            c = self.subjects.get(key)
            if c is None:
                c = self.subjects[key] = Complaints()
            if c.times and t < c.times[-1]:
                continue
            self._prune(c, t - span)
            c.times.append(t)
            c.events.append(event_id)
            heapq.heappush(self._heap, (c.times[0] + span, key))
            sev = _graded(len(c.times), self.config.grades)
            if sev != c.severity:  # older complaints may have aged out since the timer ran
                c.severity = sev
                out.append(self._verdict(key, c, t))
        return out

    @staticmethod
    def _prune(c: Complaints, cutoff: int) -> None:
        while c.times and c.times[0] <= cutoff:
            c.times.popleft()
            c.events.popleft()

    def expire(self, now: datetime, watermark: datetime) -> list[Verdict]:
        """Age complaints out at ``min(now, watermark)``: quiet verdicts for subjects that
        fall below the firing count, severity changes for those that fall a grade."""
        clock = min(_sec(now), _sec(watermark))
        span = math.ceil(self.config.within.total_seconds())
        out: list[Verdict] = []
        while self._heap and self._heap[0][0] <= clock:
            due, key = heapq.heappop(self._heap)
            c = self.subjects.get(key)
            if c is None or not c.times or c.times[0] + span != due:
                continue
            self._prune(c, clock - span)
            sev = _graded(len(c.times), self.config.grades)
            if sev != c.severity:
                c.severity = sev
                out.append(self._verdict(key, c, clock))
            if c.times:
                heapq.heappush(self._heap, (c.times[0] + span, key))
            else:
                del self.subjects[key]
        return out

    def _verdict(self, key: tuple[str, str, str], c: Complaints, t: int) -> Verdict:
        label, value, category = key
        labels = {label: value}
        if category:
            labels["category"] = category
        n = len(c.times)
        first = self.config.grades[0][0]
        return Verdict(
            kind="repeat_complaint",
            key=labels,
            severity=c.severity,
            observed=float(n),
            expected=float(first - 1),
            score=(n / (n + first - 1)) if c.severity else 0.0,
            window_start=_dt(c.times[0] if c.times else t),
            window_end=_dt(t),
            detector="repeat_complaint",
            params={"within_days": self.config.within.total_seconds() / 86400, "by": label},
            evidence=tuple(c.events)[-100:],
            summary=f"{n} complaints from the same {label} within "
            f"{self.config.within.total_seconds() / 86400:g} days",
        )

    def snapshot(self) -> dict[str, tuple[list[int], list[str], str]]:
        """Subjects with recent complaints as JSON-ready tuples."""
        return {
            "/".join(k): (list(c.times), list(c.events), c.severity or "")
            for k, c in sorted(self.subjects.items())
        }


def rebuild_repeats(
    rows: Iterable[ReportRow], config: RepeatConfig | None = None, watermark: datetime | None = None
) -> RepeatComplaints:
    """Repeat-complaint state after replaying stored hotline requests in consumption order
    (``within`` of history suffices), aged out at ``watermark`` if given."""
    det = RepeatComplaints(config)
    for r in rows:
        det.observe(r.event_id, r.category, r.at, r.caller_hash, r.address)
    if watermark is not None:
        det.expire(watermark, watermark)
    return det
