"""The ClickHouse layout of every table the pipeline writes, by role (``sinks.base.store``).

Column layouts are the core's record shapes (``core.records``) plus what storage adds:
ingest time, the late flag, ledger columns, outcome columns. Table names come from
``schema``; migrations create the tables with these columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.records import (
    CASE_COLUMNS,
    CASE_STATE_COLUMNS,
    COUNT_KEY,
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    OUTCOME_COLUMNS,
    SLA_ALERT_COLUMNS,
)
from sinks.base.ledger import LedgerKind
from sinks.base.store import (
    CASE_EVENTS,
    CASE_STATE,
    DEAD_LETTERS,
    DETECTION_CURSOR,
    EVENTS,
    INGEST_PROGRESS,
    LATE_COUNTS,
    SLA_EVENTS,
    WARNINGS,
    counts_role,
)
from sinks.base.table import Route, TableLayout
from sinks.clickhouse import schema
from sinks.clickhouse import warnings as warning_tables

RAW_EVENT_COLUMNS = (*EVENT_COLUMNS, "ingested_at", "late")
RAW_DEAD_COLUMNS = (*DEAD_LETTER_COLUMNS, "ingested_at")
CASE_ROW_COLUMNS = (*CASE_COLUMNS, *OUTCOME_COLUMNS, "ingested_at")
COUNTS_ROUTE = Route(
    schema.COUNTS_INPUT,
    schema.ROUTE_COLUMN,
    (schema.ROUTE_COLUMN, *schema.LATE_COLUMNS),
    {"granularity": ""},
)
"""Every count table's rows in one insert (schema migration 3 routes them)."""

_LEDGER_DEFAULTS = {"bucket": 0, "n": 0, **{k: "" for k in COUNT_KEY}}


@dataclass(frozen=True, slots=True)
class ClickHouseLayout:
    """The tables of a store with count tables for ``windows`` (names like ``1m``);
    ``route_counts`` sends the count tables' rows through one routed insert."""

    windows: tuple[str, ...]
    route_counts: bool = True

    def table(self, role: str) -> TableLayout:
        route = COUNTS_ROUTE if self.route_counts else None
        if role == EVENTS:
            return TableLayout(schema.EVENT_TABLE, RAW_EVENT_COLUMNS, LedgerKind.MAX)
        if role == DEAD_LETTERS:
            return TableLayout(schema.DEAD_TABLE, RAW_DEAD_COLUMNS, LedgerKind.MAX)
        if role == CASE_EVENTS:
            return TableLayout(schema.CASE_TABLE, CASE_ROW_COLUMNS, LedgerKind.MAX)
        if role == CASE_STATE:
            return TableLayout(schema.CASE_STATE_TABLE, CASE_STATE_COLUMNS, LedgerKind.NONE)
        if role == SLA_EVENTS:
            return TableLayout(schema.SLA_TABLE, SLA_ALERT_COLUMNS, LedgerKind.NONE)
        if role == WARNINGS:
            return TableLayout(
                warning_tables.WARNINGS_TABLE, warning_tables.WARNING_COLUMNS, LedgerKind.NONE
            )
        if role == INGEST_PROGRESS:
            return TableLayout(
                warning_tables.PROGRESS_TABLE, warning_tables.PROGRESS_COLUMNS, LedgerKind.NONE
            )
        if role == DETECTION_CURSOR:
            return TableLayout(
                warning_tables.CURSOR_TABLE, warning_tables.CURSOR_COLUMNS, LedgerKind.NONE
            )
        if role == LATE_COUNTS:
            return TableLayout(
                schema.LATE_TABLE,
                schema.LATE_COLUMNS,
                LedgerKind.SPAN,
                {**_LEDGER_DEFAULTS, "granularity": ""},
                route,
            )
        for window in self.windows:
            if role == counts_role(window):
                return TableLayout(
                    schema.counts_table(window),
                    schema.COUNT_COLUMNS,
                    LedgerKind.SPAN,
                    _LEDGER_DEFAULTS,
                    route,
                )
        raise KeyError(f"no table for role {role!r}")


def schema_settings(windows: Sequence[str], raw_retention_days: int) -> schema.Settings:
    """What the migrations need to know of the deployment."""
    return schema.Settings(raw_retention_days=raw_retention_days, windows=tuple(windows))
