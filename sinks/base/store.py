"""What a pipeline needs of its store, apart from SQL: the backend interface, the layout of
the tables it writes (by role), and the reads that rebuild an agent's state.

Streams depend on these protocols only; ``sinks.clickhouse`` implements them. A role is the
domain's name for what a table holds (``events``, ``counts:1m``, ``case_state`` …); the
store decides the table's name, columns and ledger.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import pandas as pd

from sinks.base.ledger import Ledger, LedgerKind
from sinks.base.table import TableLayout

EVENTS = "events"
DEAD_LETTERS = "dead_letters"
LATE_COUNTS = "late_counts"
CASE_EVENTS = "case_events"
CASE_STATE = "case_state"
SLA_EVENTS = "sla_events"


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


class StateReader(Protocol):
    """Reads that rebuild an agent's state when its worker gains a partition."""

    async def case_log(self, topic: str, partition: int) -> list[CaseLogEntry]:
        """The case events read from ``topic[partition]``, in offset order."""
        ...

    async def fired_alerts(self, topic: str, partition: int) -> list[str]:
        """Ids of the SLA alerts already fired for the cases of ``topic[partition]``."""
        ...


class Store(StoreBackend, StateReader, Protocol):
    """A backend that also answers the agents' state reads (what a worker is given)."""
