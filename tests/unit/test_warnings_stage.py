"""The worker's warning stage, without Faust: keys, watermark, closed hours, and the count
judge (rebuild == streaming; a burst after warm-up fires once and resolves once)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

from core.city import UNLOCATED
from sinks.base.store import WindowCount
from streams.detect.config import DetectionConfig
from streams.detect.lifecycle import WarningLifecycle
from streams.detect.sensors import RULES_LIFECYCLE
from streams.warnings import (
    HOUR,
    CountJudge,
    PatrolJudge,
    closed_hours,
    hour_counts,
    keys_of,
    watermark_of,
)

T0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())  # a Monday, 00:00 UTC


def row(bucket: int, grid: str, n: int, category: str = "road.pothole") -> WindowCount:
    community = "C1" if grid in ("G1", "G2") else "C2"
    return WindowCount(bucket, "D1", "S1", community, grid, category, "inspector", n)


def test_a_grid_count_adds_to_its_grid_community_and_street() -> None:
    keys = keys_of(row(T0, "G1", 3))
    labels = [dict(k) for k in keys]
    assert [set(k) for k in labels] == [
        {"district", "street", "community", "grid_code", "category"},
        {"district", "street", "community", "category"},
        {"district", "street", "category"},
    ]
    counts = hour_counts([row(T0, "G1", 3), row(T0, "G2", 2), row(T0, "G3", 1)])
    street = (("category", "road.pothole"), ("district", "D1"), ("street", "S1"))
    assert counts[street] == 6
    assert keys_of(row(T0, UNLOCATED, 4)) == []


def test_the_watermark_waits_for_every_partition_and_takes_the_slowest() -> None:
    expected = {("a", 0), ("a", 1), ("b", 0)}
    assert watermark_of([("a", 0, 100, True), ("a", 1, 50, False)], expected) is None
    rows = [("a", 0, 100, True), ("a", 1, 50, False), ("b", 0, 70, True)]
    assert watermark_of(rows, expected) == 50


def test_an_hour_closes_when_the_watermark_passes_its_end_plus_grace() -> None:
    grace = 120
    assert closed_hours(None, T0 + HOUR + grace - 1, grace) == [T0 - HOUR]
    assert closed_hours(None, T0 + HOUR + grace, grace) == [T0]
    assert closed_hours(T0 - 2 * HOUR, T0 + HOUR + grace, grace) == [T0 - HOUR, T0]
    assert closed_hours(T0, T0 + HOUR + grace, grace) == []


def _history(hours: int, seed: int = 3, g3_from: int = 30) -> list[WindowCount]:
    """Ordinary counts of three grids; G3's first count comes only at hour ``g3_from``."""
    rng = random.Random(seed)
    rows = []
    for h in range(hours):
        for grid in ("G1", "G2", "G3"):
            n = rng.choice([0, 1, 1, 2, 2, 3])
            if grid == "G3" and h < g3_from:
                n = 0
            if n:
                rows.append(row(T0 + h * HOUR, grid, n))
    return rows


def test_rebuilding_from_stored_counts_equals_judging_every_hour() -> None:
    history = _history(24 * 9)
    streamed = CountJudge(DetectionConfig(timezone="UTC"))
    by_hour: dict[int, list[WindowCount]] = {}
    for r in history:
        by_hour.setdefault(r.bucket_s, []).append(r)
    for h in range(24 * 9):
        streamed.judge(T0 + h * HOUR, hour_counts(by_hour.get(T0 + h * HOUR, [])))
    rebuilt = CountJudge(DetectionConfig(timezone="UTC"))
    rebuilt.rebuild(history, until_s=T0 + 24 * 9 * HOUR)
    assert set(rebuilt.states) == set(streamed.states)
    for key, state in streamed.states.items():
        assert rebuilt.states[key].to_bytes() == state.to_bytes(), key


def test_a_burst_after_warm_up_fires_once_and_resolves_once() -> None:
    judge = CountJudge(DetectionConfig(timezone="UTC"))
    hours = 24 * 9
    judge.rebuild(_history(hours), until_s=T0 + hours * HOUR)
    burst = T0 + hours * HOUR
    fired = judge.judge(burst, hour_counts([row(burst, "G1", 25)]))
    grid_spikes = [w for w in fired if w.kind == "count_spike" and w.where.grid_code == "G1"]
    assert [(w.status, w.revision) for w in grid_spikes] == [("firing", 0)]
    assert grid_spikes[0].observed == 25 and grid_spikes[0].expected < 5
    later: list = []
    rows = _history(6, seed=9, g3_from=0)
    for h in range(1, 7):
        bucket = burst + h * HOUR
        hour = [r._replace(bucket_s=bucket) for r in rows if r.bucket_s == T0 + (h - 1) * HOUR]
        later += judge.judge(bucket, hour_counts(hour))
    mine = [w for w in later if w.fingerprint == grid_spikes[0].fingerprint]
    assert [(w.status, w.revision) for w in mine] == [("resolved", 1)]
    assert Counter(w.fingerprint for w in fired + later).most_common(1)[0][1] <= 2


