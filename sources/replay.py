"""Replay a city's 311 CSV export as hotline ``Emission``s, with an import report.

Each valid row becomes a ``HotlineRequest`` whose record timestamp is its creation time:
a replay asserts the original event time, so windows and lateness downstream behave as they
would have live. Rows that cannot become a message (empty or duplicate id, unparseable
creation time, a value the wire model rejects) are listed in the report with their row
number and reason, never silently skipped. Category values the format does not know are
mapped to its explicit ``other`` code and counted, so nothing is dropped for being new.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from sources.emission import Emission
from sources.formats import ImportFormat, load_format
from streams.events import HotlineRequest, Location, encode

ADDRESS_MAX = 500  # HotlineRequest.address max_length
HEADER_ROWS = 1  # report rows are spreadsheet rows: the header is row 1, data start at 2
LISTED_INVALID = 20  # how many invalid rows report_text spells out
LAT_RANGE = (-90.0, 90.0)
LON_RANGE = (-180.0, 180.0)


class MissingColumns(ValueError):
    """The export lacks columns the format maps: the wrong format or a changed export."""


@dataclass(frozen=True, slots=True)
class InvalidRow:
    row: int
    id: str
    reason: str
    detail: str = ""


@dataclass(slots=True)
class ImportReport:
    """What happened to every row of one export."""

    source: str
    format: str
    rows: int = 0
    emitted: int = 0
    invalid: list[InvalidRow] = field(default_factory=list)
    unknown_categories: Counter[str] = field(default_factory=Counter)
    unknown_channels: Counter[str] = field(default_factory=Counter)
    unknown_statuses: Counter[str] = field(default_factory=Counter)
    without_grid: int = 0
    bad_grid_values: Counter[str] = field(default_factory=Counter)
    without_location: int = 0
    bad_coordinates: int = 0  # non-empty but not a usable point: garbage, range, (0, 0)

    @property
    def invalid_by_reason(self) -> Counter[str]:
        return Counter(r.reason for r in self.invalid)


@dataclass(frozen=True, slots=True)
class ReplayBatch:
    emissions: list[Emission]
    report: ImportReport


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def parse_local(text: str, fmt: ImportFormat) -> datetime:
    """A naive local timestamp as an aware datetime in the format's zone.

    Ambiguous wall times (the repeated hour in autumn) resolve to the first occurrence and
    nonexistent ones (the skipped spring hour) shift forward, per Python's ``fold=0`` rules.
    """
    naive = datetime.strptime(text.strip(), fmt.datetime_format)
    # via UTC: astimezone() to the datetime's own tzinfo is a no-op and would not normalize
    return naive.replace(tzinfo=fmt.tz).astimezone(UTC).astimezone(fmt.tz)


def parse_location(lat_text: str, lon_text: str) -> Location | None:
    """A location from two cells; None when empty, non-numeric, out of range or (0, 0)."""
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        return None
    if not (math.isfinite(lat) and math.isfinite(lon)) or (lat == 0 and lon == 0):
        return None
    if not (LAT_RANGE[0] <= lat <= LAT_RANGE[1] and LON_RANGE[0] <= lon <= LON_RANGE[1]):
        return None
    return Location(lon=lon, lat=lat)


def _cell(row: Mapping[str, str], column: str | None) -> str:
    return row[column].strip() if column is not None else ""


Note = tuple[str, str]  # (report counter, value) for a row that turns out valid


def _row_request(row: Mapping[str, str], fmt: ImportFormat) -> tuple[HotlineRequest, list[Note]]:
    """Build one row's message and its report notes; raise ``_Invalid``."""
    notes: list[Note] = []
    cols = fmt.columns
    rid = _cell(row, cols.id)
    created_text = _cell(row, cols.created)
    try:
        occurred_at = parse_local(created_text, fmt)
    except ValueError:
        raise _Invalid("bad_created", f"{cols.created}={created_text!r}") from None

    category_value = _cell(row, cols.category)
    category = fmt.categories.map.get(category_value)
    if category is None:
        notes.append(("unknown_categories", category_value))
        category = fmt.categories.other

    channel_value = _cell(row, cols.channel)
    channel = fmt.channel_map.get(channel_value)
    if channel is None:
        if cols.channel is not None:
            notes.append(("unknown_channels", channel_value))
        channel = fmt.channel_default

    if cols.status is not None:
        status_value = _cell(row, cols.status)
        if status_value not in fmt.status_map:
            notes.append(("unknown_statuses", status_value))

    grid_value = _cell(row, cols.grid)
    grid = fmt.grid_code(grid_value)
    if grid is None:
        notes.append(("without_grid", ""))
        if grid_value:
            notes.append(("bad_grid_values", grid_value))

    location = None
    if cols.lat is not None and cols.lon is not None:
        lat_text, lon_text = _cell(row, cols.lat), _cell(row, cols.lon)
        location = parse_location(lat_text, lon_text)
        if location is None and (lat_text or lon_text):
            notes.append(("bad_coordinates", ""))
    if location is None:
        notes.append(("without_location", ""))

    address = " ".join(p for p in (_cell(row, c) for c in cols.address) if p)[:ADDRESS_MAX]
    try:
        msg = HotlineRequest(
            event_id=f"{fmt.name}:{rid}",
            occurred_at=occurred_at,
            request_id=rid,
            channel=channel,
            category=category,
            location=location,
            address=address or None,
            grid=grid,
            caller_id=_cell(row, cols.caller_id) or None,
            text="",
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise _Invalid("invalid_message", f"{loc}: {first['msg']}") from None
    return msg, notes


def _apply(report: ImportReport, notes: list[Note]) -> None:
    for name, value in notes:
        target = getattr(report, name)
        if isinstance(target, Counter):
            target[value] += 1
        else:
            setattr(report, name, target + 1)


def check_columns(columns: Sequence[str], fmt: ImportFormat) -> None:
    """Raise ``MissingColumns`` naming every column the format maps but the export lacks."""
    missing = [c for c in fmt.columns.mapped() if c not in set(columns)]
    if missing:
        raise MissingColumns(f"format {fmt.name!r}: export lacks column(s) {missing}")


def replay_frame(df: pd.DataFrame, fmt: ImportFormat, source: str = "") -> ReplayBatch:
    """Turn an all-string DataFrame of one export into emissions sorted by event time."""
    check_columns(list(df.columns), fmt)
    report = ImportReport(source=source, format=fmt.name, rows=len(df))
    emitted_ids: set[str] = set()
    emissions: list[Emission] = []
    for i, row in enumerate(df.to_dict("records")):
        row_no = i + HEADER_ROWS + 1
        rid = _cell(row, fmt.columns.id)
        try:
            if not rid:
                raise _Invalid("empty_id")
            if rid in emitted_ids:
                raise _Invalid("duplicate_id", "an earlier row with this id was emitted")
            msg, notes = _row_request(row, fmt)
        except _Invalid as bad:
            report.invalid.append(InvalidRow(row_no, rid, bad.reason, bad.detail))
            continue
        _apply(report, notes)
        emitted_ids.add(rid)
        emissions.append(
            Emission(
                record_ts=msg.occurred_at,
                stream="hotline",
                key=msg.grid.encode() if msg.grid else b"",
                payload=encode(msg),
                message=msg,
            )
        )
    # by instant, not wall time (aware datetimes in one zone compare by wall time); stable
    emissions.sort(key=lambda e: e.record_ts.timestamp())
    report.emitted = len(emissions)
    return ReplayBatch(emissions=emissions, report=report)


def read_export(path: str | Path, fmt: ImportFormat) -> ReplayBatch:
    """Read one CSV export (every cell as text, nothing turned into NaN) and replay it."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return replay_frame(df, fmt, source=str(path))


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{k!r} {v}" for k, v in sorted(counter.items(), key=lambda kv: -kv[1]))


def report_text(report: ImportReport) -> str:
    """A human-readable summary of an import report, for the CLI."""
    lines = [
        f"{report.source or '<frame>'} (format {report.format})",
        f"  rows {report.rows}, emitted {report.emitted}, invalid {len(report.invalid)}",
        f"  without grid {report.without_grid}, without location {report.without_location}"
        f" (unusable coordinates {report.bad_coordinates})",
    ]
    labelled = [
        ("invalid by reason", report.invalid_by_reason),
        ("unknown categories (mapped to other)", report.unknown_categories),
        ("unknown channels (mapped to default)", report.unknown_channels),
        ("unknown statuses", report.unknown_statuses),
        ("unusable grid values", report.bad_grid_values),
    ]
    lines += [f"  {label}: {_counts(c)}" for label, c in labelled if c]
    for bad in report.invalid[:LISTED_INVALID]:
        detail = f" ({bad.detail})" if bad.detail else ""
        lines.append(f"    row {bad.row} id {bad.id!r}: {bad.reason}{detail}")
    if len(report.invalid) > LISTED_INVALID:
        lines.append(f"    ... {len(report.invalid) - LISTED_INVALID} more invalid rows")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dry-run a replay: parse exports and print their import reports."""
    ap = argparse.ArgumentParser(prog="python -m sources.replay", description=main.__doc__)
    ap.add_argument("--format", default="la311", help="bundled format name or YAML path")
    ap.add_argument("csv", nargs="+", type=Path)
    args = ap.parse_args(argv)
    fmt = load_format(args.format)
    for path in args.csv:
        print(report_text(read_export(path, fmt).report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
