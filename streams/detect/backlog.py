"""Backlog spikes: a handling unit's open cases rising abnormally.

Input: periodic snapshots of the open-case count per unit (the caller takes them at multiples
of a fixed cadence, e.g. every hour on the hour, from its case book). The baseline per unit
is a time-decayed mean with a time-decayed mean absolute deviation (running means while
young), learned from winsorized counts (a spike barely moves it); the robust z of a snapshot
is its excess over the baseline in units of ``max(1.2533 * deviation, sqrt(baseline),
spread_floor)`` (1.2533: mean absolute deviation to standard deviation of a normal), the
square root being the Poisson spread that governs small counts. The deviation does not learn
from snapshots at or above ``z_enter`` (a spike must not widen the band that judges it); the
level keeps learning, winsorized, so a lasting new level is absorbed over the half-life.
No alarm before ``warmup_snapshots``.

A spike fires at ``z >= z_enter`` with at least ``min_excess`` cases over the baseline, rises
in severity with z and clears after ``clear_after`` snapshots below ``z_clear`` (hysteresis).
Verdicts are emitted on changes only (fire, severity change, clear).

Rebuild: ``open_counts(cases, times)`` turns stored case lifetimes into the snapshots the
worker would have taken at ``times`` (``snapshot_times``); ``rebuild`` streams them. Times are
whole seconds.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.warning import Severity
from streams.detect.verdict import Verdict

DETECTOR = "backlog_ewma_mad"
MAD_TO_SD = 1.2533  # sqrt(pi / 2): mean absolute deviation -> standard deviation (normal)


class BacklogConfig(BaseModel):
    """Baseline memory, alarm and clear levels of the backlog detector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    half_life: timedelta = timedelta(days=7)
    warmup_snapshots: int = Field(48, ge=1)
    z_enter: float = Field(4.0, gt=0)
    z_clear: float = Field(2.0, ge=0)
    clear_after: int = Field(2, ge=1)
    min_excess: float = Field(5.0, ge=0)
    spread_floor: float = Field(1.0, gt=0)
    winsor_z: float = Field(3.0, gt=0)
    major_z: float = Field(8.0, gt=0)
    critical_z: float = Field(16.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> BacklogConfig:
        if not self.z_clear <= self.z_enter <= self.major_z <= self.critical_z:
            raise ValueError("need z_clear <= z_enter <= major_z <= critical_z")
        return self


@dataclass(slots=True)
class UnitBaseline:
    """One unit's learned baseline and alarm state."""

    last_t: int
    level: float
    deviation: float
    n: int = 1
    severity: Severity | None = None
    since: int = 0  # when the current spike fired
    quiet_n: int = 0  # consecutive snapshots below z_clear while firing


def _sec(at: datetime) -> int:
    return math.floor(at.timestamp())


def _dt(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def robust_z(count: float, level: float, deviation: float, spread_floor: float) -> float:
    """Excess of ``count`` over ``level`` in robust spreads (mean absolute deviation scaled
    to a standard deviation, floored by the Poisson spread ``sqrt(level)``)."""
    scale = max(MAD_TO_SD * deviation, math.sqrt(max(level, 0.0)), spread_floor)
    return (count - level) / scale


class BacklogSpikes:
    """Backlog-spike detector over handling units; the key of a unit is ``{"unit": unit}``."""

    def __init__(self, config: BacklogConfig | None = None) -> None:
        self.config = config or BacklogConfig()
        self.units: dict[str, UnitBaseline] = {}

    def observe(
        self, unit: str, at: datetime, open_cases: int, evidence: Sequence[str] = ()
    ) -> list[Verdict]:
        """Score one snapshot against the unit's baseline, then learn from it.

        ``evidence``: ids of the unit's newest open cases (kept in the verdict, at most 100).
        A snapshot not later than the unit's last one is ignored.
        """
        cfg = self.config
        t = _sec(at)
        b = self.units.get(unit)
        if b is None:
            self.units[unit] = UnitBaseline(t, float(open_cases), 0.0)
            return []
        if t <= b.last_t:
            return []
        z = robust_z(open_cases, b.level, b.deviation, cfg.spread_floor)
        excess = open_cases - b.level
        out: list[Verdict] = []
        if b.n >= cfg.warmup_snapshots:
            target = self._severity(z, excess)
            if target is not None and target != b.severity:
                if b.severity is None:
                    b.since = t
                b.severity = target
                b.quiet_n = 0
                out.append(self._verdict(unit, b, t, open_cases, z, evidence))
            elif b.severity is not None and target is None:
                if z < cfg.z_clear:
                    b.quiet_n += 1
                    if b.quiet_n >= cfg.clear_after:
                        b.severity = None
                        out.append(self._verdict(unit, b, t, open_cases, z, evidence))
                else:
                    b.quiet_n = 0
            else:
                b.quiet_n = 0
        self._learn(b, t, open_cases)
        return out

    def _severity(self, z: float, excess: float) -> Severity | None:
        cfg = self.config
        if z < cfg.z_enter or excess < cfg.min_excess:
            return None
        if z >= cfg.critical_z:
            return "critical"
        if z >= cfg.major_z:
            return "major"
        return "minor"

    def _learn(self, b: UnitBaseline, t: int, count: int) -> None:
        cfg = self.config
        # a running mean until the decayed weights take over, so the first snapshot does not
        # dominate a long half-life
        alpha = max(1.0 - 0.5 ** ((t - b.last_t) / cfg.half_life.total_seconds()), 1.0 / (b.n + 1))
        scale = max(MAD_TO_SD * b.deviation, math.sqrt(max(b.level, 0.0)), cfg.spread_floor)
        clipped = min(max(count, b.level - cfg.winsor_z * scale), b.level + cfg.winsor_z * scale)
        residual = clipped - b.level
        if count - b.level < cfg.z_enter * scale or b.n < cfg.warmup_snapshots:
            b.deviation += alpha * (abs(residual) - b.deviation)
        b.level += alpha * residual
        b.last_t = t
        b.n += 1

    def _verdict(
        self,
        unit: str,
        b: UnitBaseline,
        t: int,
        count: int,
        z: float,
        evidence: Sequence[str],
    ) -> Verdict:
        cfg = self.config
        return Verdict(
            kind="backlog_spike",
            key={"unit": unit},
            severity=b.severity,
            observed=float(count),
            expected=b.level,
            score=max(0.0, z) / (max(0.0, z) + cfg.z_enter),
            window_start=_dt(b.since),
            window_end=_dt(t),
            detector=DETECTOR,
            params={
                "z": round(z, 3),
                "z_enter": cfg.z_enter,
                "z_clear": cfg.z_clear,
                "half_life_h": cfg.half_life.total_seconds() / 3600.0,
            },
            evidence=tuple(evidence[:100]),
            summary=f"unit {unit}: {count} open cases, baseline {b.level:.1f} (z {z:.1f})",
        )

    def snapshot(self) -> dict[str, tuple[int, float, float, int, str, int, int]]:
        """The state as JSON-ready tuples per unit."""
        return {
            u: (b.last_t, b.level, b.deviation, b.n, b.severity or "", b.since, b.quiet_n)
            for u, b in sorted(self.units.items())
        }


def snapshot_times(start: datetime, end: datetime, cadence: timedelta) -> list[datetime]:
    """The snapshot instants in ``[start, end)``: multiples of ``cadence`` since the epoch."""
    step = math.ceil(cadence.total_seconds())
    first = -(-_sec(start) // step) * step
    return [_dt(t) for t in range(first, _sec(end), step)]


def open_counts(
    cases: Iterable[tuple[str, datetime, datetime | None]], times: Sequence[datetime]
) -> list[tuple[datetime, str, int]]:
    """Open cases per unit at each of ``times``, from case lifetimes ``(unit, opened,
    closed or None)``: a case is open at t when ``opened <= t < closed``. Rows are ordered by
    time, then unit; a unit appears from the first time it has a case opened."""
    opened: dict[str, list[int]] = defaultdict(list)
    closed: dict[str, list[int]] = defaultdict(list)
    for unit, start, end in cases:
        opened[unit].append(_sec(start))
        if end is not None:
            closed[unit].append(_sec(end))
    for v in (*opened.values(), *closed.values()):
        v.sort()
    rows: list[tuple[datetime, str, int]] = []
    for at in times:
        t = _sec(at)
        for unit in sorted(opened):
            n_open = bisect.bisect_right(opened[unit], t)
            if n_open == 0:
                continue
            rows.append((at, unit, n_open - bisect.bisect_right(closed[unit], t)))
    return rows


def rebuild(
    snapshots: Iterable[tuple[datetime, str, int]], config: BacklogConfig | None = None
) -> BacklogSpikes:
    """The detector after the snapshots ``(time, unit, open cases)`` in time order."""
    det = BacklogSpikes(config)
    for at, unit, count in snapshots:
        det.observe(unit, at, count)
    return det
