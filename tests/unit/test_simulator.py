"""The simulator: deterministic, ordered by record time, faithful to its config and truth."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from core.city import UNLOCATED, City
from core.events import Rejection, SensorEnvelope, decode, encode
from sources.citygen import generate_city
from sources.publish import pace_wait, timestamp_ms
from sources.simulator import (
    DECODE_KINDS,
    WORKER_KINDS,
    SimConfig,
    SimEmission,
    Simulator,
    adjacency,
)
from streams.normalize import Rules, Source, normalize_message

GRACE_S = 120  # the worker's default grace (WindowSettings.grace_seconds)
RULES = Rules(max_future_skew_s=300, max_age_s=3650 * 86_400, caller_salt=b"test")
MORNING = "2025-06-02T08:00:00+08:00"  # a Monday


@pytest.fixture(scope="module")
def city() -> City:
    return City.model_validate(generate_city(7))


def run(city: City, **overrides: object) -> tuple[Simulator, list[SimEmission]]:
    sim = Simulator(city, SimConfig(**overrides))  # type: ignore[arg-type]
    return sim, list(sim)


@pytest.fixture(scope="module")
def standard(city: City) -> tuple[Simulator, list[SimEmission]]:
    """Half an hour of everything, with plenty of bad messages and incidents."""
    return run(
        city,
        start=MORNING,
        duration_s=1200,
        bad_fraction=0.03,
        bursts=3,
        spikes=2,
        silences=2,
        burst_minutes=(5, 10),
        spike_minutes=(3, 6),
        silence_minutes=(5, 10),
    )


def fingerprint(ems: list[SimEmission]) -> list[tuple[object, ...]]:
    return [(e.record_ts, e.stream, e.key, e.payload, e.bad_kind) for e in ems]


def src_of(e: SimEmission) -> Source:
    return Source(topic=e.stream, partition=0, offset=0, record_s=e.record_ts.timestamp())


def test_all_streams_present_in_record_time_order(standard: tuple) -> None:
    _, ems = standard
    assert {e.stream for e in ems} == {"inspector", "hotline", "sensor", "case"}
    stamps = [timestamp_ms(e.record_ts) for e in ems]
    assert stamps == sorted(stamps)


def test_same_seed_same_bytes_other_seed_other_bytes(city: City) -> None:
    cfg = dict(start=MORNING, duration_s=600, bad_fraction=0.05, materialize=False)
    a, b = run(city, **cfg)[1], run(city, **cfg)[1]
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(run(city, seed=8, **cfg)[1]) != fingerprint(a)


def test_good_payloads_decode_and_normalize_to_their_truth(standard: tuple, city: City) -> None:
    _, ems = standard
    unlocated = 0
    for e in (e for e in ems if e.bad_kind is None):
        msg = decode(e.stream, e.payload)
        assert msg == e.message
        assert encode(msg) == e.payload  # the fast sensor encoder writes what pydantic writes
        out = normalize_message(city, e.stream, e.payload, src_of(e), RULES)
        assert not out.dead, (out.dead, e.payload[:200])
        if e.stream in ("inspector", "hotline"):
            assert out.events[0][8] == e.truth_grid  # grid_code column
            unlocated += e.truth_grid == UNLOCATED
        if isinstance(msg, SensorEnvelope):
            assert len(msg.readings) == e.readings == len(out.events)
    assert unlocated > 0  # some events lie outside every grid and must land in UNLOCATED


def test_bad_messages_are_rejected_with_their_label(standard: tuple, city: City) -> None:
    _, ems = standard
    bad = [e for e in ems if e.bad_kind is not None]
    assert {e.bad_kind for e in bad} == DECODE_KINDS | WORKER_KINDS
    for e in bad:
        assert e.message is None
        if e.bad_kind in DECODE_KINDS:
            with pytest.raises(Rejection) as exc:
                decode(e.stream, e.payload)
            assert exc.value.code == e.bad_kind
        else:
            decode(e.stream, e.payload)  # only the worker can tell
        out = normalize_message(city, e.stream, e.payload, src_of(e), RULES)
        assert [d[5] for d in out.dead] == [e.bad_kind] and not out.events


def test_late_and_bad_fractions_match_config(city: City) -> None:
    _, ems = run(
        city,
        start=MORNING,
        duration_s=3600,
        sensors=False,
        cases=False,
        incidents=False,
        late_fraction=0.1,
        bad_fraction=0.05,
    )
    bad = sum(e.bad_kind is not None for e in ems) / len(ems)
    assert len(ems) > 4000 and bad == pytest.approx(0.05, abs=0.012)
    events = [e for e in ems if e.bad_kind is None]
    delays = [(e.record_ts - e.message.occurred_at).total_seconds() for e in events]  # type: ignore[union-attr]
    assert min(delays) >= 0
    assert sum(d > GRACE_S for d in delays) / len(delays) == pytest.approx(0.1, abs=0.02)


def test_night_is_quieter_than_day(city: City) -> None:
    _, ems = run(
        city,
        start="2025-06-02T00:00:00+08:00",
        duration_s=86_400,
        rate=0.07,
        sensors=False,
        cases=False,
        incidents=False,
        bad_fraction=0,
    )
    hours = Counter(e.message.occurred_at.hour for e in ems)  # type: ignore[union-attr]
    night = sum(hours[h] for h in range(0, 5)) / 5
    day = sum(hours[h] for h in range(9, 17)) / 8
    assert day > 0 and night < 0.25 * day


def test_burst_truth_counts_match_tagged_events(standard: tuple, city: City) -> None:
    sim, ems = standard
    tagged: Counter[str] = Counter()
    for e in ems:
        for inc_id, n in e.incidents:
            tagged[inc_id] += n
    truth = {i.id: i for i in sim.truth()}
    assert len(truth) == 7 and set(tagged) | {i for i in truth if "silence" in i} == set(truth)
    adj = adjacency(city)
    for inc in (i for i in truth.values() if i.kind == "complaint_burst"):
        assert inc.events == tagged[inc.id] == sum(inc.grid_counts.values()) > 0
        assert set(inc.grids[1:]) == set(adj[inc.grids[0]])
        grids = Counter(e.truth_grid for e in ems if (inc.id, 1) in e.incidents)
        assert grids == Counter(inc.grid_counts)
        for e in (e for e in ems if (inc.id, 1) in e.incidents):
            assert e.message.category == inc.subcategory  # type: ignore[union-attr]
            assert inc.start <= e.message.occurred_at <= inc.end  # type: ignore[union-attr]


def test_sensor_spike_and_silence_truth(standard: tuple, city: City) -> None:
    sim, ems = standard
    readings = [
        r
        for e in ems
        if e.stream == "sensor" and e.bad_kind is None
        for r in e.message.readings  # type: ignore[union-attr]
    ]
    for inc in sim.truth():
        if inc.kind == "complaint_burst":
            continue
        (sensor,) = inc.sensors
        inside = [
            r for r in readings if r.sensor_id == sensor and inc.start <= r.occurred_at < inc.end
        ]
        if inc.kind == "sensor_spike":
            kind = city.sensor_kind_index[city.sensor_index[sensor].kind]
            before = [
                r.value for r in readings if r.sensor_id == sensor and r.occurred_at < inc.start
            ]
            assert len(inside) == inc.events > 0
            assert min(r.value for r in inside) > max(before, default=kind.min)
        else:
            assert not inside and inc.suppressed > 0


def test_sensors_report_each_period_minus_gaps(standard: tuple, city: City) -> None:
    _, ems = standard
    sensor = [e for e in ems if e.stream == "sensor" and e.bad_kind is None]
    total = sum(e.readings for e in sensor)
    expected = len(city.sensors) * 1200 / 60  # defaults: one reading per minute
    assert total == pytest.approx(expected * 0.99, rel=0.02)
    assert all(e.readings <= SimConfig().envelope_size for e in sensor)
    for e in sensor:
        assert e.key == e.message.gateway_id.encode()  # type: ignore[union-attr]
        sent = e.message.sent_at  # type: ignore[union-attr]
        assert all(r.occurred_at <= sent for r in e.message.readings)  # type: ignore[union-attr]


def test_single_readings_mode(city: City) -> None:
    _, ems = run(
        city,
        start=MORNING,
        duration_s=120,
        envelopes=False,
        incidents=False,
        bad_fraction=0,
        cases=False,
    )
    sensor = [e for e in ems if e.stream == "sensor"]
    assert len(sensor) > 2000 and all(e.readings == 1 for e in sensor)
    assert all(e.key == e.message.sensor_id.encode() for e in sensor)  # type: ignore[union-attr]


def test_benchmark_mode_skips_models_but_keeps_bytes(city: City) -> None:
    cfg = dict(start=MORNING, duration_s=120, rate=5, incidents=False, bad_fraction=0)
    lean = [e for e in run(city, materialize=False, **cfg)[1] if e.stream == "sensor"]
    full = [e for e in run(city, **cfg)[1] if e.stream == "sensor"]
    assert [e.payload for e in lean] == [e.payload for e in full]
    assert all(e.message is None and e.bad_kind is None for e in lean)
    assert sum(e.readings for e in lean) > 10_000


def test_config_rejects_inconsistent_lateness() -> None:
    with pytest.raises(ValidationError):
        SimConfig(late_delay_s=(60, 120))


def test_pace_wait() -> None:
    assert pace_wait(10.0, 0.0, 0, None, None) == 0.0
    assert pace_wait(10.0, 4.0, 0, 2.0, None) == pytest.approx(1.0)  # 10 s at 2x -> 5 s
    assert pace_wait(10.0, 6.0, 0, 2.0, None) == 0.0  # behind schedule: no wait
    assert pace_wait(0.0, 0.5, 100, None, 100.0) == pytest.approx(0.5)  # 100 msgs at 100/s
    assert pace_wait(1.0, 0.0, 100, 10.0, 100.0) == pytest.approx(1.0)  # the stricter wins


def test_timestamp_ms_is_exact() -> None:
    ts = datetime.fromisoformat("2025-06-02T08:00:00.123+08:00")
    assert timestamp_ms(ts) == 1_748_822_400_123
    assert timestamp_ms(ts + timedelta(microseconds=999)) == 1_748_822_400_123


def test_incidents_recur_every_window(city: City) -> None:
    sim, _ = run(
        city,
        start=MORNING,
        duration_s=1200,
        incident_every_s=600,
        sensors=False,
        cases=False,
        bad_fraction=0,
        burst_minutes=(2, 5),
    )
    kinds = Counter(i.kind for i in sim.truth())
    assert kinds == {"complaint_burst": 4}  # sensors off: no sensor incidents
    cut = datetime.fromisoformat("2025-06-02T08:10:00+08:00")
    assert sorted(i.start < cut for i in sim.truth()) == [False, False, True, True]


def test_a_simulator_runs_once(city: City) -> None:
    sim = Simulator(city, SimConfig(duration_s=1, sensors=False))
    list(sim)
    with pytest.raises(RuntimeError):
        iter(sim)


def test_a_seed_pins_the_output(city: City) -> None:
    """Seed 7 gives these counts, ids and truth (on numpy's current Generator streams)."""
    sim, ems = run(
        city,
        start=MORNING,
        duration_s=600,
        bad_fraction=0.05,
        incident_every_s=300,
        burst_minutes=(1, 3),
        spike_minutes=(1, 2),
        silence_minutes=(1, 2),
    )
    streams = Counter(e.stream for e in ems)
    assert streams == {"inspector": 530, "hotline": 654, "sensor": 1064, "case": 12}
    assert Counter(e.bad_kind for e in ems if e.bad_kind) == {
        "bad_json": 38,
        "schema": 29,
        "impossible_time": 20,
        "wrong_topic": 15,
        "unknown_grid": 9,
        "impossible_value": 7,
        "empty": 6,
        "unknown_category": 6,
        "unknown_sensor": 3,
    }
    assert sum(e.readings for e in ems) == 14842
    good = [e.message for e in ems if e.bad_kind is None and e.stream != "sensor"]
    assert [m.event_id for m in good[:6]] == [  # type: ignore[union-attr]
        "hot-7-000000004",
        "hot-7-000000003",
        "ins-7-000000001",
        "ins-7-000000005",
        "ins-7-000000004",
        "ins-7-000000007",
    ]
    assert [(i.id, i.events, i.suppressed) for i in sim.truth()][:6] == [
        ("burst-7-1", 20, 0),
        ("burst-7-2", 29, 0),
        ("spike-7-3", 3, 0),
        ("spike-7-4", 2, 0),
        ("silence-7-5", 0, 3),
        ("silence-7-6", 0, 3),
    ]
