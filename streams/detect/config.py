"""Configuration of the seasonal detector and the warning lifecycle (pydantic v2).

Every tunable number of ``streams.detect.seasonal`` and ``streams.detect.lifecycle`` lives here
with its default; the defaults are the shipped settings (also used by ``gridpulse detect``).
Sensitivity is a multiplier on how easily an alarm is raised: 1 is the default, 2 halves the
surprise needed to alarm, 0.5 doubles it. It comes from the category (``categories``) and from
the sensitive periods in force (``periods``, e.g. holidays or major events).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Literal, Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

SeriesMode = Literal["count", "value"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeasonConfig(_Frozen):
    """The time-of-week profile: hour-of-day, weekday and hour-of-week effects, all shrunk.

    A series' expectation is ``level`` combined with a time-of-day slot effect, a weekday
    effect (``weekday``) and an hour-of-week refinement (``weekly``). Each effect is an
    exponentially decayed mean shrunk towards "no effect" with the strength of ``shrinkage``
    pseudo-observations (expected events in count mode), so a sparse hour-of-week slot falls
    back to hour-of-day x weekday, and those to the overall level.
    """

    slot: timedelta = Field(default=timedelta(hours=1), description="width of a time-of-day slot")
    weekday: bool = Field(
        default=True, description="learn a day-of-week effect (all slots of a day)"
    )
    weekly: bool = Field(default=True, description="learn an hour-of-week refinement of each slot")
    half_life_cycles: float = Field(
        default=8.0,
        gt=0,
        description="half-life of slot effects, in days (time of day) or weeks (weekday, week)",
    )
    shrinkage: float = Field(
        default=3.0, ge=0, description="pseudo-observations pulling a slot effect towards none"
    )

    @model_validator(mode="after")
    def _slot_divides_day(self) -> Self:
        day = timedelta(days=1)
        if self.slot <= timedelta(0) or day % self.slot:
            raise ValueError("season.slot must divide one day")
        return self


class CountModel(_Frozen):
    """Tail model for counts: negative binomial with a learned dispersion (Poisson at 0)."""

    min_expected: float = Field(
        default=0.02, gt=0, description="floor of the expected count of one bucket (a silent slot)"
    )
    max_dispersion: float = Field(
        default=2.0, ge=0, description="cap of the learned NB dispersion 1/size (0 forces Poisson)"
    )
    min_spike_count: int = Field(
        default=3, ge=1, description="fewest events in a bucket for a spike"
    )
    winsor_sd: float = Field(
        default=3.0,
        gt=0,
        description="counts above expected + this many sd are clipped when learning",
    )


class ValueModel(_Frozen):
    """Tail model for continuous values: an exponential tail beyond a tracked high quantile.

    The tail probability of a residual r is ``(1 - tail_quantile) * exp(-(|r| - Q) / b)``
    with Q the streaming ``tail_quantile`` of |r| and b the decayed mean |r| (Laplace scale),
    so series with heavy-tailed noise need proportionally larger residuals to alarm.
    """

    winsor_scales: float = Field(
        default=4.0, gt=0, description="residuals beyond this many scales are clipped when learning"
    )
    scale_half_life: float = Field(
        default=1.0, gt=0, description="half-life of the residual scale, in days of samples"
    )
    scale_floor_rel: float = Field(
        default=0.01,
        ge=0,
        description="scale floor relative to the typical magnitude of the series",
    )
    magnitude_half_life: float = Field(
        default=7.0, gt=0, description="half-life of the typical magnitude, in days of samples"
    )
    tail_quantile: float = Field(
        default=0.99, gt=0.5, lt=1.0, description="quantile of |residual| tracked as the tail start"
    )
    tail_rate: float = Field(
        default=0.5, gt=0, description="step of the streaming quantile, in residual scales"
    )


class CusumConfig(_Frozen):
    """Two-sided CUSUM for sustained level shifts, on the expected level of each bucket.

    Counts: Poisson log-likelihood-ratio CUSUM for a rate ``up`` (or ``down``) times the
    expectation. Values: CUSUM of residuals in units of the residual scale with allowance
    ``allowance``. An alarm at ``threshold`` (score 0.5); the statistic is capped at
    ``cap`` x threshold so it falls back soon after the series returns to normal.
    """

    enabled: bool = True
    up: float = Field(
        default=2.0, gt=1.0, description="count mode: shifted rate / expected, upwards"
    )
    down: float = Field(
        default=0.25, gt=0.0, lt=1.0, description="count mode: shifted rate, downwards"
    )
    allowance: float = Field(default=1.5, gt=0, description="value mode: allowance k in scales")
    threshold: float = Field(default=10.0, gt=0, description="alarm threshold h (nats or scales)")
    cap: float = Field(default=2.0, ge=1.0, description="cap of the statistic, in thresholds")


class SeverityBands(_Frozen):
    """Severity from the ratio surprise / alarm surprise (1 = just alarming)."""

    major: float = Field(default=2.0, gt=1.0)
    critical: float = Field(default=4.0, gt=1.0)


class SeasonalConfig(_Frozen):
    """One seasonal detector: a series mode, its time scale and every tunable of the method.

    ``surprise`` is the alarm level in -log10 of the tail probability of one bucket (or
    sample): 5 means an upper-tail probability of 1e-5 under the learned model. Scores map
    surprise s to ``s / (s + surprise / sensitivity)``, so the alarm threshold is always
    score 0.5 (``ALERT_THRESHOLD``).
    """

    mode: SeriesMode = "count"
    season: SeasonConfig = SeasonConfig()
    level_half_life: timedelta = Field(
        default=timedelta(days=7), description="half-life of the deseasonalised level"
    )
    warmup: timedelta = Field(
        default=timedelta(days=7),
        description="history needed (first to latest bucket) before alarms",
    )
    warmup_samples: int = Field(default=48, ge=1, description="samples needed before alarms")
    surprise: float = Field(default=5.0, gt=0, description="alarm level, -log10 tail probability")
    detect_drops: bool = Field(default=True, description="alarm on unusually low values too")
    count: CountModel = CountModel()
    value: ValueModel = ValueModel()
    cusum: CusumConfig = CusumConfig()
    severity: SeverityBands = SeverityBands()


ALERT_THRESHOLD = 0.5
"""Score at and above which a detector alarms (fixed: sensitivity moves the score instead)."""


def hourly_counts() -> SeasonalConfig:
    """Hour buckets per grid x category: bursts within an hour, hour-of-week profile."""
    return SeasonalConfig()


def daily_counts() -> SeasonalConfig:
    """Day buckets: rises and falls over days; a day-of-week profile, slower level."""
    return SeasonalConfig(
        season=SeasonConfig(slot=timedelta(days=1), weekly=False, half_life_cycles=6.0),
        level_half_life=timedelta(days=21),
        warmup=timedelta(days=21),
        warmup_samples=21,
        surprise=4.0,
        cusum=CusumConfig(up=1.5, down=0.4, threshold=8.0),
    )


def value_series() -> SeasonalConfig:
    """Continuous series (sensors, ``gridpulse detect --csv``): the shipped defaults."""
    return SeasonalConfig(
        mode="value",
        season=SeasonConfig(
            slot=timedelta(hours=1), weekday=False, weekly=False, half_life_cycles=3.0
        ),
        level_half_life=timedelta(days=1),
        warmup=timedelta(days=2),
        warmup_samples=150,
        surprise=4.0,
    )


class SensitivePeriod(_Frozen):
    """A date range (local dates, inclusive) with its own sensitivity, e.g. a holiday."""

    name: str
    start: date
    end: date
    sensitivity: float = Field(gt=0)
    categories: frozenset[str] = Field(
        default=frozenset(), description="categories it applies to; empty = every category"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError(f"sensitive period {self.name!r} ends before it starts")
        return self


class CategoryPolicy(_Frozen):
    """Per-category settings of the count detectors."""

    sensitivity: float = Field(default=1.0, gt=0)
    detect_drops: bool = True


class LifecycleConfig(_Frozen):
    """When an open warning is republished and when it resolves."""

    resolve_after_quiet: int = Field(
        default=3, ge=1, description="consecutive quiet windows that resolve a warning"
    )
    update_cadence: timedelta = Field(
        default=timedelta(hours=1), description="republish a firing warning at most this often"
    )
    min_quiet: timedelta = Field(
        default=timedelta(0), description="quiet time (besides the windows) needed to resolve"
    )
    max_evidence: int = Field(
        default=100, ge=0, le=100, description="evidence ids kept per revision"
    )


class DetectionConfig(_Frozen):
    """Everything the count detectors of the worker need: scales, categories, periods and the
    warning lifecycle. ``scales`` maps a name to the detector of one bucket width (the worker
    feeds ``hour`` from 1 h windows and ``day`` from 1 d windows)."""

    timezone: str = "Asia/Shanghai"
    scales: dict[str, SeasonalConfig] = Field(
        default_factory=lambda: {"hour": hourly_counts(), "day": daily_counts()}
    )
    categories: dict[str, CategoryPolicy] = Field(default_factory=dict)
    default_category: CategoryPolicy = CategoryPolicy()
    periods: tuple[SensitivePeriod, ...] = ()
    lifecycle: LifecycleConfig = LifecycleConfig()

    def policy(self, category: str) -> CategoryPolicy:
        """The policy of a category (the default policy when it is not configured)."""
        return self.categories.get(category, self.default_category)


def sensitivity_at(config: DetectionConfig, category: str, at: datetime) -> float:
    """Sensitivity in force for ``category`` at ``at`` (an aware datetime).

    The category's sensitivity times the largest multiplier among the sensitive periods whose
    local-date range (in ``config.timezone``) contains ``at`` and that apply to the category.
    """
    if at.tzinfo is None:
        raise ValueError("sensitivity_at needs an aware datetime")
    local_day = at.astimezone(ZoneInfo(config.timezone)).date()
    multipliers = [
        p.sensitivity
        for p in config.periods
        if p.start <= local_day <= p.end and (not p.categories or category in p.categories)
    ]
    return config.policy(category).sensitivity * (max(multipliers) if multipliers else 1.0)


def period_bounds(period: SensitivePeriod, timezone: str) -> tuple[datetime, datetime]:
    """The aware [start, end) instants a sensitive period covers in ``timezone``."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(period.start, time(0), zone)
    end = datetime.combine(period.end + timedelta(days=1), time(0), zone)
    return start, end


def value_lifecycle() -> LifecycleConfig:
    """Lifecycle of value-series warnings: an episode ends after a calm day."""
    return LifecycleConfig(min_quiet=timedelta(days=1))
