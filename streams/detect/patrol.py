"""Patrol gaps: a grid with no inspector report for longer than its configured interval.

Contract:

- ``PatrolGaps.observe(grid, at, event_id)`` records an inspector report; it returns a quiet
  verdict when the grid had an open gap (the report closes it).
- ``PatrolGaps.due(now, watermark)`` is the timer: it fires ``patrol_gap`` for every grid whose
  last report is older than its interval at ``min(now, watermark)``, and raises the severity
  as the gap grows (``escalation``). The watermark is the event time up to which the
  inspector-report partitions have been read (``now`` when caught up), so replaying a backlog
  raises no gap that the backlog itself would close.
- The state is the last report time per grid: ``rebuild(last_reports, ...)`` restores it from
  ``SELECT grid_code, max(event_time), argMax(event_id, event_time) FROM events WHERE source =
  'inspector' GROUP BY grid_code`` and gives the state streaming those reports gave.
  Times are whole seconds, as stored.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.warning import Severity
from streams.detect.verdict import Verdict

DETECTOR = "patrol_gap"


class GapLevel(BaseModel):
    """The severity of a gap that has lasted ``factor`` times the grid's interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    factor: float = Field(ge=1.0)
    severity: Severity


class PatrolConfig(BaseModel):
    """Patrol intervals: ``default_interval`` for every grid, ``intervals`` per grid code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_interval: timedelta = timedelta(hours=24)
    intervals: dict[str, timedelta] = Field(default_factory=dict)
    escalation: tuple[GapLevel, ...] = (
        GapLevel(factor=1.0, severity="minor"),
        GapLevel(factor=2.0, severity="major"),
        GapLevel(factor=4.0, severity="critical"),
    )

    @model_validator(mode="after")
    def _ordered(self) -> PatrolConfig:
        factors = [g.factor for g in self.escalation]
        if not factors or factors[0] != 1.0 or factors != sorted(set(factors)):
            raise ValueError("escalation factors must start at 1.0 and ascend strictly")
        return self

    def interval_s(self, grid: str) -> int:
        return math.ceil(self.intervals.get(grid, self.default_interval).total_seconds())


@dataclass(slots=True)
class GridPatrol:
    """One grid's patrol state: its last report and the gap level fired (-1 = none)."""

    last_t: int
    last_event: str
    level: int = -1
    queued: int = -1  # the due time of this grid's timer entry, -1 when it has none
    fired_t: int = -1  # when the open gap reached its current level


def _sec(at: datetime) -> int:
    return math.floor(at.timestamp())


