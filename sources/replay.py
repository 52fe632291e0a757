"""Replay a city's 311 export as hotline ``Emission``s and case events, with a report.

The user-facing description of every rule below is ``docs/formats.md``.

Each valid row becomes a ``HotlineRequest`` whose record timestamp is its creation time:
a replay asserts the original event time, so windows and lateness downstream behave as they
would have live. Rows that cannot become a message (empty or duplicate id, unparseable
creation time, a value the wire model rejects) are listed in the report with their row
number and reason, never silently skipped. Category values the format does not know are
mapped to its explicit ``other`` code and counted, so nothing is dropped for being new.

Case events (``cases=True``; ``gridpulse replay`` turns them on). The worker opens case
``H-{request id}`` itself (``accept`` at the creation time) for every request whose category
has an SLA policy; the replay drives the rest of its lifecycle from the export's timestamps,
as ``CaseEvent``s on the case stream (key = case id, record time = event time, event id
``{format}:{request id}:{action}``, so a re-run re-sends the same ids):

- at ``created``: ``register``, ``dispatch``, ``acknowledge``. An export has no finer stages,
  so these hand-offs collapse onto the creation instant (their stages take 0 s);
- then, when the row has a due date (``columns.due``) after ``created``: ``extend`` with
  ``deadline = due``, so the handling stage's deadline is the export's due date instead of
  the policy limit. A due date at or before ``created`` cannot be an approved deadline (the
  case agent refuses it): it is not emitted and is counted (``due_not_after_created``). No
  extension is emitted either when the case ends at its creation instant (it would sort
  after the close; the handling stage took 0 s, so it is on time by any measure), counted
  as ``due_unused``;
- normalized status ``closed``: ``handle``, ``verify_pass``, ``close`` at ``closed`` (empty:
  ``updated``; neither: the row stays open and is counted as ``no_end_time``);
- void-like statuses (``cancelled``, ``duplicate``, ``referred``, ``transferred``: the
  request left this city's queue unanswered, so it must count neither as closed nor as
  late): ``void`` at ``closed``, else ``updated``, else ``created``;
- ``open`` (and any status value the format does not map, reported in ``unknown_statuses``):
  nothing after the extension; a format without a status column treats a row with a closing
  time as ``closed`` and one without as ``open``.

An end time before ``created`` (clock skew in the export) is moved to ``created`` and counted
(``end_before_created``); an unparseable due/closed/updated cell is ignored and counted in
``bad_times``. All emissions are sorted by record time (stable: per row the request comes
first, then its case events in lifecycle order).

Ordering caveat: the ``accept`` is derived by the worker from the request, so a case event
that reaches the case agent before it is recorded as ``illegal`` (``unknown_case``) in
``case_events``; the case agent rebuilds the case when the ``accept`` arrives, so the state
is right but those rows keep their first outcome. Publish the requests first (and wait for
the accepts) when ``case_events`` outcomes must be clean.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from core.city import City
from core.events import CaseAction, CaseEvent, HotlineRequest, Location, encode
from sources.emission import Emission
from sources.formats import VOID_LIKE, ImportFormat, TimeColumn, load_format, parse_time

ADDRESS_MAX = 500  # HotlineRequest.address max_length
HEADER_ROWS = 1  # report rows are spreadsheet rows: the header is row 1, data start at 2
LISTED_INVALID = 20  # how many invalid rows report_text spells out
LAT_RANGE = (-90.0, 90.0)
LON_RANGE = (-180.0, 180.0)
CASE_PREFIX = "H-"  # the worker's hotline case id: f"H-{request_id}" (streams.pipeline)
OPEN_ACTIONS: tuple[CaseAction, ...] = ("register", "dispatch", "acknowledge")
CLOSE_ACTIONS: tuple[CaseAction, ...] = ("handle", "verify_pass", "close")


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
    # how each emitted request will find its grid (see GridPath); with a city only, unknown
    # codes are told apart
    grid_paths: Counter[str] = field(default_factory=Counter)
    unknown_grid_codes: Counter[str] = field(default_factory=Counter)
    cases_skipped: int = 0  # rows whose request the worker will dead-letter: no case events
    without_location: int = 0
    bad_coordinates: int = 0  # non-empty but not a usable point: garbage, range, (0, 0)
    # case events (only with cases=True)
    case_events: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # "raw -> normalized" mapping
    actions: Counter[str] = field(default_factory=Counter)  # emitted case actions
    due_not_after_created: int = 0  # due <= created: no extension emitted
    due_unused: int = 0  # due > created but the case ends at created: no extension
    end_before_created: int = 0  # closing/void time before created: moved to created
    no_end_time: int = 0  # status closed but neither closed nor updated time: left open
    bad_times: Counter[str] = field(default_factory=Counter)  # unparseable optional times

    @property
    def invalid_by_reason(self) -> Counter[str]:
        return Counter(r.reason for r in self.invalid)


@dataclass(frozen=True, slots=True)
class ReplayBatch:
    emissions: list[Emission]
    report: ImportReport


GRID_BY_CODE = "code"  # a grid code the city knows (or no city to check against)
GRID_BY_POINT = "point"  # no grid code: the worker locates the point (or UNLOCATED)
GRID_UNKNOWN_LOCATED = "unknown_code_located_by_point"  # unknown code dropped, point located
GRID_UNKNOWN_DEAD_LETTER = "unknown_code_dead_letter"  # unknown code sent: dead-lettered
GRID_NONE = "unlocated"  # neither a grid code nor a usable point: counted under UNLOCATED


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def parse_local(text: str, fmt: ImportFormat, role: TimeColumn = "created") -> datetime:
    """A timestamp of column ``role`` as an aware datetime in the format's zone (naive values
    are local wall times; see ``sources.formats.parse_time``)."""
    return parse_time(text, fmt.time_format(role), fmt.tz)


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


def grid_route(
    grid: str | None,
    has_location: bool,
    fmt: ImportFormat,
    known_grids: frozenset[str] | None,
) -> tuple[str | None, str]:
    """The grid code to send and the path the request takes to its grid (``GRID_*``)."""
    if grid is None:
        return None, GRID_BY_POINT if has_location else GRID_NONE
    if known_grids is None or grid in known_grids:
        return grid, GRID_BY_CODE
    if fmt.unknown_grid == "locate" and has_location:
        return None, GRID_UNKNOWN_LOCATED
    return grid, GRID_UNKNOWN_DEAD_LETTER


def _row_request(
    row: Mapping[str, str], fmt: ImportFormat, known_grids: frozenset[str] | None = None
) -> tuple[HotlineRequest, list[Note]]:
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
    category = fmt.categories.code_for(category_value)
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
    sent_grid, route = grid_route(grid, location is not None, fmt, known_grids)
    notes.append(("grid_paths", route))
    if route in (GRID_UNKNOWN_LOCATED, GRID_UNKNOWN_DEAD_LETTER):
        notes.append(("unknown_grid_codes", grid or ""))

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
            grid=sent_grid,
            caller_id=_cell(row, cols.caller_id) or None,
            text="",
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise _Invalid("invalid_message", f"{loc}: {first['msg']}") from None
    return msg, notes


def _optional_time(
    row: Mapping[str, str], fmt: ImportFormat, role: TimeColumn, notes: list[Note]
) -> datetime | None:
    """An optional time column: None when unmapped or empty; unparseable is noted."""
    text = _cell(row, getattr(fmt.columns, role))
    if not text:
        return None
    try:
        return parse_local(text, fmt, role)
    except ValueError:
        notes.append(("bad_times", role))
        return None


def normalized_status(row: Mapping[str, str], fmt: ImportFormat, has_end: bool) -> str:
    """The row's normalized status; unmapped values count as ``open`` (they are reported)."""
    if fmt.columns.status is None:
        return "closed" if has_end else "open"
    return fmt.status_map.get(_cell(row, fmt.columns.status), "open")


