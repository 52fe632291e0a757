"""One consumer batch in, one checkpoint out: normalize messages, build frames, pick tables.

This is the agent's body without Faust, so it can be driven by tests directly. It owns the
mapping from topics to streams and the definition of every sink table's rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
from aiokafka.partitioner import DefaultPartitioner

from core.city import UNLOCATED, City
from core.records import COUNT_KEY, DEAD_LETTER_COLUMNS, EVENT_COLUMNS
from core.settings import Settings
from sinks.base import Checkpoint, SinkTable
from sinks.base.store import DEAD_LETTERS, EVENTS, LATE_COUNTS, StoreLayout, counts_role
from sinks.base.table import CheckpointInfo
from streams.aggregate import count_events, key_groups, windowed
from streams.normalize import (
    Rules,
    Source,
    locate_pending,
    normalize_message,
)
from streams.windows import TumblingWindow, window_set

CASE_SOURCES = frozenset({"inspector", "hotline"})
_SOURCE = EVENT_COLUMNS.index("source")
_SUBCATEGORY = EVENT_COLUMNS.index("subcategory")
_TOPIC, _PARTITION, _OFFSET = (
    EVENT_COLUMNS.index(c) for c in ("src_topic", "src_partition", "src_offset")
)
_PARTITIONER = DefaultPartitioner()


@dataclass(frozen=True, slots=True)
class Message:
    """What the pipeline needs of a consumed record."""

    topic: str
    partition: int
    offset: int
    timestamp_s: float
    value: bytes | None


def stamp_ingested(frame: pd.DataFrame, info: CheckpointInfo) -> pd.DataFrame:
    """``frame`` with the checkpoint's ingest time (raw tables record when rows arrived)."""
    return frame.assign(ingested_at=info.ingested_at)


def _raw_events(
    base: TumblingWindow, tz: str, grace_s: int, frame: pd.DataFrame, info: CheckpointInfo
) -> pd.DataFrame:
    _, late = windowed(frame, base, tz, grace_s)
    return frame.assign(ingested_at=info.ingested_at, late=late.astype(np.uint8))


def _data_rows(counts: pd.DataFrame) -> pd.DataFrame:
    return counts.assign(ledger_topic="", ledger_partition=-1, offset_span=0)


