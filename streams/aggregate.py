"""Aggregations over a batch of normalized events: per-window counts, split on-time/late.

Pure pandas over one checkpoint's (already de-duplicated) events. The counts are partial
sums that the store adds up (SummingMergeTree), so they compose across batches and workers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.records import COUNT_KEY
from streams.windows import TumblingWindow, assign_many


def windowed(
    events: pd.DataFrame, window: TumblingWindow, tz: str, grace_s: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each event's window start and whether it arrived too late for that window."""
    seconds = np.floor(events["event_time"].to_numpy(dtype=np.float64)).astype(np.int64)
    start, end = assign_many(window, seconds, tz)
    late = events["record_time"].to_numpy(dtype=np.float64) > end + grace_s
    return start, late


def key_groups(events: pd.DataFrame) -> tuple[np.ndarray, int]:
    """A dense group id per row for its ``COUNT_KEY`` values, and the number of groups.

    Factorizing the seven string columns once per checkpoint, instead of grouping by them
    once per window, is what keeps counting cheap: every window then groups integers."""
    gid = np.zeros(len(events), dtype=np.int64)
    n = 1
    for col in COUNT_KEY:
        codes, uniques = pd.factorize(events[col], use_na_sentinel=False)
        gid, keys = pd.factorize(gid * len(uniques) + codes.astype(np.int64))
        n = len(keys)
    return gid.astype(np.int64, copy=False), n


def count_events(
    events: pd.DataFrame,
    window: TumblingWindow,
    tz: str,
    grace_s: int,
    groups: tuple[np.ndarray, int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(on-time counts, late counts) per window bucket x grid path x subcategory x source.

    ``groups`` is ``key_groups(events)`` when the caller shares it between windows."""
    start, late = windowed(events, window, tz, grace_s)
    gid, n_groups = groups if groups is not None else key_groups(events)
    _, b_idx = np.unique(start, return_inverse=True)
    composite = (b_idx.astype(np.int64) * n_groups + gid) * 2 + late.astype(np.int64)
    keys, first, n = np.unique(composite, return_index=True, return_counts=True)
    counts = events[list(COUNT_KEY)].take(first).reset_index(drop=True)
    counts.insert(0, "bucket", start[first])
    counts["n"] = n.astype(np.int64)
    is_late = (keys & 1).astype(bool)
    on_time = counts[~is_late].reset_index(drop=True)
    too_late = counts[is_late].reset_index(drop=True)
    return on_time, too_late
