"""An operable worker, end to end: ``/metrics`` scraped after a simulated run equals what the
store holds and what was published; ``/health``, ``/ready``; JSON log lines for every dead
letter; the ``/query/`` view refuses cross-site and non-read requests; ``gridpulse query``
passes a FORMAT clause through the worker."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.city import load_city
from infra.processes import Child
from sources.simulator import SimConfig, Simulator
from tests.integration.conftest import publish_recorded
from tests.integration.harness import ROOT, PipelineEnv, WorkerProc, wait_processed
from tests.integration.test_pipeline import SAMPLE, START

pytestmark = pytest.mark.integration

INGEST = ("inspector.reports", "sensor.readings", "hotline.requests")


def scrape(worker: WorkerProc) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of ``/metrics``: name -> labels -> value."""
    r = worker.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def by(samples: dict[tuple[tuple[str, str], ...], float], *names: str) -> Counter:
    return Counter(
        {tuple(dict(labels)[n] for n in names): int(v) for labels, v in samples.items() if v}
    )


def info_worker(penv: PipelineEnv) -> WorkerProc:
    """A worker logging at INFO (dead letters are INFO lines)."""
    worker = WorkerProc(penv)
    worker.child = Child(
        [sys.executable, "-m", "gridpulse.cli", "worker", "--loglevel", "INFO"],
        penv.env(worker.port),
        worker.log,
        worker.port,
        cwd=ROOT,
        name="worker",
        http_timeout=30,
    )
    worker.http = worker.child.http
    return worker


def test_metrics_equal_the_store_and_logs_are_json(broker, tmp_path):
    city = load_city(SAMPLE)
    emissions = list(
        Simulator(
            city,
            SimConfig(seed=5, start=START, duration_s=900, bad_fraction=0.05, envelopes=True),
        )
    )
    penv = PipelineEnv(
        broker,
        f"chdb://{tmp_path}/chdb",
        SAMPLE,
        tmp_path / "p",
        extra={"GRIDPULSE_LOG_FORMAT": "json"},
    )
    worker = info_worker(penv).start()
    try:
        worker.child.wait_ready("/ready", timeout=90, poll_s=0.3)
        assert worker.http.get("/health").json() == {"status": "alive"}
        ready = worker.http.get("/ready").json()
        assert ready["ready"] and ready["store"] and ready["partitions"] > 0

        sent, ends = publish_recorded(penv, emissions)
        wait_processed([worker], ends)
        m = scrape(worker)

        # messages in: exactly what was published, per ingest topic; the case topic also
        # carries the worker's own accepts
        published = Counter(s.topic for s in sent)
        messages_in = by(m["gridpulse_messages_in_total"], "topic")
        ingest = {penv.topic(s) for s in ("inspector", "sensor", "hotline")}
        assert {k: n for k, n in messages_in.items() if k[0] in ingest} == {
            (t,): n for t, n in published.items() if t in ingest
        }
        # events in: exactly the events table, per topic and source
        stored = worker.query(
            "SELECT src_topic, source, count() FROM gridpulse.events GROUP BY src_topic, source"
        )
        assert by(m["gridpulse_events_in_total"], "topic", "source") == Counter(
            {(t, s): int(n) for t, s, n in stored}
        )
        # dead letters: exactly the dead_letters table, per source topic and reason
        dead_rows = worker.query(
            "SELECT src_topic, reason_code, count() FROM gridpulse.dead_letters "
            "GROUP BY src_topic, reason_code"
        )
        dead = by(m["gridpulse_dead_letters_total"], "topic", "reason")
        assert dead == Counter({(t, r): int(n) for t, r, n in dead_rows})
        assert sum(dead.values()) > 0
        # lag: every assigned ingest partition is listed, none behind
        lag = by(m["gridpulse_consumer_lag"], "topic", "partition")
        assert not {k: n for k, n in lag.items() if k[0] in ingest}
        listed = {dict(k)["topic"] for k in m["gridpulse_consumer_lag"]}
        assert ingest <= listed
        # one batch latency per stored checkpoint; the store answered at once
        batches = m["gridpulse_batches_total"][()]
        assert batches > 0
        assert m["gridpulse_batch_seconds_count"][()] == batches
        assert m["gridpulse_store_seconds_count"][()] == batches
        assert m["gridpulse_sink_retries_total"][()] == 0
        assert m["gridpulse_sink_paused"][()] == 0
        rows = by(m["gridpulse_sink_rows_total"], "table")
        assert rows[("events",)] == sum(int(n) for _, _, n in stored)

        # every dead letter has its JSON log line with its position and reason
        lines = [
            json.loads(line)
            for line in worker.log.read_text().splitlines()
            if line.startswith("{") and '"dead letter' in line
        ]
        positions = {
            (t, int(p), int(o), r)
            for t, p, o, r in worker.query(
                "SELECT src_topic, src_partition, src_offset, reason_code "
                "FROM gridpulse.dead_letters"
            )
        }
        logged = {(x["topic"], x["partition"], x["offset"], x["reason_code"]) for x in lines}
        assert len(lines) == sum(dead.values())
        assert logged == positions
        assert all(x["level"] == "INFO" and x["reason"] for x in lines)

        # gridpulse query through this worker: a FORMAT clause comes back as asked
        env = penv.env(worker.port)
        q = subprocess.run(
            [
                sys.executable,
                "-m",
                "gridpulse.cli",
                "query",
                "SELECT count() AS n FROM gridpulse.events FORMAT JSONEachRow",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert q.returncode == 0, q.stderr
        assert json.loads(q.stdout) == {"n": sum(int(n) for _, _, n in stored)}
        check_query_view(worker, tmp_path)
    finally:
        worker.stop()


def check_query_view(worker: WorkerProc, tmp_path) -> None:
    """The ``/query/`` view's refusals over HTTP (the engine-level ones are unit-tested)."""
    http = worker.http
    ok = http.post("/query/", json={"sql": "SELECT 40 + 2"})
    assert (ok.status_code, ok.text) == (200, "42\n")
    assert "access-control-allow-origin" not in {k.lower() for k in ok.headers}
    cross = http.post(
        "/query/", json={"sql": "SELECT 1"}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403 and "cross-site" in cross.text
    plain = http.post("/query/", content=b"SELECT 1", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 403 and "application/json" in plain.text
    assert http.get("/query/", params={"sql": "SELECT 1"}).status_code == 405
    preflight = http.options(
        "/query/",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert "access-control-allow-origin" not in {k.lower() for k in preflight.headers}
    rebound = http.post("/query/", json={"sql": "SELECT 1"}, headers={"Host": "evil.example"})
    assert rebound.status_code == 403
    target = tmp_path / "outfile"
    for sql in (
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        f"SELECT 1 INTO OUTFILE '{target}'",
        "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
        "SELECT 1 SETTINGS readonly=0",
        "DROP DATABASE gridpulse",
    ):
        r = http.post("/query/", json={"sql": sql})
        assert r.status_code == 403 and r.text.startswith("refused:"), (sql, r.text)
    assert not target.exists()
    assert http.post("/query/", json={"sql": "SELECT count() FROM gridpulse.events"}).is_success
