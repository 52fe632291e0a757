"""The real pipeline: Tansu broker -> Faust worker(s) -> ClickHouse (chdb and a server over
the native protocol), with kills, restarts and outages; counts checked exactly against an
independent computation from what was published."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from core.city import load_city
from core.settings import REPO_ROOT
from sources.simulator import SimConfig, Simulator
from tests.integration.conftest import publish_recorded
from tests.integration.harness import (
    PipelineEnv,
    WorkerProc,
    actual_counts,
    actual_late,
    ends_of,
    expect,
    read_topic,
    wait_processed,
)

pytestmark = pytest.mark.integration

SAMPLE = REPO_ROOT / "config" / "cities" / "sample.yaml"
START = datetime(2025, 6, 3, 8, 0, tzinfo=UTC)


def simulated(seed: int, minutes: float, rate: float = 1.0, **kw):
    city = load_city(SAMPLE)
    cfg = SimConfig(seed=seed, start=START, duration_s=minutes * 60, rate=rate, **kw)
    return city, list(Simulator(city, cfg))


def check_exact(city, sent, query, db="gridpulse"):
    want = expect(city, sent)
    assert want.events > 0 and sum(want.late["1m"].values()) > 0, "the run must have late events"
    for w in ("1m", "5m", "1h", "1d"):
        assert actual_counts(query, db, w) == want.counts[w], f"on-time counts differ ({w})"
        assert actual_late(query, db, w) == want.late[w], f"late counts differ ({w})"
    [[raw, distinct]] = query(
        f"SELECT count(), uniqExact(src_topic, src_partition, src_offset, "
        f"src_index) FROM {db}.events"
    )
    assert int(raw) == int(distinct) == want.events
    [[dead]] = query(f"SELECT count() FROM {db}.dead_letters")
    assert int(dead) == want.dead
    return want


def test_exact_counts_on_embedded_clickhouse(broker, tmp_path):
    city, emissions = simulated(seed=11, minutes=20, rate=2.0)
    penv = PipelineEnv(broker, f"chdb://{tmp_path}/chdb", SAMPLE, tmp_path / "p")
    worker = WorkerProc(penv).start().wait_ready()
    try:
        sent, ends = publish_recorded(penv, emissions)
        wait_processed([worker], ends)
        want = check_exact(city, sent, worker.query)
        stats = worker.stats()
        assert stats["dead_lettered"] == want.dead
        # all drained: nothing left paused or held back by a full stream buffer, no lag
        assert stats["fetch"]["paused"] == stats["fetch"]["buffer_full"] == []
        assert set(stats["lag"].values()) == {0}
        # the dead-letter topic holds each bad message's original bytes, source and reason
        dead = read_topic(broker, f"{penv.prefix}.dead-letter", want.dead)
        assert len(dead) == want.dead
        by_source = {(s.topic, s.partition, s.offset): s.emission for s in sent}
        for rec in dead:
            h = {k: v.decode() for k, v in rec.headers}
            emission = by_source[(h["src_topic"], int(h["src_partition"]), int(h["src_offset"]))]
            assert emission.bad_kind == h["reason_code"], (emission.bad_kind, h)
            assert h["reason"] and h["src_index"] == "-1"
            assert rec.value == emission.payload
    finally:
        worker.stop()


def test_exact_after_sigkill_and_restart(broker, tmp_path):
    city, emissions = simulated(seed=12, minutes=30, rate=2.0)
    penv = PipelineEnv(
        broker,
        f"chdb://{tmp_path}/chdb",
        SAMPLE,
        tmp_path / "p",
        extra={"GRIDPULSE_SINK__INGEST_BATCH_MAX": "500", "GRIDPULSE_SINK__BATCH_MAX": "500"},
    )
    worker = WorkerProc(penv).start().wait_ready()
    sent, ends = publish_recorded(penv, emissions)
    # let it store part of the stream, then kill it without warning
    deadline = time.monotonic() + 60
    while worker.stats()["batches"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.stats()["batches"] >= 3
    worker.kill()
    worker = WorkerProc(penv, "restarted").start().wait_ready()
    try:
        wait_processed([worker], ends)
        check_exact(city, sent, worker.query)
    finally:
        worker.stop()


def native_query(url: str):
    from clickhouse_driver import Client

    hostport = url.split("@")[-1].split("/")[0]
    host, port = hostport.split(":")
    client = Client(host=host, port=int(port))
    return lambda sql: [[str(v) for v in row] for row in client.execute(sql)]


def db_url(server_url: str, tmp_path) -> tuple[str, str]:
    db = "gp_" + "".join(c for c in tmp_path.name if c.isalnum())[-12:]
    return server_url.rsplit("/", 1)[0] + f"/{db}", db


def test_two_workers_split_partitions_on_native_server(broker, clickhouse_server, tmp_path):
    """Scale-out: two workers in one group, Debian's clickhouse-server over the wire."""
    city, emissions = simulated(seed=13, minutes=30, rate=2.0)
    url, db = db_url(clickhouse_server, tmp_path)
    penv = PipelineEnv(
        broker,
        url,
        SAMPLE,
        tmp_path / "p",
        extra={"GRIDPULSE_SINK__INGEST_BATCH_MAX": "400", "GRIDPULSE_SINK__BATCH_MAX": "400"},
    )
    w1 = WorkerProc(penv, "a").start().wait_ready()
    w2 = WorkerProc(penv, "b").start().wait_ready()
    try:
        sent, ends = publish_recorded(penv, emissions)
        wait_processed([w1, w2], ends)
        owned = [set(w.stats()["processed"]) for w in (w1, w2)]
        assert owned[0] and owned[1], f"each worker must own partitions: {owned}"
        check_exact(city, sent, native_query(url), db)
    finally:
        w1.stop()
        w2.stop()


