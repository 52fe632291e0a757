"""The one place that touches Faust's internals (consumer offsets, high waters, paused
partitions): everything else asks this adapter, so a Faust upgrade changes one file."""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TP


def _tp_names(tps: Any) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)


class FaustView:
    """Read-only views of a running Faust app's consumer and a producer send helper."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    @property
    def _consumer(self) -> Any:
        return getattr(self.app, "_consumer", None)

    def assignment(self) -> set[tuple[str, int]]:
        """The topic-partitions assigned to this worker (empty before the first join)."""
        consumer = self._consumer
        if consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in consumer.assignment()}

    def highwater(self, topic: str, partition: int) -> int | None:
        """The partition's high water from the last fetch (None until fetched)."""
        consumer = self._consumer
        if consumer is None:
            return None
        try:
            hw = consumer.highwater(TP(topic, partition))
        except Exception:  # noqa: BLE001 - not fetched yet
            return None
        return None if hw is None else int(hw)

    def committed(self) -> dict[tuple[str, int], int]:
        """Per assigned partition, the group's committed offset (the next one to read): what
        any worker of the group stored before, including a predecessor killed mid-run."""
        consumer = self._consumer
        if consumer is None:
            return {}
        offsets = getattr(consumer, "_committed_offset", {})
        return {
            (tp.topic, tp.partition): int(offsets[tp])
            for tp in consumer.assignment()
            if offsets.get(tp) is not None
        }

    def fetch_state(self) -> dict[str, list[str]]:
        """Assigned partitions Faust is not fetching, and why (paused by a rebalance, or its
        stream buffer full): the first thing to look at when lag stops falling."""
        consumer = self._consumer
        if consumer is None:
            return {}
        return {
            "paused": _tp_names(consumer._paused_partitions),
            "buffer_full": _tp_names(consumer._buffered_partitions),
        }

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        timestamp: float | None,
        headers: list | None,
    ) -> Any:
        """Queue one record on the app's producer; returns the delivery future."""
        return await self.app.producer.send(
            topic, key, value, partition, timestamp, headers or None
        )
