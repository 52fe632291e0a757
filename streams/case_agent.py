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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from core.city import UNLOCATED, City
from core.events import CaseEnvelope, CaseEvent, Rejection, SlaAlert, decode
from core.records import CASE_COLUMNS, CASE_STATE_COLUMNS, OUTCOME_COLUMNS, SLA_ALERT_COLUMNS
from core.settings import Settings
from sinks.base import BatchSink, Checkpoint, RetryPolicy, SinkTable, Store, StoreLayout
from sinks.base.store import CASE_EVENTS, CASE_STATE, DEAD_LETTERS, SLA_EVENTS
from sinks.base.table import CheckpointInfo
from streams.cases import CaseInput, CaseState, event_key, from_case_event
from streams.casework import CaseBook
from streams.normalize import Source, dead_row
from streams.normalize import normalize_case as validate_case
from streams.pipeline import Message, dead_letter_frame, rules_from, stamp_ingested

log = logging.getLogger("gridpulse.cases")

HELD = "held"
AWAITING_OPEN = "awaiting_open"
HELD_REASON = "the case is not opened yet: held until its accept arrives"
MAX_HELD = 10_000
"""Released rows of one opening take ``src_index`` -(index * MAX_HELD + k + 1)."""


@dataclass(frozen=True, slots=True)
class Held:
    """A validated case event waiting for its case to open, with its ``case_events`` row."""

    event: CaseEvent
    row: tuple
    arrived_s: float


def case_tables(layout: StoreLayout) -> list[SinkTable]:
    """What a case batch is written to: case events with outcomes, dead letters, state."""
    return [
        SinkTable.of(layout.table(CASE_EVENTS), "cases", stamp_ingested),
        SinkTable.of(layout.table(DEAD_LETTERS), "dead", stamp_ingested),
        SinkTable.of(layout.table(CASE_STATE), "state"),
    ]


def event_of_row(row: tuple) -> CaseEvent:
    """The case event a stored ``case_events`` row (``CASE_COLUMNS``) records."""
    r = dict(zip(CASE_COLUMNS, row, strict=True))
    return CaseEvent(
        event_id=r["event_id"],
        occurred_at=datetime.fromtimestamp(int(r["event_ms"]) / 1000, UTC),
        case_id=r["case_id"],
        action=r["action"],
        grid=r["grid_code"] or None,
        category=r["category"] or None,
        unit=r["unit"] or None,
        actor=r["actor"] or None,
        deadline=datetime.fromtimestamp(int(r["deadline"]), UTC) if int(r["deadline"]) else None,
        rating=r["rating"] or None,
        source=r["source"] or None,
        note=r["note"],
    )


def _ts(t: datetime | None) -> int:
    return int(t.timestamp()) if t is not None else 0


