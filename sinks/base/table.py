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


@dataclass(frozen=True)
class SinkTable:
    """``source`` names the frame (e.g. "events") the rows come from; ``derive`` turns the
    ledger-filtered frame into rows with exactly ``columns``; span tables also name the
    values their ledger rows carry in the data columns."""

    name: str
    source: str
    columns: tuple[str, ...]
    ledger: LedgerKind
    derive: Derive = _identity
    ledger_row_defaults: Mapping[str, Any] = field(default_factory=dict)
