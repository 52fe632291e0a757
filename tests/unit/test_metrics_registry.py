"""The worker's metrics: instruments count what they are given, the state read at a scrape
maps each snapshot field to its metric, each runtime has a registry of its own."""

from __future__ import annotations

import random
from collections import Counter

import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import WorkerMetrics, pair_counts, stat_metrics, state_metrics


def samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition (parsed back from the text), by name and labels."""
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


SNAPSHOT = {
    "uptime_s": 12.5,
    "batches": 3,
    "cases_opened": 4,
    "lag": {"gp.hotline.requests[0]": 7, "gp.sensor.readings[3]": 0, "odd-key": 1},
    "sink": {
        "inserts": 9,
        "failures": 2,
        "waiting_for_store_s": 1.5,
        "rows": {"events": 100, "dead_letters": 5},
        "dropped_redelivered": {"events": 10},
    },
    "clickhouse": {"insert_s": {"events": 0.25}},
    "cases": {
        "applied": 6,
        "illegal": 1,
        "duplicate": 2,
        "held": 0,
        "owned": 8,
        "timers": 5,
        "alerts": 3,
    },
    "warnings": {"published": 2, "firing": 1, "hours_judged": 24},
    "sensor_rules": {"firing": 2, "partitions": [0, 1]},
}


def test_events_and_dead_letters_are_counted_per_label():
    m = WorkerMetrics()
    events = pd.DataFrame(
        {
            "src_topic": ["gp.hotline.requests", "gp.sensor.readings", "gp.sensor.readings"],
            "source": ["hotline", "sensor", "sensor"],
        }
    )
    m.observe_events(events)
    m.observe_events(events.iloc[:1])
    m.observe_events(events.iloc[:0])
    dead = [
        (0.0, "gp.hotline.requests", 0, 11, 0, "bad_json", "not JSON", b"{"),
        (0.0, "gp.hotline.requests", 1, 12, 0, "bad_json", "not JSON", b"["),
        (0.0, "gp.case.events", 2, 13, 0, "unknown_case", "no such case", b"x"),
    ]
    m.observe_dead(dead)
    got = samples(m)
    assert (
        got[
            ("gridpulse_events_in_total", (("source", "hotline"), ("topic", "gp.hotline.requests")))
        ]
        == 2
    )
    assert (
        got[("gridpulse_events_in_total", (("source", "sensor"), ("topic", "gp.sensor.readings")))]
        == 2
    )
    assert (
        got[
            (
                "gridpulse_dead_letters_total",
                (("reason", "bad_json"), ("topic", "gp.hotline.requests")),
            )
        ]
        == 2
    )
    assert (
        got[
            (
                "gridpulse_dead_letters_total",
                (("reason", "unknown_case"), ("topic", "gp.case.events")),
            )
        ]
        == 1
    )


def test_latency_histograms_bucket_their_observations():
    m = WorkerMetrics()
    for s in (0.003, 0.2, 7.0):
        m.batch_seconds.observe(s)
    m.store_seconds.observe(0.02)
    got = samples(m)
    assert got[("gridpulse_batch_seconds_count", ())] == 3
    assert got[("gridpulse_batch_seconds_bucket", (("le", "0.005"),))] == 1
    assert got[("gridpulse_batch_seconds_bucket", (("le", "0.25"),))] == 2
    assert got[("gridpulse_batch_seconds_bucket", (("le", "+Inf"),))] == 3
    assert got[("gridpulse_store_seconds_sum", ())] == 0.02


def test_state_at_scrape_time():
    m = WorkerMetrics()
    state = dict(SNAPSHOT)
    m.add_state(lambda: state_metrics(state, open_cases=6))
    got = samples(m)
    lag = "gridpulse_consumer_lag"
    assert got[(lag, (("partition", "0"), ("topic", "gp.hotline.requests")))] == 7
    assert got[(lag, (("partition", "3"), ("topic", "gp.sensor.readings")))] == 0
    assert not any(k[0] == lag and ("topic", "odd-key") in k[1] for k in got)
    assert got[("gridpulse_sink_retries_total", ())] == 2
    assert got[("gridpulse_sink_paused", ())] == 1
    assert got[("gridpulse_sink_paused_seconds", ())] == 1.5
    assert got[("gridpulse_sink_rows_total", (("table", "events"),))] == 100
    assert got[("gridpulse_sink_redelivered_rows_dropped_total", (("table", "events"),))] == 10
    assert got[("gridpulse_store_insert_seconds_total", (("table", "events"),))] == 0.25
    assert got[("gridpulse_case_events_total", (("outcome", "illegal"),))] == 1
    assert got[("gridpulse_cases_open", ())] == 6
    assert got[("gridpulse_cases_owned", ())] == 8
    assert got[("gridpulse_sla_timers_pending", ())] == 5
    assert got[("gridpulse_sla_timers_fired_total", ())] == 3
    assert got[("gridpulse_warnings_published_total", ())] == 2
    assert got[("gridpulse_warnings_firing", ())] == 1
    assert got[("gridpulse_cases_opened_total", ())] == 4
    assert got[("gridpulse_sensor_rules_firing", ())] == 2
    assert not any(k[0] == "gridpulse_sensor_rules_partitions" for k in got)
    # the state is read at each scrape, not copied once
    state["sink"] = {**SNAPSHOT["sink"], "waiting_for_store_s": 0, "failures": 5}
    got = samples(m)
    assert got[("gridpulse_sink_paused", ())] == 0
    assert got[("gridpulse_sink_retries_total", ())] == 5


def test_without_case_agent_or_warnings_their_metrics_are_absent():
    m = WorkerMetrics()
    m.add_state(lambda: state_metrics({**SNAPSHOT, "cases": {}, "warnings": {}}, None))
    names = {k[0] for k in samples(m)}
    assert "gridpulse_consumer_lag" in names
    stage_metrics = ("gridpulse_case_", "gridpulse_cases_o", "gridpulse_sla_", "gridpulse_warning")
    assert {n for n in names if n.startswith(stage_metrics)} == {"gridpulse_cases_opened_total"}


def test_a_stage_s_stats_become_metrics():
    stats = {
        "ready": True,
        "open_alerts": 3,
        "pending": 1,
        "ingested": {"sla": 5, "warning": 2},
        "disabled": ["r1"],
        "last_error": "",
    }
    m = WorkerMetrics()
    m.add_state(lambda: stat_metrics("alerts", stats))
    got = samples(m)
    assert got[("gridpulse_alerts_ready", ())] == 1
    assert got[("gridpulse_alerts_open_alerts", ())] == 3
    assert got[("gridpulse_alerts_ingested_total", (("key", "sla"),))] == 5
    assert not any(
        k[0].startswith(("gridpulse_alerts_disabled", "gridpulse_alerts_last")) for k in got
    )


def test_each_runtime_has_its_own_registry():
    a, b = WorkerMetrics(), WorkerMetrics()
    a.events_in.labels("t", "s").inc(3)
    assert ("gridpulse_events_in_total", (("source", "s"), ("topic", "t"))) not in samples(b)
    assert samples(a)[("gridpulse_events_in_total", (("source", "s"), ("topic", "t")))] == 3


def test_pair_counts_match_a_plain_count():
    rng = random.Random(3)
    a = [rng.choice(["t1", "t2", "t3", None]) for _ in range(500)]
    b = [rng.choice(["s1", "s2"]) for _ in range(500)]
    got = pair_counts(pd.Series(a, dtype=object), pd.Series(b, dtype=object))
    expected = Counter(zip(a, b, strict=True))
    assert {(None if x != x else x, y): n for (x, y), n in got.items()} == dict(expected)
