"""Publish emissions to Kafka (kafka-python), paced in simulated record time or flat out.

Each emission goes to ``topics[emission.stream]`` with its key and its record time as the
Kafka timestamp, so the broker sees the time the simulator (or replay) says it arrived.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sources.emission import Emission

OnSent = Callable[[str, int, int, Emission], None]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ProducerSettings:
    """Producer tunables: throughput-oriented batching, no compression, durable acks."""

    acks: str = "all"
    linger_ms: int = 20
    batch_size: int = 1 << 20
    max_request_size: int = 16 << 20  # big sensor envelopes must fit in one request
    min_sleep_s: float = 0.002  # shorter waits are not worth a sleep call


@dataclass(slots=True)
class PublishStats:
    """What one ``publish`` call sent."""

    messages: Counter[str] = field(default_factory=Counter)  # per stream
    readings: int = 0  # sensor readings (an envelope counts all it holds)
    bad: Counter[str] = field(default_factory=Counter)  # deliberately malformed, per stream
    bytes: int = 0
    failed: int = 0  # sends the broker did not acknowledge
    first_error: str | None = None
    elapsed_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.messages.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (``dataclasses.asdict`` would mangle the Counters)."""
        return {
            "messages": dict(self.messages),
            "readings": self.readings,
            "bad": dict(self.bad),
            "bytes": self.bytes,
            "failed": self.failed,
            "first_error": self.first_error,
            "elapsed_s": self.elapsed_s,
            "total": self.total,
        }


def timestamp_ms(ts: datetime) -> int:
    """Exact epoch milliseconds of an aware datetime (no float rounding)."""
    return (ts - EPOCH) // timedelta(milliseconds=1)


def pace_wait(
    record_elapsed_s: float,
    wall_elapsed_s: float,
    sent: int,
    speed: float | None,
    max_rate: float | None,
) -> float:
    """Seconds to wait before the next send.

    ``speed`` X: record time advances X times faster than wall time; ``max_rate``: at most
    that many messages per second overall. None (or 0) means no limit.
    """
    target = 0.0
    if speed:
        target = record_elapsed_s / speed
    if max_rate:
        target = max(target, sent / max_rate)
    return max(0.0, target - wall_elapsed_s)


CONNECT_TIMEOUT_S = 3.0


class BrokerUnavailable(RuntimeError):
    """No bootstrap server accepts connections, or the broker did not answer in time."""


def check_broker(bootstrap: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ``BrokerUnavailable`` unless some ``host:port`` of ``bootstrap`` accepts a TCP
    connection within ``timeout`` (a quick probe: the producer itself waits 30 s)."""
    errors = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            errors.append(f"{server.strip()}: {exc}")
    raise BrokerUnavailable(
        f"no broker reachable at {bootstrap} ({'; '.join(errors)}): start one with "
        "`gridpulse up`, or point GRIDPULSE_BROKER at yours"
    )


def _sent(on_sent: OnSent, em: Emission, md: Any) -> None:
    on_sent(md.topic, md.partition, md.offset, em)


def _count(stats: PublishStats, em: Emission) -> None:
    stats.messages[em.stream] += 1
    stats.bytes += len(em.payload)
    stats.readings += int(getattr(em, "readings", 0))
    if em.bad_kind is not None:
        stats.bad[em.stream] += 1


def publish(
    emissions: Iterable[Emission],
    topics: dict[str, str],
    bootstrap: str,
    speed: float | None = None,
    max_rate: float | None = None,
    on_sent: OnSent | None = None,
    settings: ProducerSettings | None = None,
) -> PublishStats:
    """Send every emission, flush, and return what was sent.

    ``on_sent(topic, partition, offset, emission)`` is called from the producer's I/O thread
    once the broker acknowledged a message (only registered when given).
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    if (speed is not None and speed < 0) or (max_rate is not None and max_rate < 0):
        raise ValueError("speed and max_rate must be positive (or None for no limit)")
    cfg = settings or ProducerSettings()
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks=cfg.acks,
            linger_ms=cfg.linger_ms,
            batch_size=cfg.batch_size,
            max_request_size=cfg.max_request_size,
            compression_type=None,
        )
    except KafkaError as exc:
        raise BrokerUnavailable(f"broker at {bootstrap} did not answer: {exc}") from None
    stats = PublishStats()

    def failed(exc: BaseException) -> None:
        stats.failed += 1
        if stats.first_error is None:
            stats.first_error = repr(exc)

    wall0 = time.monotonic()
    first_ms: int | None = None
    try:
        for em in emissions:
            ts = timestamp_ms(em.record_ts)
            first_ms = ts if first_ms is None else first_ms
            if speed or max_rate:
                wait = pace_wait(
                    (ts - first_ms) / 1000, time.monotonic() - wall0, stats.total, speed, max_rate
                )
                if wait >= cfg.min_sleep_s:
                    time.sleep(wait)
            fut = producer.send(
                topics[em.stream], value=em.payload, key=em.key or None, timestamp_ms=ts
            )
            if on_sent is not None:
                fut.add_callback(partial(_sent, on_sent, em))
            fut.add_errback(failed)
            _count(stats, em)
        producer.flush()
    except KafkaError as exc:  # e.g. the broker went away: no metadata within max_block_ms
        raise BrokerUnavailable(
            f"broker at {bootstrap} stopped answering after {stats.total} messages: {exc}"
        ) from None
    finally:
        producer.close()
    stats.elapsed_s = time.monotonic() - wall0
    return stats
