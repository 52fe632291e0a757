"""The Kafka side of the bench: topics, publishing (flat out or paced), a plain consumer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gridpulse.bench.data import Wire
from infra.topics import ensure_topics


def topic_map(prefix: str) -> dict[str, str]:
    """Stream name -> topic, as the worker names them under ``prefix``."""
    return {
        "inspector": f"{prefix}.inspector.reports",
        "sensor": f"{prefix}.sensor.readings",
        "hotline": f"{prefix}.hotline.requests",
        "case": f"{prefix}.case.events",
    }


def create_topics(bootstrap: str, prefix: str, partitions: int) -> list[str]:
    names = [*topic_map(prefix).values(), f"{prefix}.dead-letter"]
    ensure_topics(bootstrap, names, partitions, 1)
    return names


def ends_of(offsets: dict[tuple[str, int], int]) -> dict[str, int]:
    """``{(topic, partition): last offset}`` -> ``{"topic[p]": last offset}`` as /stats/ says."""
    return {f"{t}[{p}]": o for (t, p), o in sorted(offsets.items())}


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion on a fresh (uv)loop, closed afterwards."""
    loop = _new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def produce(
    bootstrap: str,
    topics: dict[str, str],
    wires: list[Wire],
    rate: float | None = None,
    now_ts: bool = False,
) -> tuple[dict[tuple[str, int], int], float]:
    """Send ``wires`` (flat out, or paced at ``rate`` msg/s with timestamp = send time).

    Returns the last offset per (topic, partition), as the broker acknowledged them, and the
    seconds spent.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5 if rate else 20,
        max_batch_size=1 << 20,
        max_request_size=16 << 20,
        acks="all",
        enable_idempotence=False,
    )
    await producer.start()
    last: dict[tuple[str, int], int] = {}
    pending: list[asyncio.Future[Any]] = []

    async def drain() -> None:
        for md in await asyncio.gather(*pending):
            tp = (md.topic, md.partition)
            if md.offset > last.get(tp, -1):
                last[tp] = md.offset
        pending.clear()

    t0 = time.monotonic()
    try:
        for i, w in enumerate(wires):
            if rate:
                wait = t0 + i / rate - time.monotonic()
                if wait > 0.002:
                    await asyncio.sleep(wait)
            ts = int(time.time() * 1000) if now_ts else w.ts_ms
            pending.append(
                await producer.send(topics[w.stream], w.payload, key=w.key or None, timestamp_ms=ts)
            )
            if len(pending) >= (200 if rate else 5_000):
                await drain()
        await drain()
    finally:
        await producer.stop()
    return last, time.monotonic() - t0


def prepublish(bootstrap: str, prefix: str, partitions: int, wires: list[Wire]) -> dict[str, Any]:
    """Create the topics under ``prefix`` and publish ``wires`` flat out; ends and timing."""
    create_topics(bootstrap, prefix, partitions)
    last, secs = run_sync(produce(bootstrap, topic_map(prefix), wires))
    return {
        "ends": ends_of(last),
        "publish_s": round(secs, 2),
        "publish_per_s": round(len(wires) / max(secs, 1e-9)),
    }


async def consume_all(bootstrap: str, topics: list[str], total: int) -> dict[str, float]:
    """Read ``total`` records of ``topics`` from the start, no group: the client's ceiling."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        tps: list[TopicPartition] = []
        for t in topics:
            parts = consumer.partitions_for_topic(t)
            if not parts:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                parts = consumer.partitions_for_topic(t) or set()
            tps.extend(TopicPartition(t, p) for p in sorted(parts))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        n = 0
        size = 0
        t0 = time.monotonic()
        t_first = 0.0
        n_first = 0
        deadline = t0 + 300
        while n < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for records in batches.values():
                for r in records:
                    size += len(r.value or b"")
                n += len(records)
            if n and not t_first:
                t_first, n_first = time.monotonic(), n
        t1 = time.monotonic()
    finally:
        await consumer.stop()
    if n < total:
        raise RuntimeError(f"aiokafka consumer read {n} of {total} messages in 300 s")
    # no group join to exclude: the rate runs from the seek to the last record
    secs = max(t1 - t0, 1e-9)
    return {
        "items": n,
        "from_ready_s": round(secs, 3),
        "steady_s": round(secs, 3),
        "steady_per_s": round(n / secs, 1),
        "first_fetch": n_first,
        "first_fetch_s": round(t_first - t0, 3),
        "mb_per_s": round(size / 1e6 / secs, 1),
    }
