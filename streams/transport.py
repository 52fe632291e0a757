"""Faust's aiokafka transport with the one consumer knob it hard-codes made a setting.

faust-streaming 0.15 builds its group consumer with ``fetch_max_wait_ms=1500`` and no way to
change it. On a broker that answers a fetch only when the wait expires (or data arrive and the
broker wakes the waiting fetch, which not every Kafka-protocol broker does promptly), a
record published just after a fetch went out waits up to that long before the worker even
sees it: that is most of the end-to-end latency at moderate rates. ``App`` below uses a
transport whose consumer takes the wait from ``WorkerSettings.fetch_max_wait_ms``; nothing
else of Faust's consumer changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from core.settings import WorkerSettings

_MAX_FETCH_BYTES = 16 * 1024 * 1024  # one fetch may carry a whole 16 MB checkpoint


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # read by AIOKafkaConsumer.start() when it builds its fetcher
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """A Faust app whose Kafka consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int | None = None, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        url = self.conf.broker_consumer[0]
        if url.scheme in ("kafka", "aiokafka"):
            return _Transport(self.conf.broker_consumer, self)
        return super()._new_transport()


def consumer_options(w: WorkerSettings, datadir: Path) -> dict[str, Any]:
    """The Faust options every gridpulse consumer app shares: the worker's, and the bare-Faust
    ceiling's in ``gridpulse bench``, so both measure the same consumer. ``datadir`` replaces
    Faust's default "<app id>-data" in the working directory."""
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    return {
        "fetch_max_wait_ms": w.fetch_max_wait_ms,
        "store": "memory://",
        "datadir": str(datadir),
        "key_serializer": "raw",
        "value_serializer": "raw",
        "topic_disable_leader": True,
        "broker_session_timeout": w.session_timeout_seconds,
        "broker_heartbeat_interval": w.heartbeat_interval_seconds,
        "broker_rebalance_timeout": w.rebalance_timeout_seconds,
        "consumer_auto_offset_reset": "earliest",
        "stream_buffer_maxsize": w.stream_buffer_maxsize,
        "consumer_max_fetch_size": _MAX_FETCH_BYTES,
    }