def _count_once(
    window: TumblingWindow, tz: str, grace_s: int, frame: pd.DataFrame, info: CheckpointInfo
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``count_events`` once per window and frame per checkpoint (the memo keeps the frame
    alive, so its id cannot be reused by another frame meanwhile)."""
    key = (window.name, id(frame))
    hit = info.memo.get(key)
    if hit is None:
        groups = info.memo.get(("groups", id(frame)))
        if groups is None:
            groups = info.memo[("groups", id(frame))] = (frame, key_groups(frame))
        counts = count_events(frame, window, tz, grace_s, groups[1])
        hit = info.memo[key] = (frame, counts)
    return hit[1]


def _counts(
    window: TumblingWindow, tz: str, grace_s: int, frame: pd.DataFrame, info: CheckpointInfo
) -> pd.DataFrame:
    on_time, _ = _count_once(window, tz, grace_s, frame, info)
    return _data_rows(on_time)


def _late_counts(
    windows: list[TumblingWindow],
    tz: str,
    grace_s: int,
    frame: pd.DataFrame,
    info: CheckpointInfo,
) -> pd.DataFrame:
    parts = []
    for w in windows:
        _, late = _count_once(w, tz, grace_s, frame, info)
        if len(late):
            parts.append(_data_rows(late).assign(granularity=w.name))
    if not parts:
        return pd.DataFrame(columns=["granularity", "bucket", *COUNT_KEY, "n"])
    return pd.concat(parts, ignore_index=True)


def build_tables(settings: Settings, city: City, layout: StoreLayout) -> list[SinkTable]:
    """Every table a checkpoint is written to, raw first, then the windowed counts."""
    tz, grace = city.timezone, settings.window.grace_seconds
    windows = window_set(settings.window.bucket_seconds, list(settings.window.rollups))
    tables = [
        SinkTable.of(layout.table(EVENTS), "events", partial(_raw_events, windows[0], tz, grace)),
        SinkTable.of(layout.table(DEAD_LETTERS), "dead", stamp_ingested),
    ]
    for w in windows:
        tables.append(
            SinkTable.of(
                layout.table(counts_role(w.name)), "events", partial(_counts, w, tz, grace)
            )
        )
    tables.append(
        SinkTable.of(layout.table(LATE_COUNTS), "events", partial(_late_counts, windows, tz, grace))
    )
    return tables


def window_names(settings: Settings) -> tuple[str, ...]:
    """The names of the configured windows (base first), as the store's layout takes them."""
    return tuple(
        w.name for w in window_set(settings.window.bucket_seconds, list(settings.window.rollups))
    )


def opening_event(
    row: dict[str, Any], topic: str, partition: int, offset: int
) -> tuple[str, bytes, float]:
    """The ``accept`` (case id, wire JSON of a ``CaseEvent``, record time) a report or
    request implies; it is stamped with the source record's time (when the case arrived).
    Its id is fixed by the source record, so a redelivered report re-sends the same event,
    which the case agent records as a duplicate. Built as JSON directly: the row is already
    validated, and this is on the ingest hot path."""
    prefix = "H" if row["source"] == "hotline" else "I"
    case_id = f"{prefix}-{row['ref_id']}"
    doc = {
        "v": 1,
        "type": "case.event",
        "event_id": f"open:{topic}:{partition}:{offset}",
        "occurred_at": datetime.fromtimestamp(row["event_time"], UTC).isoformat(),
        "case_id": case_id,
        "action": "accept",
        "category": row["subcategory"],
        "source": row["source"],
    }
    if row["grid_code"] != UNLOCATED:
        doc["grid"] = row["grid_code"]
    return case_id, json.dumps(doc, ensure_ascii=False).encode(), row["record_time"]


def case_partition(case_id: str, partitions: int) -> int:
    """The case-topic partition of ``case_id``: the Java/kafka-python/aiokafka default
    partitioner (murmur2 of the key), so an envelope lands where a case event keyed by its
    case id lands, and one case agent sees all of a case's events."""
    return int(_PARTITIONER(case_id.encode(), list(range(partitions)), None))


def case_envelopes(
    opened: list[tuple[str, bytes, float]], partitions: int
) -> list[tuple[int, bytes, float]]:
    """The derived ``accept`` events of a checkpoint as one ``CaseEnvelope`` per case-topic
    partition: (partition, wire JSON, record time). The record time is the latest of its
    events' source records, so no event is newer than the envelope carrying it."""
    groups: dict[int, list[tuple[str, bytes, float]]] = {}
    for item in opened:
        groups.setdefault(case_partition(item[0], partitions), []).append(item)
    return [
        (
            part,
            b'{"v":1,"type":"case.envelope","events":[' + b",".join(p for _, p, _ in items) + b"]}",
            max(r for _, _, r in items),
        )
        for part, items in sorted(groups.items())
    ]


def rules_from(settings: Settings) -> Rules:
    """The validation limits of ``settings`` (one place for every agent that validates)."""
    return Rules(
        max_future_skew_s=settings.window.max_future_skew_seconds,
        max_age_s=settings.window.max_age_days * 86_400,
        caller_salt=settings.caller_salt.get_secret_value().encode(),
    )


def dead_letter_frame(dead: list[tuple]) -> pd.DataFrame:
    """Dead-letter rows as the table takes them: payload as text (the topic keeps bytes)."""
    frame = pd.DataFrame(dead, columns=DEAD_LETTER_COLUMNS)
    if len(frame):
        frame["payload"] = [p.decode("utf-8", "backslashreplace") for p in frame["payload"]]
    return frame


_FLOAT_COLUMNS = frozenset({"event_time", "record_time", "value", "lon", "lat"})
_INT_COLUMNS = frozenset({"src_partition", "src_offset", "src_index"})


def events_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Normalized event rows as a frame with fixed dtypes: float64 and int64 numbers, and
    text as object columns holding the rows' own ``str`` objects. Letting pandas infer its
    Arrow-backed string dtype instead converts every text cell, which costs more than it
    saves in counting and inserting (measured on simulator checkpoints)."""
    if not rows:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    width = len(EVENT_COLUMNS)
    if set(map(len, rows)) != {width}:
        raise ValueError(f"event rows must have {width} values")
    # one flat pass over the cells: faster than np.array(rows), which inspects each row
    flat = chain.from_iterable(rows)
    cells = np.fromiter(flat, dtype=object, count=len(rows) * width).reshape(-1, width)
    data: dict[str, Any] = {}
    for i, name in enumerate(EVENT_COLUMNS):
        column = cells[:, i]
        if name in _FLOAT_COLUMNS:
            data[name] = column.astype(np.float64)
        elif name in _INT_COLUMNS:
            data[name] = column.astype(np.int64)
        else:
            data[name] = pd.Series(column, dtype=object, copy=False)
    return pd.DataFrame(data, copy=False)


@dataclass
class Batch:
    """A normalized consumer batch, ready for ``BatchSink.write``."""

    checkpoint: Checkpoint
    frames: dict[str, pd.DataFrame]
    dead: list[tuple]  # dead-letter rows, also sent to the dead-letter topic
    messages: int
    opened: list[tuple[str, bytes, float]]  # (case id, accept event, record time)


class Normalizer:
    """Normalizes consumer batches for one city under one settings object."""

    def __init__(self, settings: Settings, city: City) -> None:
        self.city = city
        self.policy = settings.sla_policy
        self._needs: dict[str, bool] = {}
        t = settings.topics
        self.stream_of = {t.inspector: "inspector", t.sensor: "sensor", t.hotline: "hotline"}
        self.rules = replace(rules_from(settings), defer_locate=True)

    def batch(self, messages: Iterable[Message], now: float | None = None) -> Batch:
        events: list[tuple] = []
        opened: list[tuple[str, bytes, float]] = []
        dead: list[tuple] = []
        last: dict[tuple[str, int], int] = {}
        first: dict[tuple[str, int], int] = {}
        n = 0
        for m in messages:
            n += 1
            tp = (m.topic, m.partition)
            if m.offset > last.get(tp, -1):
                last[tp] = m.offset
            if m.offset < first.get(tp, m.offset + 1):
                first[tp] = m.offset
            src = Source(m.topic, m.partition, m.offset, m.timestamp_s)
            out = normalize_message(self.city, self.stream_of[m.topic], m.value, src, self.rules)
            events.extend(out.events)
            dead.extend(out.dead)
        locate_pending(self.city, events)
        for row in events:
            if row[_SOURCE] in CASE_SOURCES and self.needs_case(row[_SUBCATEGORY]):
                doc = dict(zip(EVENT_COLUMNS, row, strict=True))
                opened.append(opening_event(doc, row[_TOPIC], row[_PARTITION], row[_OFFSET]))
        frames = {
            "events": events_frame(events),
            "dead": dead_letter_frame(dead),
        }
        ingested = int(now if now is not None else time.time())
        return Batch(Checkpoint(last, ingested, first), frames, dead, n, opened)

    def needs_case(self, subcategory: str) -> bool:
        """A report or request needs handling when its category has a registration limit."""
        need = self._needs.get(subcategory)
        if need is None:
            need = self.policy.limit_for(subcategory, "register", False) is not None
            self._needs[subcategory] = need
        return need