def test_clickhouse_outage_pauses_and_resumes_exactly(broker, tmp_path):
    """The server is killed mid-run and comes back: the worker waits, then catches up."""
    from tests.services import running_clickhouse_server

    city, emissions = simulated(seed=14, minutes=30, rate=2.0)
    half = len(emissions) // 2
    with running_clickhouse_server(tmp_path / "ch") as (server_url, server):
        url, db = db_url(server_url, tmp_path)
        penv = PipelineEnv(
            broker,
            url,
            SAMPLE,
            tmp_path / "p",
            extra={
                "GRIDPULSE_SINK__INGEST_BATCH_MAX": "400",
                "GRIDPULSE_SINK__BATCH_MAX": "400",
                "GRIDPULSE_SINK__RETRY_MAX_SECONDS": "1",
            },
        )
        worker = WorkerProc(penv).start().wait_ready()
        try:
            sent1, _ = publish_recorded(penv, emissions[:half])
            server.kill_hard()
            sent2, _ = publish_recorded(penv, emissions[half:])
            deadline = time.monotonic() + 30
            while worker.stats()["sink"]["waiting_for_store_s"] == 0:
                assert time.monotonic() < deadline, "the sink never noticed the outage"
                time.sleep(0.2)
            time.sleep(3)
            assert worker.alive()
            server.start()
            sent = sent1 + sent2
            ends = ends_of(sent)
            wait_processed([worker], ends)
            assert worker.stats()["sink"]["failures"] > 0
            check_exact(city, sent, native_query(url), db)
        finally:
            worker.stop()


def test_durable_broker_restart_mid_run(tmp_path):
    """The S3-backed broker is restarted mid-run; nothing published before is lost."""
    from tests.services import running_broker

    city, emissions = simulated(seed=15, minutes=20, rate=2.0)
    half = len(emissions) // 2
    with running_broker(tmp_path / "durable", durable=True) as (bootstrap, stack):
        penv = PipelineEnv(bootstrap, f"chdb://{tmp_path}/chdb", SAMPLE, tmp_path / "p")
        worker = WorkerProc(penv).start().wait_ready()
        try:
            sent1, _ = publish_recorded(penv, emissions[:half])
            stack.broker.stop()
            time.sleep(2)
            stack.broker.start()
            sent2, _ = publish_recorded(penv, emissions[half:])
            sent = sent1 + sent2
            ends = ends_of(sent)
            wait_processed([worker], ends, timeout=240)
            check_exact(city, sent, worker.query)
        finally:
            worker.stop()
