"""Detector + lifecycle across a worker restart: the same warnings, each published once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core.warning import EarlyWarning
from streams.detect.config import LifecycleConfig, hourly_counts
from streams.detect.lifecycle import WarningLifecycle
from streams.detect.seasonal import SeasonalDetector, SeriesState, verdicts

HOUR = timedelta(hours=1)
T0 = datetime(2026, 1, 5, tzinfo=UTC)
KEY = {"community": "C1", "grid_code": "G3", "category": "noise"}
LIFE = LifecycleConfig(resolve_after_quiet=3, update_cadence=timedelta(hours=2))
DETECTOR = SeasonalDetector(hourly_counts(), HOUR)


def counts() -> np.ndarray:
    hours = np.arange(5 * 168)
    rates = 0.5 + 2.0 * np.exp(-((((hours % 24) - 13) / 4.0) ** 2))
    series = np.random.default_rng(11).poisson(rates)
    series[3 * 168 + 2] += 9  # a burst at night
    series[4 * 168 + 8 : 4 * 168 + 40] = 0  # reports stop for 32 hours
    return series


def run(
    series: np.ndarray, state: SeriesState, machine: WarningLifecycle, start: int, stop: int
) -> list[EarlyWarning]:
    out = []
    for i in range(start, stop):
        assessment = DETECTOR.update(state, T0 + i * HOUR, float(series[i]))
        if assessment is not None:
            out += machine.observe_all(verdicts(DETECTOR, assessment, KEY))
    return out


def uninterrupted(series: np.ndarray) -> list[EarlyWarning]:
    return run(series, DETECTOR.new_state(), WarningLifecycle(LIFE), 0, len(series))


def test_the_series_raises_a_spike_and_a_drop() -> None:
    warnings = uninterrupted(counts())
    fired = {(w.kind, w.status) for w in warnings}
    assert ("count_spike", "firing") in fired and ("count_drop", "firing") in fired
    assert ("count_spike", "resolved") in fired and ("count_drop", "resolved") in fired


@pytest.mark.parametrize("crash", [3 * 168 + 3, 4 * 168 + 12, 4 * 168 + 41, 4 * 168 + 43])
def test_restart_gives_the_same_warnings_once(crash: int) -> None:
    series = counts()
    expected = uninterrupted(series)
    stored = run(series, DETECTOR.new_state(), WarningLifecycle(LIFE), 0, crash)

    machine = WarningLifecycle.rebuild(stored, LIFE)
    resume_at = machine.replay_from() or T0 + crash * HOUR
    resume = int((resume_at - T0) / HOUR)
    rows = [(T0 + i * HOUR, float(c)) for i, c in enumerate(series[:resume]) if c]
    state = DETECTOR.rebuild(rows, until=resume_at, since=T0)
    again = run(series, state, machine, resume, len(series))

    keys = [(w.fingerprint, w.revision) for w in stored + again]
    assert len(set(keys)) == len(keys), "a revision was published twice"
    assert any(w.status == "firing" for w in stored), "the crash is after a firing"
    published = {(w.fingerprint, w.revision): w for w in stored + again}
    assert sorted(published) == sorted((w.fingerprint, w.revision) for w in expected)
    assert all(published[(w.fingerprint, w.revision)] == w for w in expected)