class CaseRuntime:
    """State and I/O of the case agent on one worker."""

    def __init__(
        self,
        settings: Settings,
        city: City,
        store: Store,
        layout: StoreLayout,
        send: Callable[[str, bytes | None, bytes, float | None, list], Awaitable[Any]],
    ) -> None:
        self.settings = settings
        self.city = city
        self.store = store
        self.send = send
        self.topic = settings.topics.case
        self.book = CaseBook(settings.sla_policy, city.calendar)
        self.tables = case_tables(layout)
        self.case_table = self.tables[0].name
        self.alert_table = layout.table(SLA_EVENTS)
        self.sink = BatchSink(
            store,
            self.tables,
            RetryPolicy(settings.sink.retry_initial_seconds, settings.sink.retry_max_seconds),
        )
        self.rules = rules_from(settings)
        self.loaded: set[tuple[str, int]] = set()
        self.cases_of: dict[tuple[str, int], set[str]] = {}
        self.partition_of: dict[str, int] = {}
        self.highwater: Callable[[str, int], int | None] = lambda topic, part: None
        self.assigned: Callable[[], set[tuple[str, int]]] = set
        self._load_lock = asyncio.Lock()
        self.processed: dict[int, tuple[int, float]] = {}  # partition -> (offset, record time)
        # events of cases not opened yet: case id -> held events (applied when it opens)
        self.held: dict[str, list[Held]] = {}
        self.hold_s = settings.sla.hold_unopened_seconds
        self.stats = {
            "events": 0,
            "applied": 0,
            "illegal": 0,
            "duplicate": 0,
            "dead": 0,
            "redelivered": 0,
            "alerts": 0,
            "loaded_cases": 0,
            "held": 0,
        }

    # ---- ownership ------------------------------------------------------------------
    async def ensure_loaded(self, tps: set[tuple[str, int]]) -> None:
        async with self._load_lock:  # the agent and the clock may both ask
            await self._load(tps)

    async def _load(self, tps: set[tuple[str, int]]) -> None:
        for topic, part in sorted(tps - self.loaded):
            log_entries = await self.store.case_log(topic, part)
            fired = await self.store.fired_alerts(topic, part)
            events = [
                CaseInput(
                    case_id=e.case_id,
                    action=e.action,
                    at=datetime.fromtimestamp(e.event_ms / 1000, UTC),
                    grid=e.grid_code or None,
                    category=e.category or None,
                    unit=e.unit or None,
                    deadline=datetime.fromtimestamp(e.deadline_s, UTC) if e.deadline_s else None,
                    rating=e.rating or None,
                    source=e.source or None,
                    event_id=e.event_id,
                )
                for e in log_entries
            ]
            for stored in await self.store.held_case_events(topic, part):
                row, arrived = tuple(stored[:-1]), float(stored[-1])
                self._hold(event_of_row(row), row, arrived)
            n = self.book.load(events, fired)
            self.cases_of.setdefault((topic, part), set()).update(e.case_id for e in events)
            self.partition_of.update((e.case_id, part) for e in events)
            # everything stored (case rows or dead letters) has been read before
            stored = 0
            for table in (self.tables[0].name, self.tables[1].name):
                ledger = await self.sink.next_offsets(table)
                stored = max(stored, ledger.next_offset((topic, part)))
            if stored - 1 > self.processed.get(part, (-1, 0.0))[0]:
                self.processed[part] = (stored - 1, 0.0)
            self.loaded.add((topic, part))
            self.stats["loaded_cases"] += n
            log.info(
                "cases: rebuilt %d cases of %s[%d] from %d stored events",
                n,
                topic,
                part,
                len(events),
            )

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
        await self.sink.retrying("rebuilding case state", lambda: self.ensure_loaded(set(last)))
        ledger = await self.sink.next_offsets(self.case_table)
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
        self,
        ev: CaseEvent,
        src: Source,
        index: int | None,
        rows: list[tuple],
        dead: list[tuple],
        payload: bytes | None,
    ) -> None:
        """Validate one case event and admit it to the book, or dead-letter it (``index``:
        its place in a ``CaseEnvelope``, None for a message of its own, whose bytes are
        ``payload``; an envelope's event is dead-lettered as its own JSON)."""
        try:
            row = validate_case(self.city, ev, src, self.rules, index or 0)
        except Rejection as rej:
            rej.index = index
            dead.append(dead_row(src, rej, payload or ev.model_dump_json().encode()))
            return
        if ev.action != "accept" and ev.case_id not in self.book.states:
            self._hold(ev, row, time.time())
            rows.append((*row, HELD, AWAITING_OPEN, HELD_REASON, ""))
        else:
            out = self.book.admit(from_case_event(ev, source=ev.source))
            self.stats[out.outcome] += 1
            rows.append((*row, out.outcome, out.code, out.reason, out.stage_after))
            if ev.action == "accept" and ev.case_id in self.held:
                rows.extend(self._release(ev.case_id, src, index or 0))
        self.cases_of.setdefault((src.topic, src.partition), set()).add(ev.case_id)
        self.partition_of[ev.case_id] = src.partition

    def _hold(self, ev: CaseEvent, row: tuple, arrived_s: float) -> None:
        self.held.setdefault(ev.case_id, []).append(Held(ev, row, arrived_s))
        self.stats["held"] += 1

    def _release(self, case_id: str, src: Source, index: int) -> list[tuple]:
        """Apply a just-opened case's held events in event-time order. Their rows carry the
        opening event's source position (negative ``src_index``: -1, -2, …, after ``index``
        in the same message), so they are stored, and redelivered, with it."""
        out = []
        inputs = [
            (from_case_event(h.event, source=h.event.source), h) for h in self.held.pop(case_id)
        ]
        inputs.sort(key=lambda pair: event_key(pair[0]))
        for k, (case_input, h) in enumerate(inputs):
            res = self.book.admit(case_input)
            self.stats[res.outcome] += 1
            moved = dict(zip(CASE_COLUMNS, h.row, strict=True))
            moved.update(
                src_topic=src.topic,
                src_partition=src.partition,
                src_offset=src.offset,
                src_index=-(index * MAX_HELD + k + 1),
            )
            out.append((*moved.values(), res.outcome, res.code, res.reason, res.stage_after))
        return out

    async def expire_held(self, now: float) -> int:
        """Record held events whose case did not open within ``hold_unopened_seconds`` as
        illegal (``unknown_case``), once: the row repeats the event's own source position
        (the stored ``held`` row says where it waited) and is written directly, since the
        table's ledger is already past that offset. Returns how many were expired."""
        due = {
            cid: hs
            for cid, hs in self.held.items()
            if min(h.arrived_s for h in hs) + self.hold_s <= now
        }
        if not due:
            return 0
        rows = []
        for hs in due.values():
            for h in hs:
                res = self.book.admit(from_case_event(h.event, source=h.event.source))
                self.stats[res.outcome] += 1
                rows.append((*h.row, res.outcome, res.code, res.reason, res.stage_after))
        frame = stamp_ingested(
            pd.DataFrame(rows, columns=[*CASE_COLUMNS, *OUTCOME_COLUMNS]), CheckpointInfo(int(now))
        )
        table = self.tables[0]
        frame = frame.reindex(columns=list(table.columns))
        await self.sink.retrying(
            f"recording {len(rows)} expired held case events",
            lambda: self.store.insert(table.name, frame),
        )
        for cid in due:
            self.held.pop(cid, None)
        return len(rows)

    def snapshots(self, now: float) -> pd.DataFrame:
        """One row per case changed since the last batch (ReplacingMergeTree by version)."""
        rows = []
        for cid in sorted(self.book.changed):
            state = self.book.states.get(cid)
            if state is not None:
                rows.append(self.snapshot(state, now))
        self.book.changed.clear()
        return pd.DataFrame(rows, columns=CASE_STATE_COLUMNS)

    def snapshot(self, s: CaseState, now: float) -> tuple:
        path = self.city.grid_paths.get(s.grid or "")
        sc = self.book.stage_clock(s)
        t = s.timestamps
        return (
            s.case_id,
            s.version,
            int(now),
            s.source,
            path.district if path else "",
            path.street if path else "",
            path.community if path else "",
            s.grid or UNLOCATED,
            (s.category or "").split(".")[0],
            s.category or "",
            s.unit or "",
            int(s.urgent),
            s.stage,
            _ts(s.opened_at),
            _ts(t.register_at),
            _ts(s.closed_at) if s.stage == "rejected" else 0,
            _ts(t.dispatch_at),
            _ts(t.acknowledge_at),
            _ts(t.handle_at),
            _ts(t.verify_at),
            _ts(t.close_at),
            int(s.voided),
            int(s.forced),
            s.rework_count,
            s.extension_count,
            len(s.pauses),
            int(s.paused),
            _ts(s.stage_started_at),
            _ts(sc.deadline(self.book.cal)) if sc else 0,
            sc.unit if sc else "",
            s.rating or "",
            _ts(s.follow_up_at),
            ",".join(sorted(self.book.late_stages.get(s.case_id, ()))),
        )

    # ---- timers ---------------------------------------------------------------------
    async def tick(self, now: float | None = None) -> list[SlaAlert]:
        """Fire what is due: publish each alert, then store it (idempotent by alert id)."""
        now = time.time() if now is None else now
        if self.held:
            await self.expire_held(now)
        missing = self.assigned() - self.loaded
        if missing:  # owned partitions without new traffic still have running clocks
            try:
                await self.ensure_loaded(missing)
            except Exception as exc:  # noqa: BLE001 - the store is down: next tick
                log.warning("cases: rebuilding %s failed, retry next tick: %s", missing, exc)
        # each partition's clock once per tick (not once per due timer)
        clocks = {part: self.partition_clock(part, now) for _, part in self.loaded}
        due = self.book.tick(
            now,
            self.settings.sla.max_alerts_per_tick,
            clock_of=lambda cid: clocks.get(self.partition_of.get(cid, -1), now),
            horizon=max(clocks.values(), default=now),
        )
        if not due:
            return []
        alerts = [self.book.alert(t, s, sc, now) for t, s, sc in due]
        futures = [
            await self.send(
                self.settings.topics.sla, a.case_id.encode(), a.model_dump_json().encode(), None, []
            )
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
            rows.append(
                (
                    a.alert_id,
                    _ts(a.fired_at),
                    _ts(a.due_at),
                    a.case_id,
                    a.kind,
                    a.level,
                    a.fraction,
                    a.stage,
                    a.stage_seq,
                    _ts(a.deadline),
                    _ts(a.stage_started_at),
                    path.district if path else "",
                    path.street if path else "",
                    path.community if path else "",
                    a.grid or UNLOCATED,
                    a.category.split(".")[0],
                    a.category,
                    a.unit,
                    int(a.urgent),
                    a.source,
                )
            )
        frame = pd.DataFrame(rows, columns=SLA_ALERT_COLUMNS)
        table = self.alert_table.name
        await self.sink.retrying(
            f"storing {len(rows)} SLA alerts in {table}", lambda: self.store.insert(table, frame)
        )
