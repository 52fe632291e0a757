"""What a pipeline needs of its store, apart from SQL: the backend interface, the layout of
the tables it writes (by role), and the reads that rebuild an agent's state.

Streams depend on these protocols only; ``sinks.clickhouse`` implements them. A role is the
domain's name for what a table holds (``events``, ``counts:1m``, ``case_state`` …); the
store decides the table's name, columns and ledger.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import pandas as pd

from core.warning import EarlyWarning
from sinks.base.ledger import Ledger, LedgerKind
from sinks.base.table import TableLayout

EVENTS = "events"
DEAD_LETTERS = "dead_letters"
LATE_COUNTS = "late_counts"
CASE_EVENTS = "case_events"
CASE_STATE = "case_state"
SLA_EVENTS = "sla_events"
WARNINGS = "warnings"
INGEST_PROGRESS = "ingest_progress"
DETECTION_CURSOR = "detection_cursor"


def counts_role(window: str) -> str:
    """The role of the count table of ``window`` (e.g. ``counts:1m``)."""
    return f"counts:{window}"


class StoreLayout(Protocol):
    def table(self, role: str) -> TableLayout:
        """The layout of the table that holds ``role``; ``KeyError`` for an unknown role."""
        ...


class StoreBackend(Protocol):
    """A store the sink writes to and users read from. Implementations run their blocking
    client off the event loop; ``insert`` of one frame is one atomic block."""

    version: str
    insert_seconds: dict[str, float]

    async def insert(self, table: str, frame: pd.DataFrame) -> None: ...

    async def read_ledger(self, table: str, kind: LedgerKind) -> Ledger: ...

    async def query_tsv(self, sql: str) -> str:
        """A read-only query's rows as TSV; raises ``QueryRefused`` for anything else."""
        ...

    async def close(self) -> None: ...


class QueryRefused(ValueError):
    """A statement that is not a read was sent to the read-only query path."""


class CaseLogEntry(NamedTuple):
    """One stored, non-duplicate case event, as the case agent re-applies it."""

    case_id: str
    action: str
    event_ms: int
    grid_code: str
    category: str
    unit: str
    deadline_s: int  # 0 when none
    rating: str
    source: str
    event_id: str


class WindowCount(NamedTuple):
    """Events of one source, grid and subcategory in one window (non-zero counts only)."""

    bucket_s: int
    district: str
    street: str
    community: str
    grid_code: str
    category: str  # the subcategory code
    source: str
    n: int


class PartitionProgress(NamedTuple):
    """How far an ingest partition is stored, as its owner last reported."""

    topic: str
    partition: int
    progress_s: int  # event time up to which it is stored (the report's wall time if caught up)
    caught_up: bool


class StateReader(Protocol):
    """Reads that rebuild an agent's state when its worker gains a partition."""

    async def case_log(self, topic: str, partition: int) -> list[CaseLogEntry]:
        """The case events read from ``topic[partition]``, in offset order."""
        ...

    async def fired_alerts(self, topic: str, partition: int) -> list[str]:
        """Ids of the SLA alerts already fired for the cases of ``topic[partition]``."""
        ...

    async def held_case_events(self, topic: str, partition: int) -> list[tuple[Any, ...]]:
        """Case events of ``topic[partition]`` still waiting for their case to open: rows
        of ``core.records.CASE_COLUMNS`` plus the time they were stored (epoch s)."""
        ...

    async def window_counts(
        self, window: str, since_s: int, until_s: int, sources: tuple[str, ...]
    ) -> list[WindowCount]:
        """Non-zero counts of ``sources`` in ``window`` buckets (``1h``, ``1d`` …) starting
        in ``[since_s, until_s)``."""
        ...

    async def sensor_readings(
        self, topic: str, partition: int, since_s: int
    ) -> list[tuple[str, int, float, str, int]]:
        """Readings of ``topic[partition]`` from event time ``since_s`` in consumption order:
        (sensor id, event time in epoch s, value, event id, source offset)."""
        ...

    async def located_reports(
        self, topic: str, partition: int, since_s: int
    ) -> list[tuple[str, str, int, float, float, str, str, int]]:
        """Reports and requests of ``topic[partition]`` from event time ``since_s`` in
        consumption order: (event id, subcategory, event time in epoch s, lon, lat, grid,
        caller hash, source offset); lon/lat are nan for unlocated ones."""
        ...

    async def case_lifetimes(self, since_s: int) -> list[tuple[str, int, int]]:
        """(unit, opened, ended or 0) of the cases with a unit open at some time from
        ``since_s``, in epoch seconds."""
        ...

    async def open_cases(self, at_s: int) -> dict[str, int]:
        """Open cases per handling unit at ``at_s``."""
        ...

    async def latest_warnings(self) -> list[EarlyWarning]:
        """The latest stored revision of every warning fingerprint."""
        ...

    async def ingest_progress(self) -> list[PartitionProgress]:
        """The latest progress reported for every ingest partition."""
        ...

    async def detection_cursor(self, scale: str) -> int | None:
        """The start (epoch s) of the last bucket of ``scale`` judged, None if none."""
        ...


class Store(StoreBackend, StateReader, Protocol):
    """A backend that also answers the agents' state reads (what a worker is given)."""
