"""A sink table: which frame feeds it, how its rows are derived, and its ledger kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sinks.base.ledger import LedgerKind

Derive = Callable[[pd.DataFrame, "CheckpointInfo"], pd.DataFrame]


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """What derive functions know of the checkpoint; ``memo`` lets the tables of one
    checkpoint share intermediate results (e.g. one grouping for on-time and late counts)."""

    ingested_at: int
    memo: dict[Any, Any] = field(default_factory=dict, compare=False)


def _identity(frame: pd.DataFrame, info: CheckpointInfo) -> pd.DataFrame:
    return frame


@dataclass(frozen=True, slots=True)
class Route:
    """A shared input table through which several tables take one insert per checkpoint:
    each row carries its table's name in ``column`` and the store routes it there (e.g.
    ClickHouse materialized views over a Null table). ``columns`` is the input's layout;
    ``defaults`` fill the columns a table's rows lack. Routing must deliver each table's
    rows as one block, so a table holds a checkpoint entirely or not at all."""

    name: str
    column: str
    columns: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TableLayout:
    """How the store lays out one table: its name, columns (in insert order), ledger kind,
    the values its ledger rows carry in data columns (span ledgers), and its shared input
    route, if it takes its rows through one."""

    name: str
    columns: tuple[str, ...]
    ledger: LedgerKind
    ledger_row_defaults: Mapping[str, Any] = field(default_factory=dict)
    route: Route | None = None


@dataclass(frozen=True)
class SinkTable:
    """``source`` names the frame (e.g. "events") the rows come from; ``derive`` turns the
    ledger-filtered frame into rows with exactly ``columns``; span tables also name the
    values their ledger rows carry in the data columns. Tables sharing a ``route`` (listed
    next to each other) are written with one insert into it."""

    name: str
    source: str
    columns: tuple[str, ...]
    ledger: LedgerKind
    derive: Derive = _identity
    ledger_row_defaults: Mapping[str, Any] = field(default_factory=dict)
    route: Route | None = None

    @classmethod
    def of(cls, layout: TableLayout, source: str, derive: Derive = _identity) -> SinkTable:
        """The table the store lays out as ``layout``, fed from frame ``source``."""
        return cls(
            layout.name,
            source,
            layout.columns,
            layout.ledger,
            derive,
            layout.ledger_row_defaults,
            layout.route,
        )
