"""``gridpulse detect --csv``: one output row per input row, the alert where the spike is."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from streams.detect.csvrun import detect_csv, main, score_series

T0 = datetime(2025, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
N = 2000
SPIKE = 1500


def write_series(
    path: Path, values: np.ndarray, time_col: str = "ts", value_col: str = "v"
) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", time_col, value_col])
        for i, v in enumerate(values):
            at = (T0 + i * STEP).strftime("%Y-%m-%d %H:%M:%S")
            writer.writerow([i, at, "" if math.isnan(v) else f"{v:.4f}"])


@pytest.fixture
def series(tmp_path: Path) -> Path:
    t = np.arange(N)
    values = 20 + 5 * np.sin(2 * math.pi * t / 288) + np.random.default_rng(3).normal(0, 0.5, N)
    values[SPIKE] += 15
    values[700] = math.nan
    path = tmp_path / "series.csv"
    write_series(path, values)
    return path


def read_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_every_row_scored_and_alert_at_spike(series: Path) -> None:
    out = io.StringIO()
    alerts = detect_csv(series, "ts", "v", out)
    rows = read_rows(out.getvalue())
    assert len(rows) == N
    assert list(rows[0]) == ["timestamp", "value", "score", "alert"]
    fired = [i for i, r in enumerate(rows) if r["alert"] == "1"]
    assert fired == [SPIKE] and alerts == 1
    assert all((float(r["score"]) >= 0.5) == (r["alert"] == "1") for r in rows)
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert rows[700]["value"] == "" and rows[700]["score"] == "0.000000"
    assert datetime.fromisoformat(rows[SPIKE]["timestamp"]) == T0 + SPIKE * STEP


def test_main_writes_out_file(series: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    assert (
        main(["--csv", str(series), "--time-col", "ts", "--value-col", "v", "--out", str(target)])
        == 0
    )
    assert len(read_rows(target.read_text())) == N


def test_missing_column_is_an_error(series: Path) -> None:
    with pytest.raises(ValueError, match="no column"):
        detect_csv(series, "timestamp", "v", io.StringIO())


def test_flat_series_raises_nothing() -> None:
    rows = [(T0 + i * STEP, 3.0) for i in range(600)]
    assert sum(alert for *_, alert in score_series(rows)) == 0
