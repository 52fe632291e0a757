"""Rerunnable NAB evaluation of the shipped value-mode defaults.

Scores every labelled series of a NAB-layout directory with ``csvrun.score_series`` (the
streaming detector and the warning lifecycle, default settings, no per-series tuning), writes
one ``<results>/<category>/<file>.csv`` per series with ``timestamp,anomaly_score`` (the
``alert`` column, or the raw ``score`` with ``--column score``) and runs the NAB scorer at the
fixed threshold 0.5:

    .venv/bin/python -m streams.detect.nab_eval \
        --nab ../shared/data/nab_dev --scorer ../shared/tools/nab_score.py \
        --results /tmp/gridpulse-nab [--half even|odd]
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from streams.detect.config import ALERT_THRESHOLD
from streams.detect.csvrun import read_series, score_series

REPO = Path(__file__).resolve().parents[2]
DEFAULT_NAB = REPO.parent / "shared" / "data" / "nab_dev"
DEFAULT_SCORER = REPO.parent / "shared" / "tools" / "nab_score.py"


def labelled_files(nab: Path, patterns: Sequence[str] = ()) -> list[str]:
    """The labelled series (relative paths, sorted), optionally filtered by glob patterns."""
    labels = json.loads((nab / "combined_windows.json").read_text())
    files = sorted(labels)
    if not patterns:
        return files
    return [f for f in files if any(fnmatch.fnmatchcase(f, p) for p in patterns)]


def write_results(nab: Path, results: Path, files: Sequence[str], column: str) -> int:
    """Score each series into ``results``; the total number of alerts."""
    alerts = 0
    for rel in files:
        rows = read_series(nab / "data" / rel, "timestamp", "value")
        target = results / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["timestamp", "anomaly_score", "score", "alert"])
            for at, _value, score, alert in score_series(rows):
                alerts += alert
                anomaly = alert if column == "alert" else score
                writer.writerow([at.strftime("%Y-%m-%d %H:%M:%S"), anomaly, f"{score:.6f}", alert])
    return alerts


def run_scorer(
    nab: Path, scorer: Path, results: Path, files: Sequence[str], per_file: bool
) -> dict:
    """Run the NAB scorer at the shipped threshold; its JSON result."""
    out_json = results / "nab_score.json"
    cmd = [
        sys.executable,
        str(scorer),
        "--data",
        str(nab / "data"),
        "--labels",
        str(nab / "combined_windows.json"),
        "--profiles",
        str(nab / "profiles.json"),
        "--results",
        str(results),
        "--threshold",
        str(ALERT_THRESHOLD),
        "--json",
        str(out_json),
        "--files",
        *files,
    ]
    if not per_file:
        cmd.append("--no-per-file")
    subprocess.run(cmd, check=True)
    return json.loads(out_json.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    """Score the NAB series and print the scorer's report; exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", type=Path, default=DEFAULT_NAB, help="NAB-layout directory")
    parser.add_argument("--scorer", type=Path, default=DEFAULT_SCORER, help="nab_score.py")
    parser.add_argument("--results", type=Path, default=Path("/tmp/gridpulse-nab"))
    parser.add_argument("--column", choices=("alert", "score"), default="alert")
    parser.add_argument("--files", nargs="*", default=[], help="glob patterns of series")
    parser.add_argument(
        "--half",
        choices=("even", "odd"),
        help="only the series at even (tuning half) or odd (held-out half) sorted positions",
    )
    parser.add_argument("--per-file", action="store_true", help="print per-file tables")
    args = parser.parse_args(argv)
    files = labelled_files(args.nab, args.files)
    if args.half:
        files = files[0 if args.half == "even" else 1 :: 2]
    alerts = write_results(args.nab, args.results, files, args.column)
    result = run_scorer(args.nab, args.scorer, args.results, files, args.per_file)
    standard = result["profiles"]["standard"]
    print(
        f"\n{len(files)} series, {alerts} alerts; standard profile: "
        f"{standard['normalized']:.1f} (TP {standard['tp_windows']}, "
        f"FN {standard['fn_windows']}, FP {standard['fp_detections']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
