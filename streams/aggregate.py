"""Aggregations over a batch of normalized events: per-window counts, split on-time/late.

Pure pandas over one checkpoint's (already de-duplicated) events. The counts are partial
sums that the store adds up (SummingMergeTree), so they compose across batches and workers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from streams.windows import TumblingWindow, assign_many

COUNT_KEY = [
    "district", "street", "community", "grid_code", "category", "subcategory", "source",
]  # fmt: skip


def windowed(
    events: pd.DataFrame, window: TumblingWindow, tz: str, grace_s: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each event's window start and whether it arrived too late for that window."""
    seconds = np.floor(events["event_time"].to_numpy(dtype=np.float64)).astype(np.int64)
    start, end = assign_many(window, seconds, tz)
    late = events["record_time"].to_numpy(dtype=np.float64) > end + grace_s
    return start, late


def count_events(
    events: pd.DataFrame, window: TumblingWindow, tz: str, grace_s: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(on-time counts, late counts) per window bucket x grid path x subcategory x source."""
    start, late = windowed(events, window, tz, grace_s)
    frame = events[COUNT_KEY].assign(bucket=start, late=late)
    counts = frame.groupby(["late", "bucket", *COUNT_KEY], sort=False, observed=True).size()
    counts = counts.rename("n").reset_index()
    on_time = counts[~counts["late"]].drop(columns="late")
    too_late = counts[counts["late"]].drop(columns="late")
    return on_time.reset_index(drop=True), too_late.reset_index(drop=True)
