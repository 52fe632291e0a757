"""The seasonal detector on constructed series: spikes, shifts and drops alarm; a weekly
pattern, the warm-up and redelivery do not; rebuilding from stored rows equals streaming."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from streams.detect.config import (
    CategoryPolicy,
    DetectionConfig,
    SensitivePeriod,
    daily_counts,
    hourly_counts,
    sensitivity_at,
    value_series,
)
from streams.detect.seasonal import (
    Assessment,
    SeasonalDetector,
    SeriesState,
    nb_lower_tail,
    nb_upper_tail,
    verdicts,
)

HOUR = timedelta(hours=1)
T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
KEY = {"grid_code": "G1", "category": "noise"}


def weekly_rates(weeks: int) -> np.ndarray:
    """Expected counts per hour: busy days, quiet nights, quieter weekends."""
    hours = np.arange(weeks * 168)
    hour_of_day = hours % 24
    weekday = (hours // 24) % 7
    day_shape = 0.3 + 2.7 * np.exp(-(((hour_of_day - 14) / 4.0) ** 2))
    return day_shape * np.where(weekday >= 5, 0.4, 1.0)


def stream(
    detector: SeasonalDetector,
    counts: np.ndarray,
    state: SeriesState | None = None,
    first: int = 0,
) -> tuple[SeriesState, list[Assessment]]:
    state = state or detector.new_state()
    out = []
    for i, count in enumerate(counts, start=first):
        assessment = detector.update(state, T0 + i * HOUR, float(count))
        assert assessment is not None
        out.append(assessment)
    return state, out


def alarms(assessments: list[Assessment], field: str) -> list[int]:
    return [i for i, a in enumerate(assessments) if getattr(a, field) >= 0.5]


@pytest.fixture
def hourly() -> SeasonalDetector:
    return SeasonalDetector(hourly_counts(), HOUR)


def test_weekly_pattern_without_anomaly_stays_quiet(hourly: SeasonalDetector) -> None:
    counts = np.random.default_rng(7).poisson(weekly_rates(10))
    _, out = stream(hourly, counts)
    assert [i for i, a in enumerate(out) if a.score >= 0.5] == []
    monday_2pm, sunday_2pm = 9 * 168 + 14, 9 * 168 + 6 * 24 + 14
    assert out[monday_2pm].expected == pytest.approx(3.0, rel=0.3)
    assert out[sunday_2pm].expected == pytest.approx(1.2, rel=0.3)


def test_spike_alarms_at_its_bucket(hourly: SeasonalDetector) -> None:
    counts = np.random.default_rng(1).poisson(weekly_rates(6))
    at = 5 * 168 + 3 * 24 + 3  # a Thursday, 3 am: expected ~0.3
    counts[at] += 6
    _, out = stream(hourly, counts)
    assert alarms(out, "spike") == [at]
    assert alarms(out, "shift_up") == []
    vs = verdicts(hourly, out[at], KEY)
    spike = next(v for v in vs if v.kind == "count_spike")
    assert spike.severity is not None and spike.observed == counts[at]
    assert spike.window_start == T0 + at * HOUR and spike.window_end == T0 + (at + 1) * HOUR
    assert all(v.severity is None for v in vs if v.kind != "count_spike")
    day_spike = verdicts(hourly, out[at], KEY, scale="day")[0]
    assert day_spike.key["scale"] == "day" and day_spike.fingerprint != spike.fingerprint


def test_sustained_rise_alarms_as_level_shift(hourly: SeasonalDetector) -> None:
    rates = weekly_rates(7)
    start = 6 * 168
    rates[start:] *= 2.5
    counts = np.random.default_rng(2).poisson(rates)
    _, out = stream(hourly, counts)
    shifts = alarms(out, "shift_up")
    assert shifts and start <= shifts[0] <= start + 24
    assert [i for i, a in enumerate(out[:start]) if a.score >= 0.5] == []


def test_reports_stopping_alarm_as_drop(hourly: SeasonalDetector) -> None:
    rates = weekly_rates(7)
    start = 6 * 168 + 9  # Monday 9 am
    counts = np.random.default_rng(3).poisson(rates)
    counts[start:] = 0
    _, out = stream(hourly, counts)
    drops = [i for i, a in enumerate(out) if max(a.drop, a.shift_down) >= 0.5]
    assert drops and start <= drops[0] <= start + 12
    vs = verdicts(hourly, out[drops[0]], KEY)
    assert next(v for v in vs if v.kind == "count_drop").severity is not None
    ignored = verdicts(hourly, out[drops[0]], KEY, detect_drops=False)
    assert next(v for v in ignored if v.kind == "count_drop").severity is None


def test_no_alarm_during_warmup(hourly: SeasonalDetector) -> None:
    counts = np.random.default_rng(4).poisson(weekly_rates(2))
    counts[30] += 40
    state, out = stream(hourly, counts[:100])
    assert not hourly.is_warm(state)
    assert all(a.score == 0.0 and not a.warm for a in out)
    _, later = stream(hourly, counts[100:], state, first=100)
    assert any(a.warm for a in later)


def test_redelivered_bucket_is_ignored(hourly: SeasonalDetector) -> None:
    counts = np.random.default_rng(5).poisson(weekly_rates(1))
    state, _ = stream(hourly, counts)
    before = state.to_bytes()
    assert hourly.update(state, T0 + 10 * HOUR, 50.0) is None
    assert state.to_bytes() == before


def test_rebuild_from_stored_rows_equals_streaming(hourly: SeasonalDetector) -> None:
    counts = np.random.default_rng(6).poisson(weekly_rates(3) * 0.3)
    counts[:5] = [0, 2, 0, 1, 0]
    counts[-3:] = 0
    streamed, _ = stream(hourly, counts)
    stored = [(T0 + i * HOUR, float(c)) for i, c in enumerate(counts) if c > 0]
    until = T0 + len(counts) * HOUR
    rebuilt = hourly.rebuild(reversed(stored), until=until, since=T0)
    assert rebuilt == streamed
    assert rebuilt.to_bytes() == streamed.to_bytes()
    assert SeriesState.from_bytes(streamed.to_bytes()) == streamed
    assert hourly.rebuild(stored, until=until) != streamed, "history before the first row"


def test_rebuild_then_stream_equals_streaming_throughout(hourly: SeasonalDetector) -> None:
    counts = np.random.default_rng(8).poisson(weekly_rates(3))
    full, full_out = stream(hourly, counts)
    cut = 2 * 168 + 5
    rows = [(T0 + i * HOUR, float(c)) for i, c in enumerate(counts[:cut]) if c]
    state = hourly.rebuild(rows, until=T0 + cut * HOUR, since=T0)
    tail = [hourly.update(state, T0 + i * HOUR, float(counts[i])) for i in range(cut, len(counts))]
    assert state == full
    assert tail == full_out[cut:]


def test_sensitivity_moves_scores_not_state(hourly: SeasonalDetector) -> None:
    counts = np.random.default_rng(9).poisson(weekly_rates(3))
    a, b = hourly.new_state(), hourly.new_state()
    for i, c in enumerate(counts):
        x = hourly.update(a, T0 + i * HOUR, float(c))
        y = hourly.update(b, T0 + i * HOUR, float(c), sensitivity=3.0)
        assert x is not None and y is not None
        assert y.spike >= x.spike and y.shift_up >= x.shift_up
    assert a == b


def test_day_scale_catches_a_rise_over_days() -> None:
    """A 60 % rise is not a burst in any hour, but the day scale sees it within days."""
    detector = SeasonalDetector(daily_counts(), timedelta(days=1), "Asia/Shanghai")
    local_monday = datetime(2026, 1, 4, 16, tzinfo=UTC)
    rates = np.tile([20.0, 22, 21, 20, 24, 8, 6], 14)
    rates[84:] *= 1.6
    counts = np.random.default_rng(0).poisson(rates)
    state = detector.new_state()
    out = []
    for i, count in enumerate(counts):
        assessment = detector.update(state, local_monday + timedelta(days=i), float(count))
        assert assessment is not None
        out.append(assessment)
    assert [i for i, a in enumerate(out[:84]) if a.score >= 0.5] == []
    shifts = alarms(out, "shift_up")
    assert shifts and 84 <= shifts[0] <= 84 + 7


@pytest.mark.parametrize(("x", "mean", "phi"), [(0, 0.5, 0.0), (3, 0.4, 0.0), (7, 2.0, 0.5)])
def test_tails_match_scipy(x: int, mean: float, phi: float) -> None:
    if phi == 0.0:
        dist = stats.poisson(mean)
    else:
        size = 1.0 / phi
        dist = stats.nbinom(size, size / (size + mean))
    assert nb_upper_tail(x, mean, phi) == pytest.approx(dist.sf(x - 1), rel=1e-9)
    assert nb_lower_tail(x, mean, phi) == pytest.approx(dist.cdf(x), rel=1e-9)


def value_stream(values: np.ndarray, step: timedelta) -> list[Assessment]:
    detector = SeasonalDetector(value_series(), step)
    state = detector.new_state()
    out = []
    for i, v in enumerate(values):
        a = detector.update(state, T0 + i * step, float(v))
        assert a is not None
        out.append(a)
    return out


def test_value_mode_spike_and_shift_on_noisy_daily_series() -> None:
    step = timedelta(minutes=10)
    n = 6 * 144
    t = np.arange(n)
    base = 50 + 10 * np.sin(2 * math.pi * t / 144) + np.random.default_rng(10).normal(0, 1, n)
    quiet = value_stream(base, step)
    assert alarms(quiet, "spike") == [] and alarms(quiet, "drop") == []
    spiky = base.copy()
    spiky[4 * 144] += 25
    out = value_stream(spiky, step)
    assert alarms(out, "spike") == [4 * 144]
    shifted = base.copy()
    shifted[5 * 144 :] -= 12
    first = min(alarms(value_stream(shifted, step), "drop") or [n])
    assert 5 * 144 <= first <= 5 * 144 + 3


def test_sensitivity_at_periods_and_categories() -> None:
    config = DetectionConfig(
        timezone="Asia/Shanghai",
        categories={"noise": CategoryPolicy(sensitivity=2.0)},
        periods=(
            SensitivePeriod(
                name="national day", start=date(2026, 10, 1), end=date(2026, 10, 7), sensitivity=1.5
            ),
            SensitivePeriod(
                name="marathon",
                start=date(2026, 10, 3),
                end=date(2026, 10, 3),
                sensitivity=3.0,
                categories=frozenset({"traffic"}),
            ),
        ),
    )
    before = datetime(2026, 9, 30, 15, 59, tzinfo=UTC)  # 23:59 local
    first_local_minute = datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    assert sensitivity_at(config, "noise", before) == 2.0
    assert sensitivity_at(config, "noise", first_local_minute) == 3.0
    assert sensitivity_at(config, "waste", first_local_minute) == 1.5
    marathon = datetime(2026, 10, 3, 2, tzinfo=UTC)
    assert sensitivity_at(config, "traffic", marathon) == 3.0
    assert sensitivity_at(config, "traffic", datetime(2026, 10, 8, 2, tzinfo=UTC)) == 1.0
    with pytest.raises(ValueError):
        sensitivity_at(config, "noise", datetime(2026, 10, 3))
    with pytest.raises(ValueError):
        SensitivePeriod(name="bad", start=date(2026, 2, 2), end=date(2026, 2, 1), sensitivity=2)