def test_a_grid_nobody_patrols_warns_once_and_its_next_report_resolves_it() -> None:
    labels = {
        g: {"district": "D1", "street": "S1", "community": "C1", "grid_code": g}
        for g in ("G1", "G2")
    }
    history = [row(T0 + h * HOUR, "G1", 1) for h in range(0, 72, 6)]
    end = T0 + 72 * HOUR
    patrol = PatrolJudge(labels)
    patrol.rebuild(history, end)
    first = patrol.judge(end, [])
    assert [(w.kind, w.where.grid_code, w.status) for w in first] == [
        ("patrol_gap", "G2", "firing")
    ]
    assert first[0].severity == "major"  # 72 h without a report: twice the 24 h interval
    restarted = PatrolJudge(labels, lifecycle=WarningLifecycle.rebuild(first, RULES_LIFECYCLE))
    restarted.rebuild(history, end + HOUR)
    assert restarted.judge(end + HOUR, []) == []  # the open gap is not published again
    closed = restarted.judge(end + 2 * HOUR, [row(end + 2 * HOUR, "G2", 1)])
    assert [(w.where.grid_code, w.status, w.revision) for w in closed] == [("G2", "resolved", 1)]


def test_the_same_category_rising_in_adjacent_grids_is_one_hotspot() -> None:
    from shapely.geometry import box

    from streams.detect.spatial import adjacency
    from streams.warnings import HotspotJudge

    grids = ("G1", "G2", "G3")
    neighbours = adjacency({g: box(i, 0, i + 1, 1) for i, g in enumerate(grids)}, min_shared=1e-6)
    labels = {
        g: {"district": "D1", "street": "S1", "community": "C1", "grid_code": g} for g in grids
    }
    hours = 24 * 9
    judge = CountJudge(DetectionConfig(timezone="UTC"))
    judge.rebuild(_history(hours, g3_from=0), until_s=T0 + hours * HOUR)
    burst = T0 + hours * HOUR
    judge.judge(burst, hour_counts([row(burst, g, 9) for g in grids]))
    hot = HotspotJudge(neighbours, labels)
    fired = hot.judge(burst, judge.grid_counts, judge.grid_expected)
    assert [(w.kind, w.status, sorted(w.evidence)) for w in fired] == [
        ("hotspot", "firing", ["grid:G1", "grid:G2", "grid:G3"])
    ]
    restarted = HotspotJudge(
        neighbours, labels, lifecycle=WarningLifecycle.rebuild(fired, RULES_LIFECYCLE)
    )
    restarted.restore(fired)
    quiet = burst + HOUR
    judge.judge(quiet, hour_counts([]))
    ended = restarted.judge(quiet, judge.grid_counts, judge.grid_expected)
    assert [(w.fingerprint, w.status, w.revision) for w in ended] == [
        (fired[0].fingerprint, "resolved", 1)
    ]


def test_a_units_backlog_rising_abnormally_warns_and_rebuild_equals_streaming() -> None:
    from streams.warnings import BacklogJudge

    hours = 24 * 4
    # about five open cases at any time: each opens at h and closes 5 hours later
    lifetimes = [("roads", T0 + h * HOUR + 60, T0 + (h + 5) * HOUR + 60) for h in range(hours)]
    streamed = BacklogJudge()
    for h in range(hours):
        at = T0 + (h + 1) * HOUR
        open_now: Counter[str] = Counter(u for u, o, e in lifetimes if o <= at < e)
        assert streamed.judge(T0 + h * HOUR, open_now) == []
    rebuilt = BacklogJudge()
    rebuilt.rebuild(lifetimes, T0, T0 + hours * HOUR)
    assert rebuilt.spikes.snapshot() == streamed.spikes.snapshot()
    fired = rebuilt.judge(T0 + hours * HOUR, {"roads": 40})
    assert [(w.kind, w.unit, w.status) for w in fired] == [("backlog_spike", "roads", "firing")]


def test_a_local_day_closes_at_the_next_local_midnight_plus_grace() -> None:
    from zoneinfo import ZoneInfo

    from streams.warnings import closed_days, next_day

    tz = "America/New_York"  # 2026-03-08 has 23 hours
    zone = ZoneInfo(tz)
    mar7 = int(datetime(2026, 3, 7, tzinfo=zone).timestamp())
    mar8 = int(datetime(2026, 3, 8, tzinfo=zone).timestamp())
    mar9 = int(datetime(2026, 3, 9, tzinfo=zone).timestamp())
    assert next_day(mar7, tz) == mar8 and mar9 - mar8 == 23 * HOUR
    grace = 120
    assert closed_days(mar7, mar9 + grace - 1, grace, tz) == []
    assert closed_days(mar7, mar9 + grace, grace, tz) == [mar8]
    assert closed_days(None, mar9 + grace, grace, tz) == [mar8]
    assert closed_days(mar7 - 86_400, mar9 + grace, grace, tz) == [mar7, mar8]
