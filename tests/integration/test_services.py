"""The local stack against real processes: Tansu (memory and S3), SeaweedFS, clickhouse-server."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from core.settings import Settings
from infra.broker import TansuBroker
from infra.clickhouse_server import ClickHouseServer
from infra.ports import free_ports
from infra.service import ServiceError
from infra.stack import LocalStack
from infra.topics import TopicError, describe_partitions, ensure_topics
from tests.services import running_broker, running_clickhouse_server

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for i, v in enumerate(values):
            producer.send(topic, value=v, key=str(i).encode())
        producer.flush(timeout=20)
    finally:
        producer.close()


def _consume_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list[bytes]:
    """Read every partition from the start with manual assignment (no group join)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        out: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(out) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                out.extend(r.value for r in records)
        # One more poll: anything beyond `expected` would be a duplicate.
        for records in consumer.poll(timeout_ms=300).values():
            out.extend(r.value for r in records)
        return out
    finally:
        consumer.close()


def test_memory_broker_topics_roundtrip_and_idempotent_up(tmp_path):
    with running_broker(tmp_path) as (bootstrap, stack):
        t = stack.settings.topics
        # Topics from the settings exist with the configured partition count.
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            assert describe_partitions(admin, t.all) == {n: t.partitions for n in t.all}
        finally:
            admin.close()

        values = [f"msg-{i}".encode() for i in range(1000)]
        _produce(bootstrap, t.sensor, values)
        got = _consume_all(bootstrap, t.sensor, t.partitions, len(values))
        assert sorted(got) == sorted(values)

        # Second up() adopts the running broker: same pid, topics left alone.
        pid = stack.broker.pid()
        again = stack.up()
        assert again["tansu"] == 0.0
        assert stack.broker.pid() == pid
        assert [r.state for r in stack.status()] == ["stopped", "running", "stopped"]
        assert "tansu" in LocalStack.format_status(stack.status())

        # A topic with another partition count is reported, not silently accepted.
        ensure_topics(bootstrap, ["odd"], partitions=2, replication=1)
        with pytest.raises(TopicError, match="GRIDPULSE_TOPICS__PARTITIONS"):
            ensure_topics(bootstrap, ["odd"], partitions=3, replication=1)

        # Asking for durable over the running in-memory broker is refused clearly.
        durable = LocalStack(stack.settings, durable=True, with_clickhouse_server=False)
        with pytest.raises(ServiceError, match="in-memory broker is already running"):
            durable.up()
    assert not stack.broker.is_running()


def test_port_taken_gives_clear_error(tmp_path):
    (port,) = free_ports(1)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        broker = TansuBroker(port, tmp_path)
        with pytest.raises(ServiceError) as err:
            broker.start()
    msg = str(err.value)
    assert str(port) in msg and "GRIDPULSE_LOCAL__BROKER_PORT" in msg
    assert not broker.is_running()


def test_durable_broker_survives_full_restart(tmp_path):
    with running_broker(tmp_path, durable=True) as (bootstrap, stack):
        topic = stack.settings.topics.hotline
        parts = stack.settings.topics.partitions
        values = [f"durable-{i}".encode() for i in range(500)]
        _produce(bootstrap, topic, values)

        stack.down()
        assert not stack.broker.is_running() and not stack.s3.is_running()
        stack.up()
        assert stack.read_state()["durable"] is True

        got = _consume_all(bootstrap, topic, parts, len(values))
        assert sorted(got) == sorted(values)


def test_clickhouse_server_insert_count_and_crash_recovery(tmp_path):
    with running_clickhouse_server(tmp_path) as (url, server):
        assert url.startswith("clickhouse://default:@127.0.0.1:")
        client = server.client()
        assert client.execute("SELECT version()")[0][0].startswith("18.")
        client.execute("CREATE TABLE t (a UInt32, b Float64) ENGINE = MergeTree ORDER BY a")
        rows = [(i, i * 0.5) for i in range(10_000)]
        client.execute("INSERT INTO t (a, b) VALUES", rows)
        assert client.execute("SELECT count(), sum(a) FROM t") == [(10_000, sum(range(10_000)))]
        client.disconnect()

        server.kill_hard()
        assert not server.is_running()
        server.start()
        client = server.client()
        assert client.execute("SELECT count() FROM t") == [(10_000,)]
        client.disconnect()

        # start() on a running server is a no-op.
        pid = server.pid()
        assert server.start() == 0.0 and server.pid() == pid


def test_clickhouse_server_port_taken(tmp_path):
    tcp, http = free_ports(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", http))
        squatter.listen()
        with pytest.raises(ServiceError, match="GRIDPULSE_LOCAL__CLICKHOUSE_HTTP_PORT"):
            ClickHouseServer(tmp_path, tcp_port=tcp, http_port=http).start()


def test_down_without_flags_stops_everything(tmp_path):
    with running_broker(tmp_path) as (_bootstrap, stack):
        # A fresh façade (as a new `gridpulse down` process would build) stops it.
        fresh = LocalStack(Settings(**stack.settings.model_dump()))  # type: ignore[arg-type]
        fresh.down()
        assert not stack.broker.is_running()
        assert fresh.read_state() is None


def test_stale_pid_file_is_ignored(tmp_path):
    (port,) = free_ports(1)
    broker = TansuBroker(port, tmp_path)
    broker.dir.mkdir(parents=True)
    # A pid that surely is not a Tansu (our own) and one that does not exist.
    for pid in (os.getpid(), 2**22 + 1):
        broker.pid_file.write_text(json.dumps({"pid": pid, "cmd": broker.command()}))
        assert broker.status().state == "dead"
    try:
        assert broker.start() > 0
        assert broker.status().state == "running"
    finally:
        broker.stop()
    broker.stop()  # idempotent
    assert broker.status().state == "stopped"
