"""Streaming sensor rules: graded thresholds with hysteresis, rate of change, stuck value and
silent sensor, per sensor, configured per sensor kind.

Contract:

- ``SensorRules.observe(...)`` takes one reading and returns the verdicts of the rules whose
  state changed: a verdict with a severity when a rule starts firing or changes severity, a
  quiet verdict (``severity=None``) when it stops. A rule that keeps its state says nothing.
- ``SensorRules.due_silent(now, watermark)`` is the timer: it fires ``sensor_silent`` for every
  sensor whose last reading is ``silent_after`` expected intervals older than
  ``min(now, watermark)``, without any new input. The watermark is the event time up to which
  the sensor partition has been read (the caller passes ``now`` when it is caught up), so a
  broker backlog being replayed never looks like silence. The next reading of a silent sensor
  resolves it.
- Times are truncated to whole seconds (the resolution of the stored ``event_time``), so
  ``rebuild(rows)`` over stored history gives exactly the state that streaming the same rows
  in consumption order gave (``ORDER BY src_partition, src_offset, src_index``).
- One ``SensorRules`` per sensor-topic partition: the watermark is that partition's.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.warning import Severity
from streams.detect.config import LifecycleConfig
from streams.detect.verdict import Verdict

DETECTOR = "sensor_rules"

RULES_LIFECYCLE = LifecycleConfig(resolve_after_quiet=1)
"""Lifecycle settings for the rule detectors (sensors, patrol, spatial, backlog): they apply
their own hysteresis and say quiet once, when a rule clears, so one quiet verdict resolves."""


class Band(BaseModel):
    """One graded level: entered at ``enter`` (value ≥ enter), left below its clear level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: str
    enter: float
    severity: Severity
    clear: float | None = None  # default: enter minus the kind's hysteresis


class SensorKindRules(BaseModel):
    """The rules of one sensor kind. Durations in seconds, rates in units per hour.

    Hysteresis: a band is left when the value falls below ``clear`` (default
    ``enter - max(hysteresis_abs, hysteresis_rel * |enter|)``) for ``clear_after`` consecutive
    readings, and entered after ``enter_after`` consecutive readings at or above ``enter``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    unit: str = ""
    bands: tuple[Band, ...] = ()
    hysteresis_rel: float = Field(default=0.1, ge=0.0, lt=1.0)
    hysteresis_abs: float = Field(default=0.0, ge=0.0)
    enter_after: int = Field(default=1, ge=1)
    clear_after: int = Field(default=1, ge=1)
    expected_interval_s: float = Field(default=60.0, gt=0)
    silent_after: int = Field(default=3, ge=1)  # missed expected intervals
    silent_severity: Severity = "minor"
    stuck_after_s: float | None = Field(default=None, gt=0)
    stuck_tolerance: float = Field(default=0.0, ge=0.0)
    stuck_min_readings: int = Field(default=3, ge=2)
    stuck_severity: Severity = "minor"
    max_rate_per_h: float | None = Field(default=None, gt=0)
    rate_severity: Severity = "minor"

    @model_validator(mode="after")
    def _ascending(self) -> SensorKindRules:
        enters = [b.enter for b in self.bands]
        if enters != sorted(enters) or len(set(enters)) != len(enters):
            raise ValueError(f"{self.kind}: bands must have strictly ascending enter levels")
        for b in self.bands:
            if b.clear is not None and b.clear > b.enter:
                raise ValueError(f"{self.kind}/{b.level}: clear {b.clear} above enter {b.enter}")
        return self

    def clear_levels(self) -> tuple[float, ...]:
        """The value below which each band is left."""
        return tuple(
            b.clear
            if b.clear is not None
            else b.enter - max(self.hysteresis_abs, self.hysteresis_rel * abs(b.enter))
            for b in self.bands
        )

    def history_span_s(self) -> float:
        """How far back a rebuild must read so every rule of this kind is reconstructed."""
        need = [
            self.expected_interval_s * (max(self.enter_after, self.clear_after) + 1),
            self.expected_interval_s * (self.silent_after + 1),
        ]
        if self.stuck_after_s is not None:
            need.append(self.stuck_after_s + self.expected_interval_s * self.stuck_min_readings)
        return max(need)


class SensorRulesConfig(BaseModel):
    """Rules per sensor kind (``kinds``); a reading of an unknown kind is ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: dict[str, SensorKindRules] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keyed_by_kind(self) -> SensorRulesConfig:
        for code, rules in self.kinds.items():
            if rules.kind != code:
                raise ValueError(f"kinds[{code!r}] has kind {rules.kind!r}")
        return self


