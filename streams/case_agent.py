"""The case agent's body: lifecycle events in, case rows and state snapshots out, SLA ticks.

Cases are partitioned by case id on the case topic, so one worker owns each case. Its state
is rebuilt from ``case_events`` in ClickHouse when the worker gains a partition (the stored
log *is* the state: no Faust changelog, which Tansu cannot recover exactly), and alerts
already fired come back from ``sla_events``, so nothing fires twice across restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from core.city import UNLOCATED, City
from core.events import CaseEnvelope, CaseEvent, Rejection, SlaAlert, decode
from core.settings import Settings
from sinks.base import BatchSink, Checkpoint, LedgerKind, SinkTable
from sinks.base.sink import RetryPolicy
from sinks.clickhouse import schema
from streams.cases import CaseInput, CaseState, from_case_event
from streams.casework import CaseBook
from streams.normalize import CASE_COLUMNS, Source, dead_row
from streams.normalize import normalize_case as validate_case
from streams.pipeline import RAW_DEAD_COLUMNS, Message, _stamp, dead_letter_frame, rules_from

log = logging.getLogger("gridpulse.cases")

OUTCOME_COLUMNS = ("outcome", "reason_code", "reason", "stage_after")
CASE_ROW_COLUMNS = (*CASE_COLUMNS, *OUTCOME_COLUMNS, "ingested_at")
STATE_COLUMNS = (
    "case_id", "version", "updated_at", "source", "district", "street", "community",
    "grid_code", "category", "subcategory", "unit", "urgent", "stage", "opened_at",
    "registered_at", "rejected_at", "dispatched_at", "acknowledged_at", "handled_at",
    "verified_at", "closed_at", "voided", "forced", "rework_count", "extension_count",
    "pause_count", "paused", "stage_started_at", "stage_deadline", "stage_limit_unit",
    "rating", "follow_up_at", "late_stages",
)  # fmt: skip
SLA_COLUMNS = (
    "alert_id", "fired_at", "due_at", "case_id", "kind", "level", "fraction", "stage",
    "stage_seq", "deadline", "stage_started_at", "district", "street", "community",
    "grid_code", "category", "subcategory", "unit", "urgent", "source",
)  # fmt: skip


def case_tables() -> list[SinkTable]:
    return [
        SinkTable(schema.CASE_TABLE, "cases", CASE_ROW_COLUMNS, LedgerKind.MAX, _stamp),
        SinkTable(schema.DEAD_TABLE, "dead", RAW_DEAD_COLUMNS, LedgerKind.MAX, _stamp),
        SinkTable(schema.CASE_STATE_TABLE, "state", STATE_COLUMNS, LedgerKind.NONE),
    ]


def _ts(t: datetime | None) -> int:
    return int(t.timestamp()) if t is not None else 0


class CaseRuntime:
    """State and I/O of the case agent on one worker."""

    def __init__(
        self, settings: Settings, city: City, backend: Any,
        send: Callable[[str, bytes | None, bytes, float | None, list], Awaitable[Any]],
    ) -> None:  # fmt: skip
        self.settings = settings
        self.city = city
        self.backend = backend
        self.send = send
        self.topic = settings.topics.case
        self.book = CaseBook(settings.sla_policy, city.calendar)
        self.sink = BatchSink(
            backend, case_tables(),
            RetryPolicy(settings.sink.retry_initial_seconds, settings.sink.retry_max_seconds),
        )  # fmt: skip
        self.rules = rules_from(settings)
        self.loaded: set[tuple[str, int]] = set()
        self.cases_of: dict[tuple[str, int], set[str]] = {}
        self.partition_of: dict[str, int] = {}
        self.highwater: Callable[[str, int], int | None] = lambda topic, part: None
        self.assigned: Callable[[], set[tuple[str, int]]] = set
        self._load_lock = asyncio.Lock()
        self.processed: dict[int, tuple[int, float]] = {}  # partition -> (offset, record time)
        self.stats = {"events": 0, "applied": 0, "illegal": 0, "duplicate": 0, "dead": 0,
                      "redelivered": 0, "alerts": 0, "loaded_cases": 0}  # fmt: skip

    # ---- ownership ------------------------------------------------------------------
    async def ensure_loaded(self, tps: set[tuple[str, int]]) -> None:
        async with self._load_lock:  # the agent and the clock may both ask
            await self._load(tps)

    async def _load(self, tps: set[tuple[str, int]]) -> None:
        db = self.backend.db
        for topic, part in sorted(tps - self.loaded):
            where = f"src_topic = '{topic}' AND src_partition = {part}"
            rows = await self.backend.rows(
                "SELECT case_id, action, event_ms, grid_code, category, unit, "
                "toUInt32(deadline), rating, source, event_id "
                f"FROM {db}.{schema.CASE_TABLE} WHERE {where} AND outcome != 'duplicate' "
                "ORDER BY src_offset"
            )
            fired = await self.backend.rows(
                f"SELECT alert_id FROM {db}.{schema.SLA_TABLE} WHERE case_id IN "
                f"(SELECT case_id FROM {db}.{schema.CASE_TABLE} WHERE {where})"
            )
            events = [
                CaseInput(
                    case_id=c, action=a, at=datetime.fromtimestamp(int(ms) / 1000, UTC),
                    grid=g or None, category=cat or None, unit=u or None,
                    deadline=datetime.fromtimestamp(int(d), UTC) if int(d) else None,
                    rating=r or None, source=src or None, event_id=eid,
                )  # fmt: skip
                for c, a, ms, g, cat, u, d, r, src, eid in rows
            ]
            n = self.book.load(events, [f for (f,) in fired])
            self.cases_of.setdefault((topic, part), set()).update(e.case_id for e in events)
            self.partition_of.update((e.case_id, part) for e in events)
            # everything stored (case rows or dead letters) has been read before
            stored = 0
            for table in (schema.CASE_TABLE, schema.DEAD_TABLE):
                ledger = await self.sink.next_offsets(table)
                stored = max(stored, ledger.next_offset((topic, part)))
            if stored - 1 > self.processed.get(part, (-1, 0.0))[0]:
                self.processed[part] = (stored - 1, 0.0)
            self.loaded.add((topic, part))
            self.stats["loaded_cases"] += n
            log.info("cases: rebuilt %d cases of %s[%d] from %d stored events",
                     n, topic, part, len(events))  # fmt: skip

    def revoke(self, tps: set[tuple[str, int]]) -> None:
        for tp in tps & self.loaded:
            gone = self.cases_of.pop(tp, set())
            self.book.forget(gone)
            for cid in gone:
                self.partition_of.pop(cid, None)
            self.processed.pop(tp[1], None)
            self.loaded.discard(tp)
        self.sink.invalidate()

    # ---- events ---------------------------------------------------------------------
    async def handle(self, msgs: list[Message]) -> list[tuple]:
        """Apply a batch; returns dead-letter rows (the caller sends them to the DLQ topic)."""
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            tp = (m.topic, m.partition)
            last[tp] = max(last.get(tp, -1), m.offset)
        await self.sink.retrying("rebuilding case state",
                                 lambda: self.ensure_loaded(set(last)))  # fmt: skip
        ledger = await self.sink.next_offsets(schema.CASE_TABLE)
        rows: list[tuple] = []
        dead: list[tuple] = []
        for m in msgs:
            if m.offset < ledger.next_offset((m.topic, m.partition)):
                self.stats["redelivered"] += 1  # applied and stored before a restart
                continue
            src = Source(m.topic, m.partition, m.offset, m.timestamp_s)
            try:
                msg = decode("case", m.value)
            except Rejection as rej:
                rej.index = None
                dead.append(dead_row(src, rej, m.value))
                continue
            if isinstance(msg, CaseEnvelope):
                for i, ev in enumerate(msg.events):
                    self._apply(ev, src, i, rows, dead, None)
            else:
                self._apply(msg, src, None, rows, dead, m.value)
        for m in msgs:
            if m.offset >= self.processed.get(m.partition, (-1, 0.0))[0]:
                self.processed[m.partition] = (m.offset, m.timestamp_s)
        self.stats["events"] += len(msgs)
        self.stats["dead"] += len(dead)
        now = time.time()
        frames = {
            "cases": pd.DataFrame(rows, columns=[*CASE_COLUMNS, *OUTCOME_COLUMNS]),
            "dead": dead_letter_frame(dead),
            "state": self.snapshots(now),
        }
        await self.sink.write(Checkpoint(last, int(now)), frames)
        return dead

    def _apply(
        self, ev: CaseEvent, src: Source, index: int | None, rows: list[tuple],
        dead: list[tuple], payload: bytes | None,
    ) -> None:  # fmt: skip
        """Validate one case event and admit it to the book, or dead-letter it (``index``:
        its place in a ``CaseEnvelope``, None for a message of its own, whose bytes are
        ``payload``; an envelope's event is dead-lettered as its own JSON)."""
        try:
            row = validate_case(self.city, ev, src, self.rules, index or 0)
        except Rejection as rej:
            rej.index = index
            dead.append(dead_row(src, rej, payload or ev.model_dump_json().encode()))
            return
        out = self.book.admit(from_case_event(ev, source=ev.source))
        self.stats[out.outcome] += 1
        rows.append((*row, out.outcome, out.code, out.reason, out.stage_after))
        self.cases_of.setdefault((src.topic, src.partition), set()).add(ev.case_id)
        self.partition_of[ev.case_id] = src.partition

    def snapshots(self, now: float) -> pd.DataFrame:
        """One row per case changed since the last batch (ReplacingMergeTree by version)."""
        rows = []
        for cid in sorted(self.book.changed):
            state = self.book.states.get(cid)
            if state is not None:
                rows.append(self.snapshot(state, now))
        self.book.changed.clear()
        return pd.DataFrame(rows, columns=STATE_COLUMNS)

    def snapshot(self, s: CaseState, now: float) -> tuple:
        path = self.city.grid_paths.get(s.grid or "")
        sc = self.book.stage_clock(s)
        t = s.timestamps
        return (
            s.case_id, s.version, int(now), s.source,
            path.district if path else "", path.street if path else "",
            path.community if path else "", s.grid or UNLOCATED,
            (s.category or "").split(".")[0], s.category or "", s.unit or "", int(s.urgent),
            s.stage, _ts(s.opened_at), _ts(t.register_at),
            _ts(s.closed_at) if s.stage == "rejected" else 0, _ts(t.dispatch_at),
            _ts(t.acknowledge_at), _ts(t.handle_at), _ts(t.verify_at), _ts(t.close_at),
            int(s.voided), int(s.forced), s.rework_count, s.extension_count, len(s.pauses),
            int(s.paused), _ts(s.stage_started_at), _ts(sc.deadline(self.book.cal)) if sc else 0,
            sc.unit if sc else "", s.rating or "", _ts(s.follow_up_at),
            ",".join(sorted(self.book.late_stages.get(s.case_id, ()))),
        )  # fmt: skip

    # ---- timers ---------------------------------------------------------------------
    async def tick(self, now: float | None = None) -> list[SlaAlert]:
        """Fire what is due: publish each alert, then store it (idempotent by alert id)."""
        now = time.time() if now is None else now
        missing = self.assigned() - self.loaded
        if missing:  # owned partitions without new traffic still have running clocks
            try:
                await self.ensure_loaded(missing)
            except Exception as exc:  # noqa: BLE001 - the store is down: next tick
                log.warning("cases: rebuilding %s failed, retry next tick: %s", missing, exc)
        # each partition's clock once per tick (not once per due timer)
        clocks = {part: self.partition_clock(part, now) for _, part in self.loaded}
        due = self.book.tick(
            now, self.settings.sla.max_alerts_per_tick,
            clock_of=lambda cid: clocks.get(self.partition_of.get(cid, -1), now),
            horizon=max(clocks.values(), default=now),
        )  # fmt: skip
        if not due:
            return []
        alerts = [self.book.alert(t, s, sc, now) for t, s, sc in due]
        futures = [
            await self.send(self.settings.topics.sla, a.case_id.encode(),
                            a.model_dump_json().encode(), None, [])  # fmt: skip
            for a in alerts
        ]
        await asyncio.gather(*futures)
        await self._store_alerts(alerts)
        self.stats["alerts"] += len(alerts)
        return alerts

    def partition_clock(self, part: int, now: float) -> float:
        """A caught-up partition is complete until now; one with a backlog only until the
        record time of the last event read from it."""
        offset, record_s = self.processed.get(part, (-1, 0.0))
        hw = self.highwater(self.topic, part)
        if hw is not None and offset + 1 >= hw:
            return now
        return min(now, record_s)  # not fetched yet, or behind: wait for the events

    async def _store_alerts(self, alerts: list[SlaAlert]) -> None:
        rows = []
        for a in alerts:
            path = self.city.grid_paths.get(a.grid)
            rows.append((
                a.alert_id, _ts(a.fired_at), _ts(a.due_at), a.case_id, a.kind, a.level,
                a.fraction, a.stage, a.stage_seq, _ts(a.deadline), _ts(a.stage_started_at),
                path.district if path else "", path.street if path else "",
                path.community if path else "", a.grid or UNLOCATED, a.category.split(".")[0],
                a.category, a.unit, int(a.urgent), a.source,
            ))  # fmt: skip
        frame = pd.DataFrame(rows, columns=SLA_COLUMNS)
        retry = self.sink.retry
        attempt = 0
        while True:
            try:
                await self.backend.insert(schema.SLA_TABLE, frame)
                return
            except Exception as exc:  # noqa: BLE001 - the store is down: keep the alerts
                log.warning("sla: storing %d alerts failed (attempt %d): %s",
                            len(rows), attempt + 1, exc)  # fmt: skip
                await asyncio.sleep(retry.delay(attempt))
                attempt += 1