def _row_case_events(
    row: Mapping[str, str], fmt: ImportFormat, rid: str, created: datetime
) -> tuple[list[CaseEvent], list[Note]]:
    """The lifecycle events one valid row implies (see the module docstring for the rules)."""
    notes: list[Note] = []
    closed = _optional_time(row, fmt, "closed", notes)
    updated = _optional_time(row, fmt, "updated", notes)
    due = _optional_time(row, fmt, "due", notes)
    status = normalized_status(row, fmt, has_end=closed is not None)
    raw = _cell(row, fmt.columns.status) if fmt.columns.status is not None else "<none>"
    known = fmt.columns.status is None or raw in fmt.status_map
    notes.append(("statuses", f"{raw} -> {status}" if known else f"{raw} -> open (unknown)"))

    end: datetime | None = None
    end_actions: tuple[CaseAction, ...] = ()
    if status == "closed":
        end = closed or updated
        end_actions = CLOSE_ACTIONS
        if end is None:
            notes.append(("no_end_time", ""))
            end_actions = ()
    elif status in VOID_LIKE:
        end = closed or updated or created
        end_actions = ("void",)
    if end is not None and end < created:
        notes.append(("end_before_created", ""))
        end = created

    case_id = f"{CASE_PREFIX}{rid}"

    def event(action: CaseAction, at: datetime, deadline: datetime | None = None) -> CaseEvent:
        return CaseEvent(
            event_id=f"{fmt.name}:{rid}:{action}",
            occurred_at=at,
            case_id=case_id,
            action=action,
            deadline=deadline,
        )

    events = [event(a, created) for a in OPEN_ACTIONS]
    if due is not None:
        if due <= created:
            notes.append(("due_not_after_created", ""))
        elif end_actions and end == created:
            notes.append(("due_unused", ""))
        else:
            events.append(event("extend", created, due))
    if end is not None:
        events += [event(a, end) for a in end_actions]
    return events, notes


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