def default_sensor_rules() -> SensorRulesConfig:
    """Shipped defaults for the sensor kinds of ``config/cities/sample.yaml``.

    PM2.5 bands are China's air-quality categories (HJ 633-2012): 75 light, 115 moderate,
    150 heavy, 250 severe pollution (≤ 35 excellent and 35-75 good raise nothing).
    """

    def band(level: str, enter: float, severity: Severity) -> Band:
        return Band(level=level, enter=enter, severity=severity)

    kinds = [
        SensorKindRules(
            kind="pm25",
            unit="µg/m³",
            bands=(
                band("light", 75, "info"),
                band("moderate", 115, "minor"),
                band("heavy", 150, "major"),
                band("severe", 250, "critical"),
            ),
            hysteresis_rel=0.15,
            enter_after=2,
            clear_after=3,
            expected_interval_s=3600,
            silent_after=3,
            stuck_after_s=12 * 3600,
            stuck_tolerance=0.0,
            stuck_min_readings=12,
            max_rate_per_h=300,
        ),
        SensorKindRules(
            kind="water_level",
            unit="m",
            bands=(
                band("watch", 0.15, "minor"),
                band("warning", 0.3, "major"),
                band("danger", 0.5, "critical"),
            ),
            hysteresis_abs=0.03,
            hysteresis_rel=0.0,
            enter_after=2,
            clear_after=3,
            expected_interval_s=300,
            stuck_after_s=24 * 3600,
            stuck_min_readings=12,
            max_rate_per_h=0.6,
        ),
        SensorKindRules(
            kind="manhole_tilt",
            unit="deg",
            bands=(band("displaced", 5, "major"), band("open", 15, "critical")),
            hysteresis_abs=1.0,
            hysteresis_rel=0.0,
            enter_after=1,
            clear_after=3,
            expected_interval_s=900,
            silent_after=4,
            max_rate_per_h=20,
        ),
        SensorKindRules(
            kind="noise",
            unit="dB",
            bands=(band("loud", 70, "info"), band("very_loud", 85, "minor")),
            hysteresis_abs=3.0,
            hysteresis_rel=0.0,
            enter_after=3,
            clear_after=3,
            expected_interval_s=60,
            silent_after=10,
            stuck_after_s=6 * 3600,
            stuck_min_readings=30,
        ),
        SensorKindRules(
            kind="bin_fill",
            unit="%",
            bands=(band("nearly_full", 85, "info"), band("full", 100, "minor")),
            hysteresis_abs=10.0,
            hysteresis_rel=0.0,
            enter_after=2,
            clear_after=1,
            expected_interval_s=1800,
            silent_after=6,
            stuck_after_s=72 * 3600,
            stuck_tolerance=0.5,
            stuck_min_readings=24,
        ),
    ]
    return SensorRulesConfig(kinds={k.kind: k for k in kinds})


class _Kind:
    """Pre-computed per-kind constants for the hot path."""

    __slots__ = ("rules", "enters", "clears", "silent_gap", "params")

    def __init__(self, rules: SensorKindRules) -> None:
        self.rules = rules
        self.enters = tuple(b.enter for b in rules.bands)
        self.clears = rules.clear_levels()
        self.silent_gap = int(math.ceil(rules.silent_after * rules.expected_interval_s))
        self.params: dict[str, float | int | str] = {
            "sensor_kind": rules.kind,
            "enter_after": rules.enter_after,
            "clear_after": rules.clear_after,
            "hysteresis_rel": rules.hysteresis_rel,
            "hysteresis_abs": rules.hysteresis_abs,
        }


