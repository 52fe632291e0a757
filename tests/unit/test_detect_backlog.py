import random
from datetime import UTC, datetime, timedelta

import pytest

from streams.detect.backlog import (
    BacklogConfig,
    BacklogSpikes,
    open_counts,
    rebuild,
    robust_z,
    snapshot_times,
)
from streams.detect.lifecycle import WarningLifecycle
from streams.detect.sensors import RULES_LIFECYCLE
from streams.detect.verdict import Verdict

T0 = datetime(2026, 11, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


def noisy_counts(n: int, level: float, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return [max(0, round(rng.gauss(level, level**0.5))) for _ in range(n)]


def feed(det: BacklogSpikes, counts: list[int], unit: str = "U1") -> list[Verdict]:
    out: list[Verdict] = []
    for i, n in enumerate(counts):
        out += det.observe(unit, T0 + i * HOUR, n, evidence=[f"case-{i}"])
    return out


def test_steady_noisy_backlog_raises_nothing() -> None:
    assert feed(BacklogSpikes(), noisy_counts(24 * 21, 40)) == []


def test_a_spike_fires_escalates_and_clears_once() -> None:
    base = noisy_counts(24 * 7, 40)
    counts = base + [60, 75, 95, 170, 170, 90, 60, 42, 40, 41, 40]
    det = BacklogSpikes()
    verdicts = feed(det, counts)
    # baseline ~40, spread ~5 (MAD) to 6.3 (Poisson): 60 is within noise, 75 is z ~5.5,
    # 95 z ~8.6, 170 z ~20; 60 after the peak is still above z_clear, so the spike
    # clears at the second 40
    assert [v.severity for v in verdicts] == ["minor", "major", "critical", "minor", None]
    first = len(base) + 1
    assert verdicts[0].window_end == T0 + first * HOUR
    assert verdicts[-1].window_start == verdicts[0].window_start
    assert verdicts[-1].window_end == T0 + (first + 7) * HOUR
    assert verdicts[0].evidence == (f"case-{first}",)
    assert 38 < verdicts[0].expected < 48 and verdicts[0].observed == 75
    assert verdicts[0].score >= 0.5
    life = WarningLifecycle(RULES_LIFECYCLE)
    warnings = life.observe_all(verdicts)
    assert [w.status for w in warnings] == ["firing"] * 4 + ["resolved"]
    assert len({w.fingerprint for w in warnings}) == 1


def test_small_units_need_a_real_excess() -> None:
    """A unit with 1-2 open cases going to 5 is not a spike (Poisson spread, min_excess)."""
    counts = [1, 2, 1, 1, 2, 1] * 20 + [5, 5, 5]
    assert feed(BacklogSpikes(), counts) == []
    assert feed(BacklogSpikes(), [1, 2, 1, 1, 2, 1] * 20 + [12]) != []


def test_no_alarm_during_warm_up() -> None:
    det = BacklogSpikes(BacklogConfig(warmup_snapshots=48))
    assert feed(det, [40] * 10 + [200]) == []


def test_the_baseline_resists_the_spike_it_flags() -> None:
    det = BacklogSpikes()
    feed(det, noisy_counts(24 * 7, 40))
    before = det.units["U1"].level
    for i in range(6):
        det.observe("U1", T0 + (24 * 7 + i) * HOUR, 400)
    assert det.units["U1"].level < before + 10


def test_robust_z_uses_the_poisson_floor() -> None:
    assert robust_z(14, 9.0, 0.0, 1.0) == pytest.approx(5 / 3)
    assert robust_z(14, 9.0, 10.0, 1.0) == pytest.approx(5 / 12.533)


def test_open_counts_from_case_lifetimes() -> None:
    cases = [
        ("U1", T0, T0 + 2 * HOUR),
        ("U1", T0 + HOUR, None),
        ("U2", T0 + 2 * HOUR, T0 + 3 * HOUR),
    ]
    times = snapshot_times(T0, T0 + 4 * HOUR, HOUR)
    assert open_counts(cases, times) == [
        (T0, "U1", 1),
        (T0 + HOUR, "U1", 2),
        (T0 + 2 * HOUR, "U1", 1),
        (T0 + 2 * HOUR, "U2", 1),
        (T0 + 3 * HOUR, "U1", 1),
        (T0 + 3 * HOUR, "U2", 0),
    ]


def test_snapshot_times_are_aligned_to_the_cadence() -> None:
    times = snapshot_times(T0 + timedelta(minutes=10), T0 + 3 * HOUR, HOUR)
    assert times == [T0 + HOUR, T0 + 2 * HOUR]


def test_rebuild_from_case_history_equals_streaming() -> None:
    rng = random.Random(9)
    cases = []
    for i in range(3000):
        opened = T0 + timedelta(minutes=rng.randrange(60 * 24 * 14))
        length = timedelta(minutes=rng.expovariate(1 / 600))
        if i % 3 == 0 and 60 * 24 * 9 < (opened - T0).total_seconds() / 60 < 60 * 24 * 10:
            length *= 30  # a unit falls behind for a day
        closed = opened + length if rng.random() < 0.95 else None
        cases.append((f"U{i % 3}", opened, closed))
    times = snapshot_times(T0, T0 + timedelta(days=14), HOUR)
    snapshots = open_counts(cases, times)
    streamed = BacklogSpikes()
    fired = [v for at, unit, n in snapshots for v in streamed.observe(unit, at, n)]
    assert {v.key["unit"] for v in fired if v.severity} == {"U0"}
    assert rebuild(snapshots).snapshot() == streamed.snapshot()


def test_config_orders_levels() -> None:
    with pytest.raises(ValueError):
        BacklogConfig(z_enter=4.0, z_clear=5.0)
