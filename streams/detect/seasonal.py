"""The seasonal method: a streaming, per-key anomaly detector for counts and for values.

One ``SeasonalDetector`` (a config, a bucket interval, a time zone) serves any number of keys;
each key's memory is a ``SeriesState`` (about 1.6 kB for hour buckets with a weekly profile),
which the caller stores per key and passes to ``update``. Method, per bucket (or sample):

* **Expectation**: a deseasonalised ``level`` combined with an hour-of-day (``season.slot``)
  effect, a weekday effect and an hour-of-week refinement (each optional). Count mode is
  multiplicative (Gamma-Poisson empirical Bayes: each effect is decayed observed / decayed
  expected events, shrunk to 1 by ``season.shrinkage`` pseudo-events, so a slot with little
  information falls back to the coarser effects, and those to the overall level). Value mode
  is additive (effects are decayed mean residuals shrunk to 0 by pseudo-observations),
  Holt-Winters style.
* **Robustness**: what is learned from a bucket is clipped (winsorised) at a few standard
  deviations of the expectation, so one spike barely moves the baseline.
* **Point tails**: counts use the negative binomial upper / lower tail (Poisson when the
  learned dispersion is 0); values use an exponential tail beyond a streaming high quantile
  of the absolute residual, with the decayed mean absolute residual as its scale.
  ``surprise`` = -log10(tail probability).
* **Sustained shifts**: a two-sided CUSUM (Poisson likelihood ratio for counts, standardised
  residuals for values), capped so it falls back after the series recovers.
* **Scores**: surprise s maps to ``s / (s + alarm_level / sensitivity)``: 0.5 is the alarm
  level whatever the sensitivity (``config.ALERT_THRESHOLD``).
* **Warm-up**: no scores above 0 until ``warmup_samples`` buckets and ``warmup`` of history
  have been seen; the state learns meanwhile.

The state is a pure function of the ordered (bucket, value) stream: ``rebuild`` over stored
rows yields a state equal (byte for byte, ``SeriesState.to_bytes``) to the streamed one.
In count mode missing buckets between two rows are zero counts (ClickHouse keeps no rows for
empty windows); in value mode a missing sample is just missing.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from scipy.special import betainc, gammainc, gammaincc

from core.warning import Severity
from streams.detect.config import SeasonalConfig
from streams.detect.verdict import Verdict

_LN10 = math.log(10.0)
_SURPRISE_CAP = 300.0
_HEADER = struct.Struct("<B3xI12d")


@dataclass(slots=True, eq=False)
class SeriesState:
    """Everything the detector remembers about one key (serialisable with ``to_bytes``).

    ``slots`` holds float32 (sum, weight) blocks per effect group: hour of day, then weekday
    and hour of week when configured.
    Count mode: ``level_num``/``level_den`` are the decayed sums whose ratio is the level,
    ``spread_num``/``spread_den`` those of the NB dispersion. Value mode: ``level_num`` is the
    level, ``spread_num`` the mean absolute residual, ``tail`` a high quantile of the absolute
    residual and ``magnitude`` the mean absolute value.
    """

    mode: int
    n: int = 0
    first: float = math.nan
    last: float = math.nan
    level_num: float = 0.0
    level_den: float = 0.0
    spread_num: float = 0.0
    spread_den: float = 0.0
    magnitude: float = 0.0
    cusum_up: float = 0.0
    cusum_down: float = 0.0
    last_value: float = math.nan
    tail: float = 0.0
    slots: array = field(default_factory=lambda: array("f"))

    def to_bytes(self) -> bytes:
        """A compact, versionless snapshot (header + float32 slot blocks)."""
        head = _HEADER.pack(
            self.mode,
            self.n,
            self.first,
            self.last,
            self.level_num,
            self.level_den,
            self.spread_num,
            self.spread_den,
            self.magnitude,
            self.cusum_up,
            self.cusum_down,
            self.last_value,
            self.tail,
            float(len(self.slots)),
        )
        return head + self.slots.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> SeriesState:
        """The state ``to_bytes`` wrote."""
        fields = _HEADER.unpack_from(data)
        slots = array("f")
        slots.frombytes(data[_HEADER.size : _HEADER.size + 4 * int(fields[-1])])
        state = cls(mode=fields[0], n=fields[1], slots=slots)
        (
            state.first,
            state.last,
            state.level_num,
            state.level_den,
            state.spread_num,
            state.spread_den,
            state.magnitude,
            state.cusum_up,
            state.cusum_down,
            state.last_value,
            state.tail,
        ) = fields[2:-1]
        return state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeriesState) and self.to_bytes() == other.to_bytes()

    def nbytes(self) -> int:
        """Approximate resident size of the state in bytes (object, floats, slot array)."""
        floats = 12 * sys.getsizeof(0.0)
        return sys.getsizeof(self) + floats + sys.getsizeof(self.slots)


@dataclass(frozen=True, slots=True)
class Assessment:
    """The detector's judgement of one bucket: expectation, surprises and 0..1 scores.

    ``spike``/``drop`` are the point-tail scores; ``shift_up``/``shift_down`` the CUSUM
    scores. All scores are 0 before warm-up (``warm`` False).
    """

    at: datetime
    observed: float
    expected: float
    warm: bool
    surprise_up: float
    surprise_down: float
    spike: float
    drop: float
    shift_up: float
    shift_down: float

    @property
    def score(self) -> float:
        """The largest of the four scores."""
        return max(self.spike, self.drop, self.shift_up, self.shift_down)


def surprise_score(surprise: float, alarm_level: float) -> float:
    """Map a surprise (>= 0) to 0..1 with ``alarm_level`` at exactly 0.5."""
    if surprise <= 0.0:
        return 0.0
    return surprise / (surprise + alarm_level)


def severity_of(score: float, config: SeasonalConfig) -> Severity | None:
    """Severity of a score: None below 0.5, then minor / major / critical by surprise ratio."""
    if score < 0.5:
        return None
    ratio = score / (1.0 - score) if score < 1.0 else math.inf
    if ratio >= config.severity.critical:
        return "critical"
    if ratio >= config.severity.major:
        return "major"
    return "minor"


def _surprise(p: float) -> float:
    if p <= 0.0:
        return _SURPRISE_CAP
    return min(_SURPRISE_CAP, max(0.0, -math.log10(p)))


def nb_upper_tail(x: float, mean: float, dispersion: float) -> float:
    """P(X >= x) for X negative binomial with ``mean`` and 1/size ``dispersion`` (0: Poisson)."""
    if x <= 0.0:
        return 1.0
    if dispersion <= 0.0:
        return float(gammainc(x, mean))
    size = 1.0 / dispersion
    return float(betainc(x, size, mean / (mean + size)))


def nb_lower_tail(x: float, mean: float, dispersion: float) -> float:
    """P(X <= x) for X negative binomial with ``mean`` and 1/size ``dispersion`` (0: Poisson)."""
    if dispersion <= 0.0:
        return float(gammaincc(x + 1.0, mean))
    size = 1.0 / dispersion
    return float(betainc(size, x + 1.0, size / (mean + size)))


def _decay(half_life: float) -> float:
    """Per-step decay factor for a half-life in steps (at least one step)."""
    return 0.5 ** (1.0 / max(half_life, 1.0))


class SeasonalDetector:
    """The seasonal method for one time scale: a config, a bucket ``interval`` and a zone.

    Stateless itself (shareable by all keys); per-key memory is the ``SeriesState``.
    """

    def __init__(self, config: SeasonalConfig, interval: timedelta, timezone: str = "UTC") -> None:
        if interval <= timedelta(0):
            raise ValueError("interval must be positive")
        self.config = config
        self.interval = interval
        self.zone = ZoneInfo(timezone)
        season = config.season
        self._count = config.mode == "count"
        self._step = interval.total_seconds()
        self._slot_seconds = max(season.slot.total_seconds(), self._step)
        self._day_slots = max(1, round(86400.0 / self._slot_seconds))
        per_slot = max(1.0, self._slot_seconds / self._step)
        cycles = season.half_life_cycles
        self._time_of_day = self._day_slots > 1
        groups = [(self._day_slots, cycles * per_slot)] if self._time_of_day else []
        if season.weekday:
            groups.append((7, cycles * per_slot * self._day_slots))
        if season.weekly:
            groups.append((7 * self._day_slots, cycles * per_slot))
        self._groups: list[tuple[int, int, float]] = []
        offset = 0
        for size, half_life in groups:
            self._groups.append((offset, size, _decay(half_life)))
            offset += 2 * size
        self._slot_count = offset
        self._d_level = _decay(config.level_half_life.total_seconds() / self._step)
        value = config.value
        self._d_scale = _decay(value.scale_half_life * 86400.0 / self._step)
        self._d_magnitude = _decay(value.magnitude_half_life * 86400.0 / self._step)
        self._warmup = config.warmup.total_seconds()

    def new_state(self) -> SeriesState:
        """An empty state (nothing learned, not warm)."""
        return SeriesState(
            mode=0 if self._count else 1, slots=array("f", bytes(4 * self._slot_count))
        )

    def update(
        self, state: SeriesState, at: datetime, value: float, sensitivity: float = 1.0
    ) -> Assessment | None:
        """Learn one bucket (count mode) or sample (value mode) and judge it.

        ``at`` is the bucket start (aware). A bucket at or before the latest one is ignored
        (None: redelivery is harmless). Count mode fills skipped buckets with zero counts
        first. ``sensitivity`` only changes the scores, never the state.
        """
        ts = at.timestamp()
        if state.n and ts <= state.last:
            return None
        if self._count and state.n:
            missing = round((ts - state.last) / self._step) - 1
            for _ in range(missing):
                self._learn(state, state.last + self._step, 0.0, 1.0)
        return self._learn(state, ts, float(value), sensitivity)

    def rebuild(
        self,
        rows: Iterable[tuple[datetime, float]],
        until: datetime | None = None,
        since: datetime | None = None,
    ) -> SeriesState:
        """The state after streaming ``rows`` (sorted or not; duplicates keep the first).

        Count mode, for stored counts that omit empty buckets: the key's history starts at
        the bucket ``since`` (default: the first row), and with ``until`` zero buckets are
        appended up to (not including) the bucket starting at ``until``, as the worker feeds
        closed empty buckets.
        """
        state = self.new_state()
        ordered = sorted(rows, key=lambda row: row[0])
        if since is not None and self._count and (not ordered or ordered[0][0] > since):
            self.update(state, since, 0.0)
        for at, value in ordered:
            self.update(state, at, value)
        if until is not None and self._count and state.n:
            ts = until.timestamp()
            while state.last + 1.5 * self._step <= ts:
                self._learn(state, state.last + self._step, 0.0, 1.0)
        return state

    def expected(self, state: SeriesState, at: datetime) -> float:
        """The expectation for the bucket starting at ``at`` under the current state."""
        index = self._slot_index(at.timestamp())
        return self._expectation(state, self._effects(state, index))

    def is_warm(self, state: SeriesState) -> bool:
        """True once the warm-up (samples and history) is over."""
        return state.n >= self.config.warmup_samples and (state.last - state.first >= self._warmup)

    def _slot_index(self, ts: float) -> list[int]:
        """The slot of each effect group (time of day when a day has several, weekday, week)."""
        local = datetime.fromtimestamp(ts, self.zone)
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        day = int(seconds // self._slot_seconds) % self._day_slots
        weekday = local.weekday()
        index = [day] if self._time_of_day else []
        if self.config.season.weekday:
            index.append(weekday)
        if self.config.season.weekly:
            index.append(weekday * self._day_slots + day)
        return index

    def _effects(self, state: SeriesState, index: list[int]) -> list[float]:
        """Each group's shrunk effect: a factor (count mode) or an offset (value mode)."""
        slots = state.slots
        k = self.config.season.shrinkage
        out = []
        for (offset, size, _), i in zip(self._groups, index, strict=True):
            total, weight = slots[offset + i], slots[offset + size + i]
            out.append((total + k) / (weight + k) if self._count else total / (weight + k))
        return out

    def _level(self, state: SeriesState) -> float:
        if self._count:
            return state.level_num / state.level_den if state.level_den > 0.0 else 0.0
        return state.level_num

    def _expectation(self, state: SeriesState, effects: list[float]) -> float:
        level = self._level(state)
        if self._count:
            return max(self.config.count.min_expected, level * math.prod(effects))
        return level + sum(effects)

    def _learn(self, state: SeriesState, ts: float, x: float, sensitivity: float) -> Assessment:
        index = self._slot_index(ts)
        effects = self._effects(state, index)
        mean = self._expectation(state, effects)
        warm = self.is_warm(state) if state.n else False
        if self._count:
            up, down = self._count_step(state, x, mean, effects, index, warm)
        else:
            up, down = self._value_step(state, x, mean, effects, index, warm)
        if not state.n:
            state.first = ts
        state.n += 1
        state.last = ts
        state.last_value = x
        cfg = self.config
        alarm = cfg.surprise / sensitivity
        shift_alarm = cfg.cusum.threshold / sensitivity
        drops = warm and cfg.detect_drops
        return Assessment(
            at=datetime.fromtimestamp(ts, UTC),
            observed=x,
            expected=mean,
            warm=warm,
            surprise_up=up,
            surprise_down=down,
            spike=surprise_score(up, alarm) if warm else 0.0,
            drop=surprise_score(down, alarm) if drops else 0.0,
            shift_up=surprise_score(state.cusum_up, shift_alarm) if warm else 0.0,
            shift_down=surprise_score(state.cusum_down, shift_alarm) if drops else 0.0,
        )

    def _count_step(
        self,
        state: SeriesState,
        x: float,
        mean: float,
        effects: list[float],
        index: list[int],
        warm: bool,
    ) -> tuple[float, float]:
        """Count mode: NB tails, Poisson CUSUM, then learn the clipped count."""
        cfg = self.config
        phi = state.spread_num / state.spread_den if state.spread_den > 0.0 else 0.0
        phi = min(cfg.count.max_dispersion, max(0.0, phi))
        up = 0.0
        if x >= cfg.count.min_spike_count:
            up = _surprise(nb_upper_tail(x, mean, phi))
        down = _surprise(nb_lower_tail(x, mean, phi)) if x < mean else 0.0
        sd = math.sqrt(mean + phi * mean * mean)
        xc = min(x, mean + cfg.count.winsor_sd * sd + 1.0) if state.n else x
        if warm and cfg.cusum.enabled:
            weight = 1.0 / (1.0 + phi * mean)
            c = cfg.cusum
            cap = c.cap * c.threshold
            inc_up = (xc * math.log(c.up) - mean * (c.up - 1.0)) * weight
            inc_down = (xc * math.log(c.down) - mean * (c.down - 1.0)) * weight
            state.cusum_up = min(cap, max(0.0, state.cusum_up + inc_up))
            state.cusum_down = min(cap, max(0.0, state.cusum_down + inc_down))
        d_level = self._d_level
        state.level_num = d_level * state.level_num + xc
        state.level_den = d_level * state.level_den + math.prod(effects)
        state.spread_num = d_level * state.spread_num + ((xc - mean) ** 2 - mean)
        state.spread_den = d_level * state.spread_den + mean * mean
        level = self._level(state) if state.n else xc
        base = max(level, cfg.count.min_expected)
        slots = state.slots
        for g, ((offset, size, decay), i) in enumerate(zip(self._groups, index, strict=True)):
            others = math.prod(e for h, e in enumerate(effects) if h != g)
            slots[offset + i] = decay * slots[offset + i] + xc
            slots[offset + size + i] = decay * slots[offset + size + i] + base * others
        return up, down

    def _value_step(
        self,
        state: SeriesState,
        x: float,
        mean: float,
        effects: list[float],
        index: list[int],
        warm: bool,
    ) -> tuple[float, float]:
        """Value mode: tails beyond the tracked quantile, CUSUM, then learn the clipped value."""
        if not state.n:
            state.level_num = x
            state.magnitude = abs(x)
            return 0.0, 0.0
        cfg = self.config
        v = cfg.value
        scale = max(state.spread_num, v.scale_floor_rel * state.magnitude, 1e-12)
        residual = x - mean
        beyond = (abs(residual) - state.tail) / (scale * _LN10)
        surprise = min(_SURPRISE_CAP, max(0.0, -math.log10(1.0 - v.tail_quantile) + beyond))
        up = surprise if residual > 0 else 0.0
        down = surprise if residual < 0 else 0.0
        exceeded = 1.0 if abs(residual) > state.tail else 0.0
        state.tail += v.tail_rate * scale * (exceeded - (1.0 - v.tail_quantile))
        limit = v.winsor_scales * scale
        rc = min(limit, max(-limit, residual))
        if warm and cfg.cusum.enabled:
            c = cfg.cusum
            cap = c.cap * c.threshold
            zs = rc / scale / math.sqrt(2.0)
            state.cusum_up = min(cap, max(0.0, state.cusum_up + zs - c.allowance))
            state.cusum_down = min(cap, max(0.0, state.cusum_down - zs - c.allowance))
        xc = mean + rc
        level = state.level_num
        state.spread_num = self._d_scale * state.spread_num + (1 - self._d_scale) * abs(rc)
        state.magnitude = self._d_magnitude * state.magnitude + (1 - self._d_magnitude) * abs(x)
        state.level_num = self._d_level * level + (1 - self._d_level) * (xc - sum(effects))
        slots = state.slots
        for g, ((offset, size, decay), i) in enumerate(zip(self._groups, index, strict=True)):
            without = level + sum(e for h, e in enumerate(effects) if h != g)
            slots[offset + i] = decay * slots[offset + i] + (xc - without)
            slots[offset + size + i] = decay * slots[offset + size + i] + 1.0
        return up, down


