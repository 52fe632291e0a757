"""Window definitions and event-time mechanics: bucket assignment and lateness.

Definitions (which windows exist) are separate from the arithmetic (where an instant falls,
when a window closes) so both are trivially testable. Everything here is pure.

Lateness is decided per window from the *record timestamp* (the time the message reached the
broker, as the producer stamped it), not from when a worker happened to read it: an event is
late for a window when it arrived more than ``grace`` after the window ended. That rule gives
the same answer on every redelivery and on every worker, which is what exact counts need.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np


@dataclass(frozen=True, slots=True)
class TumblingWindow:
    """A fixed-size tumbling window. Day windows align to local midnight of the city."""

    name: str
    seconds: int

    @property
    def is_daily(self) -> bool:
        return self.seconds == 86_400


WINDOWS: dict[str, TumblingWindow] = {
    "1m": TumblingWindow("1m", 60),
    "5m": TumblingWindow("5m", 300),
    "1h": TumblingWindow("1h", 3_600),
    "1d": TumblingWindow("1d", 86_400),
}


def window_set(bucket_seconds: int, rollups: list[str]) -> list[TumblingWindow]:
    """The base window plus configured rollups, smallest first, without duplicates."""
    base = next((w for w in WINDOWS.values() if w.seconds == bucket_seconds), None)
    if base is None:
        base = TumblingWindow(f"{bucket_seconds}s", bucket_seconds)
    out = [base] + [WINDOWS[r] for r in rollups if WINDOWS[r].seconds > base.seconds]
    for small, big in zip(out, out[1:], strict=False):
        if big.seconds % small.seconds:
            raise ValueError(f"window {big.name} is not a multiple of {small.name}")
    return out


def bucket_start(epoch_s: int, seconds: int) -> int:
    """Start (epoch seconds, UTC-aligned) of the sub-daily window holding ``epoch_s``."""
    return epoch_s - epoch_s % seconds


def day_start(epoch_s: int, tz: str) -> int:
    """Start of the local calendar day (in ``tz``) holding ``epoch_s``; DST-safe."""
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(epoch_s, UTC).astimezone(zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # replace() keeps the fold/offset of ``local``; rebuild to get midnight's own offset
    return int(datetime(start.year, start.month, start.day, tzinfo=zone).timestamp())


def assign(window: TumblingWindow, epoch_s: int, tz: str) -> tuple[int, int]:
    """(start, end) of ``window`` containing ``epoch_s``."""
    if window.is_daily:
        start = day_start(epoch_s, tz)
        return start, day_start(start + 90_000, tz)
    start = bucket_start(epoch_s, window.seconds)
    return start, start + window.seconds


def is_late(window_end: int, record_s: float, grace_s: int) -> bool:
    """Late when the record reached the broker more than ``grace_s`` after the window closed."""
    return record_s > window_end + grace_s


def assign_many(
    window: TumblingWindow, epoch_s: np.ndarray, tz: str
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``assign`` for a batch: arrays of window starts and ends."""
    if not window.is_daily:
        start = epoch_s - epoch_s % window.seconds
        return start, start + window.seconds
    # every real UTC offset is a multiple of 15 min: resolve each distinct quarter-hour once
    hours, inverse = np.unique(epoch_s // 900, return_inverse=True)
    hour_start = np.array([day_start(int(h) * 900, tz) for h in hours], dtype=np.int64)
    hour_end = np.array([day_start(int(s) + 90_000, tz) for s in hour_start], dtype=np.int64)
    return hour_start[inverse], hour_end[inverse]
