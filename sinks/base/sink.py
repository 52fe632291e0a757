"""BatchSink: write one checkpoint to every table, exactly once per offset, or keep trying."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import pandas as pd

from sinks.base.ledger import TP, Ledger, LedgerKind, advance, keep_after, span_rows
from sinks.base.table import CheckpointInfo, Route, SinkTable

log = logging.getLogger(__name__)
T = TypeVar("T")


class SinkStopped(Exception):
    """The worker is stopping while the sink still waits for its store."""


class SinkBackend(Protocol):
    async def insert(self, table: str, frame: pd.DataFrame) -> None: ...

    async def read_ledger(self, table: str, kind: LedgerKind) -> Ledger: ...


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What one consumer batch covers: per topic-partition, the last offset read."""

    last_offsets: Mapping[TP, int]
    ingested_at: int
    # per topic-partition, the first offset read (lets the sink skip the per-row ledger
    # filter when nothing of the checkpoint is stored yet); None when unknown
    first_offsets: Mapping[TP, int] | None = None


@dataclass
class SinkStats:
    checkpoints: int = 0
    inserts: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    dropped_redelivered: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    last_error: str = ""
    waiting_since: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_s: float
    max_s: float

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped."""
        return random.uniform(0.5, 1.0) * min(self.max_s, self.initial_s * 2**attempt)


class BatchSink:
    """Writes checkpoints table by table; each table insert is one atomic block carrying its
    own ledger entries, so a crash between tables is repaired table by table on redelivery."""

    def __init__(self, backend: SinkBackend, tables: list[SinkTable], retry: RetryPolicy) -> None:
        self.backend = backend
        self.tables = tables
        self.retry = retry
        self.stats = SinkStats()
        self._ledgers: dict[str, Ledger] = {}
        self._stopping = asyncio.Event()

    def invalidate(self) -> None:
        """Forget cached ledgers (after a rebalance another worker may have written)."""
        self._ledgers.clear()

    def stop(self) -> None:
        self._stopping.set()

    async def write(self, checkpoint: Checkpoint, frames: Mapping[str, pd.DataFrame]) -> None:
        info = CheckpointInfo(ingested_at=checkpoint.ingested_at)
        for group in route_groups(self.tables):
            if group[0].route is None:
                await self._write_table(group[0], checkpoint, frames[group[0].source], info)
            else:
                await self._write_routed(group, checkpoint, frames, info)
        self.stats.checkpoints += 1

    async def next_offsets(self, table_name: str) -> Ledger:
        """The offsets ``table_name`` already holds (agents skip redelivered input by it);
        waits out store outages like a write does."""
        table = next(t for t in self.tables if t.name == table_name)
        return await self.retrying(
            f"reading the ledger of {table_name}", lambda: self._ledger(table)
        )

    async def retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` until it succeeds, with this sink's backoff; the consumer waits."""
        attempt = 0
        while True:
            if self._stopping.is_set():
                raise SinkStopped(f"stopped while {what}")
            try:
                result = await call()
                self.stats.waiting_since = None
                return result
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is unreachable
                self._note_failure(exc)
                delay = self.retry.delay(attempt)
                log.warning(
                    "sink: %s failed (attempt %d), retry in %.1fs: %s",
                    what,
                    attempt + 1,
                    delay,
                    self.stats.last_error,
                )
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    def _note_failure(self, exc: Exception) -> None:
        self.stats.failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if self.stats.waiting_since is None:
            self.stats.waiting_since = time.time()

    async def _ledger(self, table: SinkTable) -> Ledger:
        if table.ledger is LedgerKind.NONE:
            return Ledger()
        ledger = self._ledgers.get(table.name)
        if ledger is None:
            ledger = await self.backend.read_ledger(table.name, table.ledger)
            self._ledgers[table.name] = ledger
        return ledger

    def rows_for(
        self,
        table: SinkTable,
        checkpoint: Checkpoint,
        frame: pd.DataFrame,
        ledger: Ledger,
        info: CheckpointInfo,
    ) -> pd.DataFrame:
        fresh = keep_after(frame, ledger, checkpoint.first_offsets)
        dropped = len(frame) - len(fresh)
        if dropped:
            self.stats.dropped_redelivered[table.name] = (
                self.stats.dropped_redelivered.get(table.name, 0) + dropped
            )
        rows = table.derive(fresh, info) if len(fresh) else pd.DataFrame(columns=table.columns)
        # a summing table without data rows in this checkpoint is not written at all: its
        # ledger stays behind and the next insert with data spans the skipped offsets too
        # (there was nothing in them to count), e.g. the late table, mostly empty
        if table.ledger is LedgerKind.SPAN and len(rows):
            spans = span_rows(checkpoint.last_offsets, ledger)
            if spans:
                k = len(spans)
                marks = pd.DataFrame(
                    {
                        **{c: [v] * k for c, v in table.ledger_row_defaults.items()},
                        "ledger_topic": [t for t, _, _ in spans],
                        "ledger_partition": [p for _, p, _ in spans],
                        "offset_span": [s for _, _, s in spans],
                    }
                )
                rows = marks if rows.empty else pd.concat([rows, marks], ignore_index=True)
        if list(rows.columns) == list(table.columns):
            return rows
        return rows.reindex(columns=list(table.columns))

    def _written(
        self, table: SinkTable, ledger: Ledger, rows: pd.DataFrame, checkpoint: Checkpoint
    ) -> None:
        """Bookkeeping once ``rows`` (possibly none) of ``checkpoint`` are in ``table``."""
        if len(rows):
            self.stats.rows[table.name] = self.stats.rows.get(table.name, 0) + len(rows)
            advance(ledger, checkpoint.last_offsets)
        elif table.ledger is not LedgerKind.SPAN:
            advance(ledger, checkpoint.last_offsets)  # a span ledger stays behind

    async def _write_routed(
        self,
        tables: list[SinkTable],
        checkpoint: Checkpoint,
        frames: Mapping[str, pd.DataFrame],
        info: CheckpointInfo,
    ) -> None:
        """``tables``' rows in one insert into their route. Should it fail, the store may
        have routed the rows to some tables and not to others: their ledgers are re-read
        and each table is then written on its own (and retried) as usual."""
        route = tables[0].route
        assert route is not None
        if self._stopping.is_set():
            raise SinkStopped(f"stopped while writing {route.name}")
        try:
            written = []
            for table in tables:
                ledger = await self._ledger(table)
                rows = self.rows_for(table, checkpoint, frames[table.source], ledger, info)
                written.append((table, ledger, rows))
            parts = [routed_rows(route, t.name, rows) for t, _, rows in written if len(rows)]
            if parts:
                await self.backend.insert(
                    route.name, parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
                )
                self.stats.inserts += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store is unreachable, or failed part-way
            for table in tables:
                self._ledgers.pop(table.name, None)
            self._note_failure(exc)
            log.warning(
                "sink: writing %s failed, writing its %d tables one by one: %s",
                route.name,
                len(tables),
                self.stats.last_error,
            )
            for table in tables:
                await self._write_table(table, checkpoint, frames[table.source], info)
            return
        for table, ledger, rows in written:
            self._written(table, ledger, rows, checkpoint)
        self.stats.waiting_since = None

    async def _write_table(
        self,
        table: SinkTable,
        checkpoint: Checkpoint,
        frame: pd.DataFrame,
        info: CheckpointInfo,
    ) -> None:
        attempt = 0
        while True:
            if self._stopping.is_set():
                raise SinkStopped(f"stopped while writing {table.name}")
            try:
                ledger = await self._ledger(table)
                rows = self.rows_for(table, checkpoint, frame, ledger, info)
                if len(rows):
                    await self.backend.insert(table.name, rows)
                    self.stats.inserts += 1
                self._written(table, ledger, rows, checkpoint)
                if attempt:
                    log.warning("sink: %s written after %d retries", table.name, attempt)
                self.stats.waiting_since = None
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is unreachable or refused the insert
                # the insert may have landed before the error: re-read the ledger first
                self._ledgers.pop(table.name, None)
                self._note_failure(exc)
                delay = self.retry.delay(attempt)
                log.warning(
                    "sink: writing %s failed (attempt %d), consumer paused, retry in %.1fs: %s",
                    table.name,
                    attempt + 1,
                    delay,
                    self.stats.last_error,
                )
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)


def route_groups(tables: list[SinkTable]) -> list[list[SinkTable]]:
    """``tables`` in order, neighbours sharing a route grouped (one insert per group)."""
    groups: list[list[SinkTable]] = []
    for table in tables:
        if groups and table.route is not None and groups[-1][0].route == table.route:
            groups[-1].append(table)
        else:
            groups.append([table])
    return groups


def routed_rows(route: Route, table: str, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` of ``table`` in the route's layout, addressed to ``table``."""
    frame = rows.assign(**{route.column: table})
    for column, value in route.defaults.items():
        if column not in frame.columns:
            frame[column] = value
    return frame.reindex(columns=list(route.columns))