def verdicts(
    detector: SeasonalDetector,
    assessment: Assessment,
    key: Mapping[str, str],
    name: str = "seasonal",
    evidence: tuple[str, ...] = (),
    detect_drops: bool = True,
    scale: str = "",
) -> list[Verdict]:
    """The verdicts of one assessed bucket, one per warning kind (quiet ones included).

    Count mode: ``count_spike`` (point upper tail), ``count_drop`` (point lower tail or the
    downward CUSUM: low counts can only drop as a sustained shortfall) and ``level_shift``
    (upward CUSUM). Value mode: ``sensor_anomaly`` (either tail) and ``level_shift`` (either
    CUSUM). Not-warm assessments give quiet verdicts; so do drops when ``detect_drops`` is
    False (a category whose policy ignores drops). A non-empty ``scale`` (e.g. ``hour``,
    ``day``) is added to the key labels, so each time scale has its own fingerprints.
    """
    cfg = detector.config
    labels = {**key, "scale": scale} if scale else dict(key)
    start = assessment.at
    end = start + detector.interval
    base_params: dict[str, float | int | str] = {
        "mode": cfg.mode,
        "interval_s": int(detector.interval.total_seconds()),
        "surprise": cfg.surprise,
        "cusum_threshold": cfg.cusum.threshold,
    }
    if detector.config.mode == "count":
        parts = {
            "count_spike": (assessment.spike, "up"),
            "count_drop": (
                max(assessment.drop, assessment.shift_down) if detect_drops else 0.0,
                "down",
            ),
            "level_shift": (assessment.shift_up, "up"),
        }
    else:
        point = max((assessment.spike, "up"), (assessment.drop, "down"))
        shift = max((assessment.shift_up, "up"), (assessment.shift_down, "down"))
        parts = {"sensor_anomaly": point, "level_shift": shift}
    out = []
    for kind, (score, direction) in parts.items():
        out.append(
            Verdict(
                kind=kind,  # type: ignore[arg-type]
                key=labels,
                severity=severity_of(score, cfg),
                observed=assessment.observed,
                expected=assessment.expected,
                score=min(1.0, max(0.0, score)),
                window_start=start,
                window_end=end,
                detector=name,
                params={**base_params, "direction": direction},
                evidence=evidence,
            )
        )
    return out