class SensorState:
    """Everything the rules remember about one sensor (a few dozen bytes of scalars)."""

    __slots__ = (
        "kind",
        "last_t",
        "last_v",
        "level",
        "pending",
        "pending_n",
        "level_since",
        "rate_on",
        "rate_n",
        "run_t",
        "run_v",
        "run_n",
        "stuck_on",
        "silent_at",
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.last_t = -1  # epoch seconds of the last reading; -1 before any
        self.last_v = 0.0
        self.level = -1  # index of the current band, -1 = below every band
        self.pending = -1  # target band of a pending change (meaningful when pending_n > 0)
        self.pending_n = 0
        self.level_since = 0
        self.rate_on = False
        self.rate_n = 0  # consecutive readings below the clear rate while rate_on
        self.run_t = 0  # start of the current run of equal values
        self.run_v = 0.0
        self.run_n = 0
        self.stuck_on = False
        self.silent_at = -1  # the deadline it went silent at; -1 = not silent

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in self.__slots__)

    @classmethod
    def from_tuple(cls, values: Iterable[Any]) -> SensorState:
        vals = list(values)
        state = cls(vals[0])
        for name, value in zip(cls.__slots__, vals, strict=True):
            setattr(state, name, value)
        return state


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """A stored reading, as a rebuild reads it back (one row of the ``events`` table)."""

    sensor_id: str
    kind: str
    at: datetime
    value: float
    event_id: str = ""