def replay_frame(
    df: pd.DataFrame,
    fmt: ImportFormat,
    source: str = "",
    *,
    cases: bool = False,
    city: City | None = None,
) -> ReplayBatch:
    """Turn an all-string DataFrame of one export into emissions sorted by event time:
    hotline requests, plus (``cases``) the case events of each request's lifecycle.

    With ``city``, grid codes it does not know take the format's ``unknown_grid`` path (a
    request bound for the dead-letter topic gets no case events: ``cases_skipped``)."""
    check_columns(list(df.columns), fmt)
    known_grids = frozenset(city.grid_paths) if city is not None else None
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
            msg, notes = _row_request(row, fmt, known_grids)
            case_events: list[CaseEvent] = []
            if cases and ("grid_paths", GRID_UNKNOWN_DEAD_LETTER) in notes:
                notes.append(("cases_skipped", ""))
            elif cases:
                try:
                    case_events, case_notes = _row_case_events(row, fmt, rid, msg.occurred_at)
                except ValidationError as exc:
                    first = exc.errors(include_url=False)[0]
                    loc = ".".join(str(p) for p in first["loc"])
                    raise _Invalid("invalid_case_event", f"{loc}: {first['msg']}") from None
                notes += case_notes
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
        for ev in case_events:
            report.actions[ev.action] += 1
            emissions.append(
                Emission(
                    record_ts=ev.occurred_at,
                    stream="case",
                    key=ev.case_id.encode(),
                    payload=encode(ev),
                    message=ev,
                )
            )
        report.case_events += len(case_events)
    # by instant, not wall time (aware datetimes in one zone compare by wall time); stable
    emissions.sort(key=lambda e: e.record_ts.timestamp())
    report.emitted = len(emissions) - report.case_events
    return ReplayBatch(emissions=emissions, report=report)


def grid_problems(report: ImportReport, city: City) -> list[str]:
    """A grid template that renders none of the city's codes (every coded row bound for the
    dead-letter topic)."""
    unknown = report.grid_paths[GRID_UNKNOWN_DEAD_LETTER]
    if not unknown or report.grid_paths[GRID_BY_CODE]:
        return []
    seen = ", ".join(sorted(report.unknown_grid_codes)[:3])
    known = ", ".join(sorted(city.grid_paths)[:3])
    return [
        f"none of the {unknown} rows' grid codes is a grid of city {city.code} (export: {seen}, "
        f"...; city: {known}, ...): check the format's grid_template or the city file"
    ]


def read_frame(source: str | Path, fmt: ImportFormat) -> pd.DataFrame:
    """One export as an all-string frame: a CSV file (nothing turned into NaN), or for an
    ``open311`` format a GeoReport v2 JSON file or (paged) URL."""
    if fmt.reader == "open311":
        from sources.open311 import read_requests, requests_frame

        return requests_frame(read_requests(str(source)))
    return pd.read_csv(source, dtype=str, keep_default_na=False)


def read_export(
    path: str | Path, fmt: ImportFormat, *, cases: bool = False, city: City | None = None
) -> ReplayBatch:
    """Read one export (see ``read_frame``) and replay it."""
    return replay_frame(read_frame(path, fmt), fmt, source=str(path), cases=cases, city=city)


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{k!r} {v}" for k, v in sorted(counter.items(), key=lambda kv: -kv[1]))


def report_text(report: ImportReport) -> str:
    """A human-readable summary of an import report, for the CLI."""
    lines = [
        f"{report.source or '<frame>'} (format {report.format})",
        f"  rows {report.rows}, emitted {report.emitted}, invalid {len(report.invalid)}",
        f"  without grid {report.without_grid}, without location {report.without_location}"
        f" (unusable coordinates {report.bad_coordinates})",
        f"  grid paths: {_counts(report.grid_paths)}",
    ]
    labelled = [
        ("invalid by reason", report.invalid_by_reason),
        ("unknown categories (mapped to other)", report.unknown_categories),
        ("unknown channels (mapped to default)", report.unknown_channels),
        ("unknown statuses", report.unknown_statuses),
        ("unusable grid values", report.bad_grid_values),
        ("grid codes the city does not know", report.unknown_grid_codes),
    ]
    lines += [f"  {label}: {_counts(c)}" for label, c in labelled if c]
    if report.case_events:
        lines += [
            f"  case events {report.case_events}: {_counts(report.actions)}",
            f"  statuses (raw -> normalized): {_counts(report.statuses)}",
            f"  due dates not after creation (ignored) {report.due_not_after_created},"
            f" unused (case ends at creation) {report.due_unused};"
            f" end times before creation (moved to creation) {report.end_before_created};"
            f" closed without an end time (left open) {report.no_end_time}",
        ]
        if report.cases_skipped:
            lines.append(f"  no case events (request dead-lettered) {report.cases_skipped}")
        if report.bad_times:
            lines.append(f"  unparseable times (ignored): {_counts(report.bad_times)}")
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
    ap.add_argument("--no-cases", action="store_true", help="hotline requests only")
    ap.add_argument("csv", nargs="+", type=Path)
    args = ap.parse_args(argv)
    fmt = load_format(args.format)
    for path in args.csv:
        print(report_text(read_export(path, fmt, cases=not args.no_cases).report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
