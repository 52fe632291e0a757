"""Per-table, per-topic-partition ledgers: the offsets a table already holds.

Two kinds, both stored *inside* the table they describe so that a row and the ledger entry
that covers it land in the same atomic insert:

- ``max``: raw tables carry each row's source offset; the ledger is ``max(src_offset)``.
- ``span``: summing tables cannot keep a max through merges, so each insert adds one ledger
  row per topic-partition whose ``offset_span`` is the run of offsets it covers. Spans are
  contiguous from offset 0, so ``sum(offset_span)`` is the next offset to write, and
  SummingMergeTree merges keep that sum exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import numpy as np
import pandas as pd

TP = tuple[str, int]


class LedgerKind(StrEnum):
    MAX = "max"
    SPAN = "span"
    NONE = "none"  # idempotent by key (ReplacingMergeTree): rewriting a row is harmless


class Ledger(dict[TP, int]):
    """``tp -> next offset`` the table still needs (0 when it holds nothing of ``tp``)."""

    def next_offset(self, tp: TP) -> int:
        return self.get(tp, 0)


def keep_after(
    frame: pd.DataFrame, ledger: Ledger, first_offsets: Mapping[TP, int] | None = None
) -> pd.DataFrame:
    """Rows of ``frame`` whose source offset the table does not hold yet.

    ``first_offsets`` (each source tp's smallest offset in the frame, when the caller knows
    them) settles the usual case without looking at rows: nothing was stored before."""
    if frame.empty or not ledger:
        return frame
    if first_offsets is not None and all(
        first >= ledger.next_offset(tp) for tp, first in first_offsets.items()
    ):
        return frame
    need = np.zeros(len(frame), dtype=np.int64)
    topics = frame["src_topic"].to_numpy()
    parts = frame["src_partition"].to_numpy()
    for (topic, part), nxt in ledger.items():
        need[(topics == topic) & (parts == part)] = nxt
    keep = frame["src_offset"].to_numpy() >= need
    # the same object when nothing is dropped, so tables can share work on it
    return frame if keep.all() else frame[keep]


def span_rows(last_offsets: Mapping[TP, int], ledger: Ledger) -> list[tuple[str, int, int]]:
    """``(topic, partition, span)`` ledger rows moving each tp from its ledger past its last
    offset in this checkpoint; tps the table already covers get none."""
    out = []
    for (topic, part), last in sorted(last_offsets.items()):
        span = last + 1 - ledger.next_offset((topic, part))
        if span > 0:
            out.append((topic, part, span))
    return out


def advance(ledger: Ledger, last_offsets: Mapping[TP, int]) -> None:
    """After a successful insert the table holds everything up to each tp's last offset."""
    for tp, last in last_offsets.items():
        if last + 1 > ledger.next_offset(tp):
            ledger[tp] = last + 1