def _dt(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _sec(at: datetime) -> int:
    return math.floor(at.timestamp())


def band_target(
    level: int, value: float, enters: tuple[float, ...], clears: tuple[float, ...]
) -> int:
    """The band a value points at from ``level``: above it by enter levels, at or below it by
    clear levels (hysteresis); -1 below every band."""
    target = -1
    for i in range(len(enters) - 1, -1, -1):
        if value >= (clears[i] if i <= level else enters[i]):
            target = i
            break
    return target


class SensorRules:
    """The sensor rules of one partition's sensors; ``labels`` gives a sensor's key labels
    (e.g. its grid path) beside ``sensor_id``."""

    def __init__(
        self,
        config: SensorRulesConfig | None = None,
        labels: Callable[[str], Mapping[str, str]] | None = None,
    ) -> None:
        self.config = config or default_sensor_rules()
        self._kinds = {code: _Kind(r) for code, r in self.config.kinds.items()}
        self._labels = labels
        self.sensors: dict[str, SensorState] = {}
        self._silent_heap: list[tuple[int, str]] = []  # (deadline, sensor), lazily corrected

    # -- the hot path -------------------------------------------------------------------

    def observe(
        self, sensor_id: str, kind: str, at: datetime, value: float, event_id: str = ""
    ) -> list[Verdict]:
        """Apply one reading; return the verdicts of rules that changed state.

        A reading older than the sensor's last reading is ignored (the rules are ordered in
        event time per sensor); a reading of a kind without rules is ignored.
        """
        k = self._kinds.get(kind)
        if k is None:
            return []
        t = _sec(at)
        st = self.sensors.get(sensor_id)
        if st is None or st.kind != kind:
            if st is None or st.silent_at >= 0:  # otherwise its timer entry is still queued
                heapq.heappush(self._silent_heap, (t + k.silent_gap, sensor_id))
            st = SensorState(kind)
            self.sensors[sensor_id] = st
        elif t < st.last_t:
            return []
        out: list[Verdict] = []
        if st.silent_at >= 0:
            # a reading older than the declaration (late) resolves it just after it
            end = t if t > st.silent_at else st.silent_at + 1
            st.silent_at = -1
            heapq.heappush(self._silent_heap, (t + k.silent_gap, sensor_id))
            out.append(self._silent_verdict(sensor_id, st, k, st.last_t, end, None, event_id))
        if k.enters:
            self._bands(sensor_id, st, k, t, value, event_id, out)
        r = k.rules
        if r.max_rate_per_h is not None and st.last_t >= 0:
            self._rate(sensor_id, st, k, t, value, event_id, out)
        if r.stuck_after_s is not None:
            self._stuck(sensor_id, st, k, t, value, event_id, out)
        st.last_t = t
        st.last_v = value
        return out

    def _bands(
        self,
        sid: str,
        st: SensorState,
        k: _Kind,
        t: int,
        value: float,
        event_id: str,
        out: list[Verdict],
    ) -> None:
        target = band_target(st.level, value, k.enters, k.clears)
        if target == st.level:
            st.pending_n = 0
            return
        rising = target > st.level
        if st.pending_n and (st.pending > st.level) == rising:
            st.pending_n += 1
            # a run of rising readings enters the lowest band every one of them reached
            st.pending = min(st.pending, target) if rising else max(st.pending, target)
        else:
            st.pending_n = 1
            st.pending = target
            st.level_since = t
        need = k.rules.enter_after if rising else k.rules.clear_after
        if st.pending_n < need:
            return
        start = st.level_since
        st.level = st.pending
        st.pending_n = 0
        if st.level < 0:
            severity = None
            expected = k.clears[0]
            score = 0.0
            level_name = "normal"
        else:
            band = k.rules.bands[st.level]
            severity = band.severity
            expected = band.enter
            score = 0.5 + 0.5 * (st.level + 1) / len(k.enters)  # 0.5 = alarm, as everywhere
            level_name = band.level
        out.append(
            Verdict(
                kind="sensor_threshold",
                key=self._key(sid),
                severity=severity,
                observed=value,
                expected=expected,
                score=score,
                window_start=_dt(start),
                window_end=_dt(t),
                detector=DETECTOR,
                params={**k.params, "level": level_name},
                evidence=(event_id,) if event_id else (),
                summary=f"{k.rules.kind} {value:g} {k.rules.unit}: {level_name}",
            )
        )

    def _rate(
        self,
        sid: str,
        st: SensorState,
        k: _Kind,
        t: int,
        value: float,
        event_id: str,
        out: list[Verdict],
    ) -> None:
        r = k.rules
        assert r.max_rate_per_h is not None
        dt_h = max(t - st.last_t, r.expected_interval_s) / 3600.0
        rate = abs(value - st.last_v) / dt_h
        if not st.rate_on:
            if rate > r.max_rate_per_h:
                st.rate_on = True
                st.rate_n = 0
                out.append(self._rate_verdict(sid, st, k, t, rate, r.rate_severity, event_id))
            return
        if rate <= r.max_rate_per_h * (1.0 - r.hysteresis_rel):
            st.rate_n += 1
            if st.rate_n >= r.clear_after:
                st.rate_on = False
                out.append(self._rate_verdict(sid, st, k, t, rate, None, event_id))
        else:
            st.rate_n = 0

    def _rate_verdict(
        self,
        sid: str,
        st: SensorState,
        k: _Kind,
        t: int,
        rate: float,
        severity: Severity | None,
        event_id: str,
    ) -> Verdict:
        limit = k.rules.max_rate_per_h or 1.0
        return Verdict(
            kind="sensor_rate",
            key=self._key(sid),
            severity=severity,
            observed=rate,
            expected=limit,
            score=min(1.0, rate / (2.0 * limit)) if severity else 0.0,
            window_start=_dt(st.last_t),
            window_end=_dt(t),
            detector=DETECTOR,
            params={"sensor_kind": k.rules.kind, "max_rate_per_h": limit},
            evidence=(event_id,) if event_id else (),
            summary=f"{k.rules.kind} changing {rate:.3g} {k.rules.unit}/h (limit {limit:g})",
        )

    def _stuck(
        self,
        sid: str,
        st: SensorState,
        k: _Kind,
        t: int,
        value: float,
        event_id: str,
        out: list[Verdict],
    ) -> None:
        r = k.rules
        assert r.stuck_after_s is not None
        if st.run_n and abs(value - st.run_v) <= r.stuck_tolerance:
            st.run_n += 1
            if (
                not st.stuck_on
                and st.run_n >= r.stuck_min_readings
                and t - st.run_t >= r.stuck_after_s
            ):
                st.stuck_on = True
                out.append(self._stuck_verdict(sid, st, k, t, r.stuck_severity, event_id))
            return
        if st.stuck_on:
            st.stuck_on = False
            out.append(self._stuck_verdict(sid, st, k, t, None, event_id))
        st.run_t = t
        st.run_v = value
        st.run_n = 1

    def _stuck_verdict(
        self,
        sid: str,
        st: SensorState,
        k: _Kind,
        t: int,
        severity: Severity | None,
        event_id: str,
    ) -> Verdict:
        limit = k.rules.stuck_after_s or 1.0
        held = t - st.run_t
        return Verdict(
            kind="sensor_stuck",
            key=self._key(sid),
            severity=severity,
            observed=float(held),
            expected=float(limit),
            score=min(1.0, held / (2.0 * limit)) if severity else 0.0,
            window_start=_dt(st.run_t),
            window_end=_dt(t),
            detector=DETECTOR,
            params={
                "sensor_kind": k.rules.kind,
                "stuck_after_s": limit,
                "stuck_tolerance": k.rules.stuck_tolerance,
                "value": st.run_v,
            },
            evidence=(event_id,) if event_id else (),
            summary=f"{k.rules.kind} held {st.run_v:g} for {held / 3600:.1f} h",
        )

    # -- the timer ----------------------------------------------------------------------

    def due_silent(self, now: datetime, watermark: datetime) -> list[Verdict]:
        """Fire ``sensor_silent`` for sensors without a reading for ``silent_after`` intervals
        before ``min(now, watermark)``; the verdict's window ends at that deadline (so a rebuild
        or a late timer gives the same verdict). Cost grows with the sensors coming due, not
        with all sensors. Each silence fires once; the sensor's next reading resolves it.
        Ordered by deadline, then sensor."""
        clock = min(_sec(now), _sec(watermark))
        heap = self._silent_heap
        out: list[Verdict] = []
        while heap and heap[0][0] <= clock:
            _, sid = heapq.heappop(heap)
            st = self.sensors.get(sid)
            if st is None or st.silent_at >= 0:
                continue
            k = self._kinds[st.kind]
            deadline = st.last_t + k.silent_gap
            if deadline > clock:
                heapq.heappush(heap, (deadline, sid))
                continue
            st.silent_at = deadline
            sev = k.rules.silent_severity
            out.append(self._silent_verdict(sid, st, k, st.last_t, deadline, sev, ""))
        out.sort(key=lambda v: (v.window_end, v.key["sensor_id"]))
        return out

    def _silent_verdict(
        self,
        sid: str,
        st: SensorState,
        k: _Kind,
        since: int,
        until: int,
        severity: Severity | None,
        event_id: str,
    ) -> Verdict:
        interval = k.rules.expected_interval_s
        missed = (until - since) / interval
        return Verdict(
            kind="sensor_silent",
            key=self._key(sid),
            severity=severity,
            observed=missed,
            expected=float(k.rules.silent_after),
            score=min(1.0, missed / (2.0 * k.rules.silent_after)) if severity else 0.0,
            window_start=_dt(since),
            window_end=_dt(until),
            detector=DETECTOR,
            params={
                "sensor_kind": k.rules.kind,
                "expected_interval_s": interval,
                "silent_after": k.rules.silent_after,
            },
            evidence=(event_id,) if event_id else (),
            summary=f"{k.rules.kind} silent for {missed:.1f} expected intervals",
        )

    # -- keys, state, rebuild ---------------------------------------------------------------

    def _key(self, sid: str) -> dict[str, str]:
        key = {"sensor_id": sid}
        if self._labels is not None:
            key.update(self._labels(sid))
        return key

    def active(self, sensor_id: str) -> dict[str, str | bool]:
        """The rules a sensor is firing: its band (level name or "") and the boolean rules."""
        st = self.sensors[sensor_id]
        k = self._kinds[st.kind]
        return {
            "level": k.rules.bands[st.level].level if st.level >= 0 else "",
            "rate": st.rate_on,
            "stuck": st.stuck_on,
            "silent": st.silent_at >= 0,
        }

    def snapshot(self) -> dict[str, list[Any]]:
        """The whole state as JSON-ready lists, one per sensor."""
        return {sid: list(st.to_tuple()) for sid, st in sorted(self.sensors.items())}

    def restore(self, snapshot: Mapping[str, Iterable[Any]]) -> None:
        """Replace the state by a ``snapshot()``; the silent timers follow from it."""
        self.sensors = {sid: SensorState.from_tuple(v) for sid, v in snapshot.items()}
        self._silent_heap = []
        for sid, st in self.sensors.items():
            if st.silent_at < 0 and st.kind in self._kinds:
                self._silent_heap.append((st.last_t + self._kinds[st.kind].silent_gap, sid))
        heapq.heapify(self._silent_heap)

    def history_span_s(self) -> float:
        """The look-back a rebuild needs for every configured kind."""
        return max((r.history_span_s() for r in self.config.kinds.values()), default=0.0)


def rebuild(
    rows: Iterable[ReadingRow],
    config: SensorRulesConfig | None = None,
    labels: Callable[[str], Mapping[str, str]] | None = None,
    watermark: datetime | None = None,
) -> SensorRules:
    """The rules' state after the stored readings ``rows`` (in consumption order), with the
    verdicts they produced discarded: the state that streaming the same rows left.

    With ``watermark`` (the partition's read position), sensors silent at that point are
    marked silent as the timer would have marked them; their warnings are already open, so
    the caller drops the verdicts of that final timer call (the lifecycle dedups them anyway).
    """
    rules = SensorRules(config, labels)
    for row in rows:
        rules.observe(row.sensor_id, row.kind, row.at, row.value, row.event_id)
    if watermark is not None:
        rules.due_silent(watermark, watermark)
    return rules
