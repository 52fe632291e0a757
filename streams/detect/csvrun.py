"""Run the streaming seasonal detector over a timestamped CSV series (``gridpulse detect``).

The rows go one by one through ``SeasonalDetector.update`` (value mode, the shipped
``config.value_series()`` and ``config.value_lifecycle()`` defaults) and the detector's
verdicts through the same ``WarningLifecycle`` the worker uses, so the output is what
gridpulse would have raised live:

    timestamp,value,score,alert

``alert`` is 1 on the rows where a warning *fires* (a new episode of a fingerprint starts:
the detector's score reached the threshold 0.5 while no warning of that kind was open), else
0: the detector's alarms, deduplicated the way the worker deduplicates warnings. ``score``
(0..1) is the detector's score of the row (the largest of its point and shift scores), except
that a row inside an open episode that fires nothing is capped at ``IN_EPISODE_CAP`` (below
the threshold), so ``alert == (score >= 0.5)`` on every row. Timestamps without a zone are
read as UTC; rows with an unreadable value get score 0.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from core.warning import EarlyWarning
from streams.detect.config import LifecycleConfig, SeasonalConfig, value_lifecycle, value_series
from streams.detect.lifecycle import Track, WarningLifecycle
from streams.detect.seasonal import SeasonalDetector, verdicts

INTERVAL_SAMPLE = 200
"""Rows whose spacing (median) sets the sample interval of a CSV series."""

IN_EPISODE_CAP = 0.499
"""Score shown for a row that is anomalous but belongs to an already open warning."""


def parse_time(text: str) -> datetime:
    """An ISO-8601 timestamp (``T`` or space separated); naive means UTC."""
    at = datetime.fromisoformat(text.strip())
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def parse_value(text: str) -> float:
    """The row's value, NaN when empty or unreadable."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def infer_interval(times: Sequence[datetime]) -> timedelta:
    """The median spacing of the first rows (at least one second)."""
    head = times[: INTERVAL_SAMPLE + 1]
    gaps = [(b - a).total_seconds() for a, b in zip(head, head[1:], strict=False)]
    positive = [g for g in gaps if g > 0]
    return timedelta(seconds=max(1.0, statistics.median(positive) if positive else 60.0))


def read_series(path: Path | str, time_col: str, value_col: str) -> list[tuple[datetime, float]]:
    """The (timestamp, value) rows of a CSV file, in file order."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {time_col, value_col} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: no column(s) {sorted(missing)}")
        return [(parse_time(r[time_col]), parse_value(r[value_col])) for r in reader]


def score_series(
    rows: Sequence[tuple[datetime, float]],
    config: SeasonalConfig | None = None,
    lifecycle: LifecycleConfig | None = None,
) -> Iterator[tuple[datetime, float, float, int]]:
    """(timestamp, value, score, alert) for every row, streaming through detector + lifecycle."""
    detector = SeasonalDetector(config or value_series(), infer_interval([r[0] for r in rows]))
    state = detector.new_state()
    machine = WarningLifecycle(lifecycle or value_lifecycle())
    key = {"sensor_id": "csv"}
    for at, value in rows:
        assessment = None if math.isnan(value) else detector.update(state, at, value)
        if assessment is None:
            yield at, value, 0.0, 0
            continue
        fired = 0
        for verdict in verdicts(detector, assessment, key, name="seasonal-value"):
            before = machine.tracks.get(verdict.fingerprint)
            warning = machine.observe(verdict)
            if warning is not None and raises_alarm(before, warning):
                fired = 1
        score = assessment.score if fired else min(assessment.score, IN_EPISODE_CAP)
        yield at, value, score, fired


def raises_alarm(before: Track | None, warning: EarlyWarning) -> bool:
    """True for the revision that fires a warning (a new episode of its fingerprint)."""
    return warning.status == "firing" and (before is None or not before.firing)


def detect_csv(
    path: Path | str,
    time_col: str,
    value_col: str,
    out: Path | str | TextIO,
    config: SeasonalConfig | None = None,
) -> int:
    """Score a CSV series into ``out`` (a path or an open text stream); the number of alerts."""
    rows = read_series(path, time_col, value_col)
    if isinstance(out, str | Path):
        with open(out, "w", newline="") as fh:
            return _write(rows, fh, config)
    return _write(rows, out, config)


def _write(
    rows: Sequence[tuple[datetime, float]], fh: TextIO, config: SeasonalConfig | None
) -> int:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(["timestamp", "value", "score", "alert"])
    alerts = 0
    for at, value, score, alert in score_series(rows, config):
        alerts += alert
        writer.writerow([at.isoformat(), _fmt(value), f"{score:.6f}", alert])
    return alerts


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else repr(value)


def build_parser() -> argparse.ArgumentParser:
    """The ``gridpulse detect`` arguments."""
    parser = argparse.ArgumentParser(
        prog="gridpulse detect",
        description="Score a timestamped CSV series with the streaming seasonal detector.",
    )
    parser.add_argument("--csv", required=True, help="input CSV file")
    parser.add_argument("--time-col", default="timestamp", help="timestamp column")
    parser.add_argument("--value-col", default="value", help="value column")
    parser.add_argument("--out", help="output CSV (default: standard output)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``gridpulse detect --csv FILE --time-col C --value-col V [--out OUT]``; exit status."""
    args = build_parser().parse_args(argv)
    target = args.out if args.out else sys.stdout
    alerts = detect_csv(args.csv, args.time_col, args.value_col, target)
    sys.stdout.flush()
    print(f"{alerts} alert(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