def _dt(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class PatrolGaps:
    """Patrol-gap detector over a set of grids; ``labels`` adds key labels (grid path)."""

    def __init__(
        self,
        config: PatrolConfig | None = None,
        labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.config = config or PatrolConfig()
        self._labels = labels or {}
        self.grids: dict[str, GridPatrol] = {}
        self._heap: list[tuple[int, str]] = []  # (next due, grid), lazily corrected

    def track(self, grids: Iterable[str], since: datetime) -> None:
        """Start watching grids without any report yet: their gap is counted from ``since``
        (e.g. when monitoring began). Grids already known are left alone."""
        t = _sec(since)
        for grid in grids:
            if grid not in self.grids:
                self.grids[grid] = GridPatrol(t, "")
                self._schedule(grid, self.grids[grid])

    def observe(self, grid: str, at: datetime, event_id: str = "") -> list[Verdict]:
        """Record an inspector report of ``grid``; a quiet verdict if it closes a gap."""
        t = _sec(at)
        st = self.grids.get(grid)
        if st is None:
            st = self.grids[grid] = GridPatrol(t, event_id)
            self._schedule(grid, st)
            return []
        if t < st.last_t:
            return []
        out: list[Verdict] = []
        if st.level >= 0:
            # a report older than the declaration (late) closes the gap just after it
            end = t if t > st.fired_t else st.fired_t + 1
            out.append(self._verdict(grid, st, end, None, event_id))
            st.level, st.fired_t = -1, -1
            st.last_t, st.last_event = t, event_id
            self._schedule(grid, st)  # the next due moves earlier: the queued entry goes stale
        else:
            st.last_t, st.last_event = t, event_id
        return out

    def due(self, now: datetime, watermark: datetime) -> list[Verdict]:
        """Gap verdicts due at ``min(now, watermark)``: a new gap or a higher severity, its
        window ending when the gap reached that level (independent of the timer's lag).
        Ordered by that time, then grid."""
        clock = min(_sec(now), _sec(watermark))
        heap = self._heap
        out: list[Verdict] = []
        while heap and heap[0][0] <= clock:
            queued, grid = heapq.heappop(heap)
            st = self.grids[grid]
            if st.queued != queued:
                continue
            st.queued = -1
            due = self._next_due(grid, st)
            if due is not None and due <= clock:
                st.level = self._level_at(grid, st, clock)
                step = self.config.escalation[st.level]
                st.fired_t = st.last_t + math.ceil(step.factor * self.config.interval_s(grid))
                out.append(self._verdict(grid, st, st.fired_t, step.severity, st.last_event))
            self._schedule(grid, st)
        out.sort(key=lambda v: (v.window_end, v.key["grid_code"]))
        return out

    def _schedule(self, grid: str, st: GridPatrol) -> None:
        due = self._next_due(grid, st)
        if due is not None:
            st.queued = due
            heapq.heappush(self._heap, (due, grid))

    def _level_at(self, grid: str, st: GridPatrol, clock: int) -> int:
        gap = clock - st.last_t
        interval = self.config.interval_s(grid)
        level = -1
        for i, g in enumerate(self.config.escalation):
            if gap >= g.factor * interval:
                level = i
        return level

    def _next_due(self, grid: str, st: GridPatrol) -> int | None:
        nxt = st.level + 1
        if nxt >= len(self.config.escalation):
            return None
        factor = self.config.escalation[nxt].factor
        return st.last_t + math.ceil(factor * self.config.interval_s(grid))

    def _verdict(
        self, grid: str, st: GridPatrol, t: int, severity: Severity | None, evidence: str
    ) -> Verdict:
        interval = self.config.interval_s(grid)
        gap_h = (t - st.last_t) / 3600.0
        return Verdict(
            kind="patrol_gap",
            key={**self._labels.get(grid, {}), "grid_code": grid},
            severity=severity,
            observed=gap_h,
            expected=interval / 3600.0,
            score=min(1.0, gap_h * 3600.0 / (2.0 * interval)) if severity else 0.0,
            window_start=_dt(st.last_t),
            window_end=_dt(t),
            detector=DETECTOR,
            params={"interval_h": interval / 3600.0},
            evidence=(evidence,) if evidence else (),
            summary=f"grid {grid}: no inspector report for {gap_h:.1f} h",
        )

    def snapshot(self) -> dict[str, tuple[int, str, int, int]]:
        """The state as JSON-ready tuples (last report, its event id, gap level, fired at)."""
        return {
            g: (s.last_t, s.last_event, s.level, s.fired_t) for g, s in sorted(self.grids.items())
        }

    def restore(self, snapshot: Mapping[str, tuple[int, str, int, int]]) -> None:
        """Replace the state by a ``snapshot()``."""
        self.grids = {g: GridPatrol(t, e, lvl, fired_t=f) for g, (t, e, lvl, f) in snapshot.items()}
        self._heap = []
        for grid, st in self.grids.items():
            self._schedule(grid, st)


def rebuild(
    last_reports: Mapping[str, tuple[datetime, str]],
    config: PatrolConfig | None = None,
    labels: Mapping[str, Mapping[str, str]] | None = None,
    track: Iterable[str] = (),
    since: datetime | None = None,
    watermark: datetime | None = None,
) -> PatrolGaps:
    """A detector restored from each grid's last report ``(time, event id)``.

    ``track``/``since`` add the grids with no report at all. With ``watermark``, gaps already
    open at that point are marked open (their warnings are; the caller drops the verdicts of
    this final timer call, and the lifecycle dedups them anyway).
    """
    gaps = PatrolGaps(config, labels)
    for grid, (at, event_id) in sorted(last_reports.items()):
        gaps.observe(grid, at, event_id)
    if since is not None:
        gaps.track(track, since)
    if watermark is not None:
        gaps.due(watermark, watermark)
    return gaps
