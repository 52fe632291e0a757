import random
from datetime import UTC, datetime, timedelta

import pytest

from streams.detect.lifecycle import WarningLifecycle
from streams.detect.patrol import GapLevel, PatrolConfig, PatrolGaps, rebuild
from streams.detect.sensors import RULES_LIFECYCLE

T0 = datetime(2026, 11, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def config() -> PatrolConfig:
    return PatrolConfig(default_interval=timedelta(hours=8), intervals={"G2": timedelta(hours=2)})


def test_gap_fires_from_the_timer_escalates_and_closes_on_a_report() -> None:
    gaps = PatrolGaps(config(), labels={"G1": {"community": "C1"}})
    gaps.observe("G1", T0, "r0")
    assert gaps.due(T0 + 7 * HOUR, T0 + 7 * HOUR) == []
    first = gaps.due(T0 + 8 * HOUR, T0 + 8 * HOUR)
    assert [(v.kind, v.severity, v.key, v.window_end) for v in first] == [
        ("patrol_gap", "minor", {"community": "C1", "grid_code": "G1"}, T0 + 8 * HOUR)
    ]
    assert gaps.due(T0 + 10 * HOUR, T0 + 10 * HOUR) == []  # no repeat at the same level
    assert [v.severity for v in gaps.due(T0 + 16 * HOUR, T0 + 16 * HOUR)] == ["major"]
    closed = gaps.observe("G1", T0 + 17 * HOUR, "r1")
    assert [(v.severity, v.evidence) for v in closed] == [(None, ("r1",))]
    assert gaps.due(T0 + 24 * HOUR, T0 + 24 * HOUR) == []
    assert [v.severity for v in gaps.due(T0 + 25 * HOUR, T0 + 25 * HOUR)] == ["minor"]


def test_per_grid_interval_and_tracked_grids_without_reports() -> None:
    gaps = PatrolGaps(config())
    gaps.track(["G1", "G2"], since=T0)
    fired = gaps.due(T0 + 3 * HOUR, T0 + 3 * HOUR)
    assert [(v.key["grid_code"], v.severity) for v in fired] == [("G2", "minor")]


def test_a_late_timer_jumps_to_the_level_the_gap_has_reached() -> None:
    gaps = PatrolGaps(config())
    gaps.observe("G1", T0)
    fired = gaps.due(T0 + 40 * HOUR, T0 + 40 * HOUR)
    assert [(v.severity, v.window_end) for v in fired] == [("critical", T0 + 32 * HOUR)]


def test_a_backlog_replay_raises_no_patrol_gap() -> None:
    """Inspectors reported every 6 h; the worker replays a day of backlog long after: the
    watermark follows the replay, so no gap shows although wall-clock time is far ahead."""
    gaps = PatrolGaps(config())
    grids = [f"G{i}" for i in range(3, 30)]
    now = T0 + 48 * HOUR
    fired = []
    for h in range(0, 36, 6):
        for g in grids:
            gaps.observe(g, T0 + h * HOUR, f"{g}-{h}")
        fired += gaps.due(now, watermark=T0 + h * HOUR + 5 * HOUR)
    assert fired == []
    # the same reports judged by the wall clock alone raise every grid
    assert len(gaps.due(now, now)) == len(grids)


def test_late_report_closes_the_gap_just_after_it_fired() -> None:
    gaps = PatrolGaps(config())
    life = WarningLifecycle(RULES_LIFECYCLE)
    gaps.observe("G1", T0)
    warnings = life.observe_all(gaps.due(T0 + 9 * HOUR, T0 + 9 * HOUR))
    warnings += life.observe_all(gaps.observe("G1", T0 + 7 * HOUR, "late"))
    assert [w.status for w in warnings] == ["firing", "resolved"]


def test_rebuild_from_last_reports_equals_streaming() -> None:
    rng = random.Random(5)
    cfg = config()
    streamed = PatrolGaps(cfg)
    last: dict[str, tuple[datetime, str]] = {}
    t = T0
    for i in range(2000):
        t += timedelta(minutes=rng.randrange(1, 30), microseconds=rng.randrange(10**6))
        grid = f"G{rng.randrange(40)}"
        streamed.observe(grid, t, f"r{i}")
        last[grid] = (t.replace(microsecond=0), f"r{i}")
        if i % 7 == 0:
            streamed.due(t, t)
    streamed.due(t, t)
    assert rebuild(last, cfg, watermark=t).snapshot() == streamed.snapshot()
    restored = PatrolGaps(cfg)
    restored.restore(streamed.snapshot())
    later = t + 30 * HOUR
    assert [v.key for v in restored.due(later, later)] == [
        v.key for v in streamed.due(later, later)
    ]


def test_escalation_must_start_at_the_interval() -> None:
    with pytest.raises(ValueError):
        PatrolConfig(escalation=(GapLevel(factor=2.0, severity="major"),))
