"""A small benchmark of the count detector: microseconds per update and bytes per key.

    .venv/bin/python -m streams.detect.bench [KEYS] [WEEKS]

Streams ``weeks`` of hourly Poisson counts with a weekly pattern for ``keys`` keys (hour
scale, shipped defaults, every key updated each hour as the worker does) and reports the mean
update time, the resident bytes per key (``tracemalloc``) and the snapshot size.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from streams.detect.config import hourly_counts
from streams.detect.seasonal import SeasonalDetector, SeriesState

START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Measured cost of the hour-scale count detector."""

    keys: int
    updates: int
    us_per_update: float
    bytes_per_key: float
    snapshot_bytes: int


def bench_counts(keys: int = 200, weeks: int = 2, seed: int = 0) -> BenchResult:
    """Stream ``weeks`` of hourly counts for ``keys`` keys; the measured costs."""
    detector = SeasonalDetector(hourly_counts(), timedelta(hours=1), "Asia/Shanghai")
    hours = weeks * 168
    rng = np.random.default_rng(seed)
    hour_of_day = np.arange(hours) % 24
    rates = 0.2 + 1.5 * np.exp(-(((hour_of_day - 14) / 4.0) ** 2))
    counts = rng.poisson(rates[None, :] * rng.uniform(0.2, 3.0, (keys, 1))).astype(float)
    times = [START + timedelta(hours=h) for h in range(hours)]
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    states: list[SeriesState] = [detector.new_state() for _ in range(keys)]
    resident = (tracemalloc.get_traced_memory()[0] - baseline) / keys
    tracemalloc.stop()
    started = time.perf_counter()
    for h, at in enumerate(times):
        column = counts[:, h].tolist()
        for state, count in zip(states, column, strict=True):
            detector.update(state, at, count)
    elapsed = time.perf_counter() - started
    return BenchResult(
        keys=keys,
        updates=keys * hours,
        us_per_update=1e6 * elapsed / (keys * hours),
        bytes_per_key=resident,
        snapshot_bytes=len(states[0].to_bytes()),
    )


def main(argv: list[str] | None = None) -> int:
    """Print the benchmark for ``[KEYS] [WEEKS]``."""
    args = [int(a) for a in (sys.argv[1:] if argv is None else argv)]
    result = bench_counts(*args)
    print(
        f"{result.keys} keys, {result.updates} updates: {result.us_per_update:.1f} us/update, "
        f"{result.bytes_per_key:.0f} B/key resident, {result.snapshot_bytes} B snapshot"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
