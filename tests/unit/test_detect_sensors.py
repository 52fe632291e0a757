import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from streams.detect.lifecycle import WarningLifecycle
from streams.detect.sensors import (
    RULES_LIFECYCLE,
    Band,
    ReadingRow,
    SensorKindRules,
    SensorRules,
    SensorRulesConfig,
    band_target,
    default_sensor_rules,
    rebuild,
)
from streams.detect.verdict import Verdict

T0 = datetime(2026, 11, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def pm25_only(**changes: object) -> SensorRulesConfig:
    rules = default_sensor_rules().kinds["pm25"].model_copy(update=changes)
    return SensorRulesConfig(kinds={"pm25": rules})


def feed(rules: SensorRules, values: list[float], sensor: str = "S1") -> list[Verdict]:
    out: list[Verdict] = []
    for i, v in enumerate(values):
        out += rules.observe(sensor, "pm25", T0 + i * HOUR, v, f"e{i}")
    return out


def of_kind(verdicts: list[Verdict], kind: str) -> list[Verdict]:
    return [v for v in verdicts if v.kind == kind]


def test_hovering_at_a_threshold_does_not_flap() -> None:
    rng = random.Random(7)
    values = [75 + rng.uniform(-8, 8) for _ in range(300)]  # around the 75 band, inside ±15 %
    hysteresis = of_kind(feed(SensorRules(pm25_only()), values), "sensor_threshold")
    assert len(hysteresis) == 1 and hysteresis[0].severity == "info"
    naive = SensorRules(
        pm25_only(hysteresis_rel=0.0, enter_after=1, clear_after=1, max_rate_per_h=None)
    )
    flapping = of_kind(feed(naive, values), "sensor_threshold")
    assert len(flapping) > 50  # the same series without hysteresis flaps


def test_graded_levels_rise_and_fall_with_hysteresis() -> None:
    rules = SensorRules(pm25_only(enter_after=1, clear_after=1, max_rate_per_h=None))
    values = [20, 80, 120, 160, 260, 230, 200, 140, 126, 90, 70, 30]
    got = [
        (v.severity, v.params["level"], v.observed)
        for v in of_kind(feed(rules, values), "sensor_threshold")
    ]
    # 230 stays severe (clear 212.5), 140 stays heavy (clear 127.5), 126 moderate, …
    assert got == [
        ("info", "light", 80),
        ("minor", "moderate", 120),
        ("major", "heavy", 160),
        ("critical", "severe", 260),
        ("major", "heavy", 200),
        ("minor", "moderate", 126),
        ("info", "light", 90),
        (None, "normal", 30),
    ]


def test_enter_after_needs_consecutive_readings() -> None:
    rules = SensorRules(pm25_only(enter_after=3, clear_after=2, max_rate_per_h=None))
    verdicts = of_kind(feed(rules, [80, 80, 20, 80, 80, 80, 20, 80, 20, 20]), "sensor_threshold")
    assert [(v.severity, v.window_start, v.window_end) for v in verdicts] == [
        ("info", T0 + 3 * HOUR, T0 + 5 * HOUR),
        (None, T0 + 8 * HOUR, T0 + 9 * HOUR),
    ]


def test_band_target_uses_clear_levels_only_at_or_below_the_current_band() -> None:
    enters, clears = (10.0, 20.0), (8.0, 18.0)
    assert band_target(-1, 9.0, enters, clears) == -1
    assert band_target(0, 9.0, enters, clears) == 0
    assert band_target(0, 19.0, enters, clears) == 0
    assert band_target(1, 19.0, enters, clears) == 1
    assert band_target(1, 7.0, enters, clears) == -1


def test_rate_of_change_fires_and_clears() -> None:
    rules = SensorRules(pm25_only(bands=(), max_rate_per_h=100, clear_after=1))
    verdicts = of_kind(feed(rules, [50, 60, 300, 310, 305]), "sensor_rate")
    assert [(v.severity, v.observed) for v in verdicts] == [("minor", 240.0), (None, 10.0)]


def test_stuck_value_fires_after_the_duration_and_clears_on_change() -> None:
    rules = SensorRules(
        pm25_only(bands=(), stuck_after_s=6 * 3600, stuck_min_readings=4, max_rate_per_h=None)
    )
    verdicts = of_kind(feed(rules, [40, 42, 42, 42, 42, 42, 42, 42, 42, 43]), "sensor_stuck")
    assert [(v.severity, v.window_start, v.window_end) for v in verdicts] == [
        ("minor", T0 + HOUR, T0 + 7 * HOUR),
        (None, T0 + HOUR, T0 + 9 * HOUR),
    ]


def test_silent_sensor_fires_from_the_timer_without_input() -> None:
    rules = SensorRules(pm25_only())  # hourly, silent after 3 missed intervals
    rules.observe("S1", "pm25", T0, 20.0, "e0")
    assert rules.due_silent(T0 + 2 * HOUR, T0 + 2 * HOUR) == []
    fired = rules.due_silent(T0 + 3 * HOUR, T0 + 3 * HOUR)
    assert [(v.kind, v.severity, v.window_end) for v in fired] == [
        ("sensor_silent", "minor", T0 + 3 * HOUR)
    ]
    assert rules.due_silent(T0 + 9 * HOUR, T0 + 9 * HOUR) == []  # once per silence
    back = of_kind(rules.observe("S1", "pm25", T0 + 10 * HOUR, 21.0, "e1"), "sensor_silent")
    assert [(v.severity, v.window_end) for v in back] == [(None, T0 + 10 * HOUR)]
    assert rules.due_silent(T0 + 12 * HOUR, T0 + 12 * HOUR) == []
    assert len(rules.due_silent(T0 + 13 * HOUR, T0 + 13 * HOUR)) == 1


def test_a_backlog_replay_raises_no_silent_sensor() -> None:
    """The worker restarts after 10 h down: wall clock is far ahead, the partition's
    watermark follows the replayed readings, and no sensor looks silent."""
    rules = SensorRules(pm25_only())
    sensors = [f"S{i}" for i in range(20)]
    now = T0 + 30 * HOUR  # wall clock during the whole replay
    fired: list[Verdict] = []
    for h in range(24):
        at = T0 + h * HOUR
        for s in sensors:
            rules.observe(s, "pm25", at, 20.0 + h % 3, f"{s}-{h}")
        fired += rules.due_silent(now, watermark=at)  # timer ticks during the replay
    assert of_kind(fired, "sensor_silent") == []
    # caught up: the one sensor that really stopped is the only one reported
    for h in range(24, 30):
        for s in sensors[1:]:
            rules.observe(s, "pm25", T0 + h * HOUR, 20.0, f"{s}-{h}")
    silent = rules.due_silent(now, now)
    assert [v.key["sensor_id"] for v in silent] == ["S0"]


def test_a_late_reading_still_resolves_silence_after_it_fired() -> None:
    rules = SensorRules(pm25_only())
    rules.observe("S1", "pm25", T0, 20.0)
    life = WarningLifecycle(RULES_LIFECYCLE)
    fired = life.observe_all(rules.due_silent(T0 + 5 * HOUR, T0 + 5 * HOUR))
    late = T0 + 2 * HOUR  # delivered now, measured before the silence was declared
    resolved = life.observe_all(of_kind(rules.observe("S1", "pm25", late, 20.0), "sensor_silent"))
    assert [w.status for w in fired + resolved] == ["firing", "resolved"]


def test_verdicts_drive_the_lifecycle_once_per_episode() -> None:
    rules = SensorRules(pm25_only(max_rate_per_h=None))
    life = WarningLifecycle(RULES_LIFECYCLE)
    values = [20] * 5 + [160] * 10 + [100] * 3 + [20] * 5
    warnings = life.observe_all(feed(rules, values))
    # 100 is above the clear level of "moderate" (115 - 15 % = 97.75): it holds there
    assert [(w.kind, w.status, w.severity) for w in warnings] == [
        ("sensor_threshold", "firing", "major"),
        ("sensor_threshold", "firing", "minor"),
        ("sensor_threshold", "resolved", "minor"),
    ]
    assert len({w.fingerprint for w in warnings}) == 1


def test_rebuild_equals_streaming() -> None:
    rng = random.Random(3)
    config = default_sensor_rules()
    kinds = {"pm25": (0, 400), "noise": (40, 95), "water_level": (0, 0.8)}
    rows: list[ReadingRow] = []
    t = T0
    for i in range(3000):
        kind = rng.choice(sorted(kinds))
        lo, hi = kinds[kind]
        sid = f"{kind}-{rng.randrange(5)}"
        t += timedelta(seconds=rng.randrange(1, 400), microseconds=rng.randrange(10**6))
        value = round(rng.uniform(lo, hi), 1) if rng.random() < 0.7 else lo
        rows.append(ReadingRow(sid, kind, t, value, f"e{i}"))
    streamed = SensorRules(config)
    for i, row in enumerate(rows):
        streamed.observe(row.sensor_id, row.kind, row.at, row.value, row.event_id)
        if i % 50 == 0:
            streamed.due_silent(row.at, row.at)
    streamed.due_silent(t, t)
    # the store keeps whole seconds
    stored = [ReadingRow(r.sensor_id, r.kind, r.at.replace(microsecond=0), r.value, r.event_id)
              for r in rows]  # fmt: skip
    rebuilt = rebuild(stored, config, watermark=t)
    assert rebuilt.snapshot() == streamed.snapshot()
    assert json.loads(json.dumps(streamed.snapshot())) == streamed.snapshot()
    restored = SensorRules(config)
    restored.restore(streamed.snapshot())
    assert restored.snapshot() == streamed.snapshot()
    late = t + timedelta(days=1)
    assert [v.key for v in restored.due_silent(late, late)] == [
        v.key for v in streamed.due_silent(late, late)
    ]


def test_config_rejects_unordered_bands() -> None:
    with pytest.raises(ValueError, match="ascending"):
        SensorKindRules(
            kind="x",
            bands=(
                Band(level="a", enter=10, severity="minor"),
                Band(level="b", enter=5, severity="major"),
            ),
        )


def test_unknown_kind_is_ignored() -> None:
    rules = SensorRules(pm25_only())
    assert rules.observe("X", "radiation", T0, 1e6) == []
    assert rules.sensors == {}
