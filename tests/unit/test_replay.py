"""Replay of LA 311 exports: the declarative format, the import report and the LA city config."""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from core.city import load_city
from core.events import HotlineRequest, decode
from sources.formats import FORMATS_DIR, VOID_LIKE, ImportFormat, load_format
from sources.la_city import build_city, read_frames
from sources.replay import (
    MissingColumns,
    ReplayBatch,
    parse_local,
    read_export,
    replay_frame,
    report_text,
)
from streams.cases import CaseInput, from_case_event
from streams.cases import replay as replay_case

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("GRIDPULSE_DATA", "/work/shared/data")) / "la311"
LA_FILES = sorted(DATA.glob("*.csv"))
LA_YAML = ROOT / "config" / "cities" / "la.yaml"
LA_TZ = "America/Los_Angeles"
CSV_FMT = "%m/%d/%Y %I:%M:%S %p"
LOCATION_SAMPLE = 500
COORD_TOL = 1e-9

needs_data = pytest.mark.skipif(not LA_FILES, reason=f"LA 311 sample data not found in {DATA}")


@pytest.fixture(scope="module")
def fmt() -> ImportFormat:
    return load_format("la311")


@pytest.fixture(scope="module")
def batches(fmt: ImportFormat) -> dict[str, tuple[pd.DataFrame, ReplayBatch]]:
    return {
        p.name: (pd.read_csv(p, dtype=str, keep_default_na=False), read_export(p, fmt))
        for p in LA_FILES
    }


def _files() -> list[str]:
    return [p.name for p in LA_FILES]


@needs_data
def test_both_la_files_are_present() -> None:
    assert len(LA_FILES) == 2


@needs_data
@pytest.mark.parametrize("name", _files())
def test_every_row_is_emitted_or_reported(batches, name: str) -> None:
    df, batch = batches[name]
    rep = batch.report
    assert rep.rows == len(df)
    assert rep.emitted == len(batch.emissions)
    assert rep.emitted + len(rep.invalid) == rep.rows
    assert sum(rep.invalid_by_reason.values()) == len(rep.invalid)
    assert rep.emitted > 0.99 * rep.rows  # the real exports are clean
    assert not rep.unknown_categories  # the format covers all 12 LA request types
    assert rep.without_grid == (df["NC"] == "").sum()
    assert rep.without_location == (df["Latitude"] == "").sum()
    text = report_text(rep)
    assert f"rows {rep.rows}, emitted {rep.emitted}" in text


@needs_data
@pytest.mark.parametrize("name", _files())
def test_emissions_are_event_time_ordered_and_decode(batches, name: str) -> None:
    _, batch = batches[name]
    instants = [e.record_ts.timestamp() for e in batch.emissions]
    assert instants == sorted(instants)
    for e in batch.emissions:
        msg = decode("hotline", e.payload)
        assert isinstance(msg, HotlineRequest)
        assert msg == e.message
        assert e.stream == "hotline"
        assert e.record_ts == msg.occurred_at
        assert str(e.record_ts.tzinfo) == LA_TZ
        assert e.key == (msg.grid.encode() if msg.grid else b"")
        assert msg.event_id == f"la311:{msg.request_id}"


@needs_data
@pytest.mark.parametrize("name", _files())
def test_hourly_counts_per_nc_match_pandas(batches, name: str) -> None:
    df, batch = batches[name]
    with_nc = df[df["NC"] != ""]
    hours = pd.to_datetime(with_nc["CreatedDate"], format=CSV_FMT).dt.floor("h")
    expected = Counter(
        (f"NC{int(nc):03d}", h.to_pydatetime()) for nc, h in zip(with_nc["NC"], hours, strict=True)
    )
    got = Counter(
        (e.message.grid, e.record_ts.replace(minute=0, second=0, tzinfo=None))
        for e in batch.emissions
        if e.message.grid
    )
    assert got == expected
    assert len(expected) > 1000  # a real distribution, not a degenerate one


def _location_column(text: str) -> tuple[float, float]:
    """(lat, lon) from either year's Location: '(lat, lon)' or 'POINT (lon lat)'."""
    if m := re.fullmatch(r"POINT \((\S+) (\S+)\)", text):
        return float(m[2]), float(m[1])
    m = re.fullmatch(r"\((\S+), (\S+)\)", text)
    assert m, f"unexpected Location {text!r}"
    return float(m[1]), float(m[2])


@needs_data
@pytest.mark.parametrize("name", _files())
def test_emitted_coordinates_agree_with_location_column(batches, name: str) -> None:
    df, batch = batches[name]
    by_id = {e.message.request_id: e.message for e in batch.emissions}
    sample = df[df["Location"] != ""].sample(LOCATION_SAMPLE, random_state=0)
    for rid, loc_text in zip(sample["SRNumber"], sample["Location"], strict=True):
        lat, lon = _location_column(loc_text)
        loc = by_id[rid].location
        assert loc is not None
        assert abs(loc.lat - lat) < COORD_TOL and abs(loc.lon - lon) < COORD_TOL


@needs_data
def test_la_city_config_validates_and_covers_the_replay(batches) -> None:
    city = load_city(LA_YAML)
    codes = {g.code for g in city.iter_grids()}
    assert len(codes) in (97, 98)
    assert city.timezone == LA_TZ
    emitted_grids = {e.message.grid for _, b in batches.values() for e in b.emissions}
    assert emitted_grids - {None} <= codes
    emitted_cats = {e.message.category for _, b in batches.values() for e in b.emissions}
    assert emitted_cats <= set(city.subcategories)
    assert all(sub.streams == ["hotline"] for _, sub in city.subcategories.values())


@needs_data
def test_la_yaml_is_what_the_generator_builds(fmt: ImportFormat) -> None:
    assert build_city(read_frames(LA_FILES), fmt) == load_city(LA_YAML)


@needs_data
def test_nc_centres_fall_in_their_own_grid(fmt: ImportFormat) -> None:
    city = load_city(LA_YAML)
    df = read_frames(LA_FILES)
    df = df[(df["NC"] != "") & (df["Latitude"] != "")]
    centres = df.assign(lat=df["Latitude"].astype(float), lon=df["Longitude"].astype(float))
    for nc, g in centres.groupby("NC"):
        code = fmt.grid_code(nc)
        assert city.locator.locate(g["lon"].median(), g["lat"].median()) == code


SYNTHETIC_HEADER = (
    "SRNumber,CreatedDate,UpdatedDate,ServiceDate,ClosedDate,Status,RequestType,"
    "RequestSource,NC,Latitude,Longitude,Address\n"
)
SYNTHETIC_ROWS = [
    # row 2: valid, created after row 3 in time -> sorted second
    "A1,01/02/2018 10:00:00 AM,,,,Closed,Bulky Items,Call,55,34.05,-118.25,1 MAIN ST\n",
    # row 3: valid, unknown category + unknown channel + unknown status, no NC, (0, 0) location
    "A2,01/01/2018 09:00:00 AM,,,,Pending,Pothole,Carrier Pigeon,,0,0,\n",
    # row 4: unparseable created date
    "A3,2018-01-02 10:00,,,,Closed,Graffiti Removal,Call,55,34.05,-118.25,\n",
    # row 5: empty id
    ",01/02/2018 10:00:00 AM,,,,Closed,Graffiti Removal,Call,55,34.05,-118.25,\n",
    # row 6: duplicate of row 2
    "A1,01/03/2018 10:00:00 AM,,,,Closed,Graffiti Removal,Call,55,34.05,-118.25,\n",
    # row 7: valid, unknown category again, garbage coordinates
    "A4,01/03/2018 11:00:00 AM,,,,Open,Pothole,Mobile App,7,abc,-118.25,\n",
]


def test_synthetic_bad_rows_are_reported(tmp_path: Path, fmt: ImportFormat) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(SYNTHETIC_HEADER + "".join(SYNTHETIC_ROWS))
    batch = read_export(path, fmt)
    rep = batch.report
    assert rep.rows == 6 and rep.emitted == 3
    assert [(r.row, r.id, r.reason) for r in rep.invalid] == [
        (4, "A3", "bad_created"),
        (5, "", "empty_id"),
        (6, "A1", "duplicate_id"),
    ]
    assert rep.unknown_categories == Counter({"Pothole": 2})
    assert rep.unknown_channels == Counter({"Carrier Pigeon": 1})
    assert rep.unknown_statuses == Counter({"Pending": 1})
    assert rep.without_grid == 1
    assert rep.without_location == 2 and rep.bad_coordinates == 2  # (0, 0) and 'abc'
    msgs = [e.message for e in batch.emissions]
    assert [m.request_id for m in msgs] == ["A2", "A1", "A4"]
    a2, a1, a4 = msgs
    assert a2.category == "service.other" and a2.channel == "other"
    assert a2.grid is None and a2.location is None and a2.address is None
    assert a1.category == "sanitation.bulky_items" and a1.channel == "phone"
    assert a1.grid == "NC055" and a1.address == "1 MAIN ST"
    assert a1.occurred_at.utcoffset() == timedelta(hours=-8)
    assert a4.grid == "NC007" and a4.category == "service.other" and a4.channel == "app"
    assert batch.emissions[0].key == b""
    text = report_text(rep)
    assert "'Pothole' 2" in text and "row 4 id 'A3': bad_created" in text


def test_export_missing_a_mapped_column_is_rejected(tmp_path: Path, fmt: ImportFormat) -> None:
    path = tmp_path / "no_nc.csv"
    path.write_text(SYNTHETIC_HEADER.replace(",NC,", ",Neighbourhood,") + SYNTHETIC_ROWS[0])
    with pytest.raises(MissingColumns, match="'NC'"):
        read_export(path, fmt)


def test_local_times_across_dst(fmt: ImportFormat) -> None:
    ambiguous = parse_local("11/04/2018 01:30:00 AM", fmt)  # first occurrence: still PDT
    assert ambiguous.utcoffset() == timedelta(hours=-7)
    skipped = parse_local("03/11/2018 02:30:00 AM", fmt)  # does not exist: shifted forward
    assert (skipped.hour, skipped.utcoffset()) == (3, timedelta(hours=-7))


def _la_format_dict() -> dict:
    return yaml.safe_load((FORMATS_DIR / "la311.yaml").read_text())


def test_format_without_required_column_mapping_is_rejected(tmp_path: Path) -> None:
    data = _la_format_dict()
    del data["columns"]["created"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValidationError) as info:
        load_format(path)
    errors = info.value.errors()
    assert [(e["loc"], e["type"]) for e in errors] == [(("columns", "created"), "missing")]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("categories", "other"), "Other", "snake case"),
        (("categories", "map", "Bulky Items"), "waste.bulky", "not in categories.groups"),
        (("channel_map", "Call"), "telephone", "channel_map"),
        (("timezone",), "America/Nowhere", "unknown time zone"),
        (("grid_template",), "NC{nc}", "placeholder"),
        (("datetime_format",), "%m/%d", "round-trip"),
    ],
)
def test_format_rejects_bad_values(path: tuple[str, ...], value: str, message: str) -> None:
    data = _la_format_dict()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValidationError, match=message):
        ImportFormat.model_validate(data)


def test_grid_template_pads_and_refuses_bad_codes(fmt: ImportFormat) -> None:
    assert fmt.grid_code("55") == "NC055"
    assert fmt.grid_code("126") == "NC126"
    assert fmt.grid_code(" ") is None
    assert fmt.grid_code("5 5") is None


# ---- case lifecycle events -----------------------------------------------------------------

FIXTURES = ROOT / "tests" / "fixtures"
LA_COLUMNS = [
    "SRNumber",
    "CreatedDate",
    "UpdatedDate",
    "ClosedDate",
    "ServiceDate",
    "Status",
    "RequestType",
    "RequestSource",
    "NC",
    "Latitude",
    "Longitude",
    "Address",
]
# id, created, updated, closed, due (ServiceDate), status
LA_CASE_ROWS = [
    (
        "ONTIME",
        "01/02/2018 09:00:00 AM",
        "01/03/2018 10:00:00 AM",
        "01/03/2018 10:00:00 AM",
        "01/04/2018 12:00:00 AM",
        "Closed",
    ),
    (
        "LATE",
        "01/02/2018 09:30:00 AM",
        "01/09/2018 08:00:00 AM",
        "01/09/2018 08:00:00 AM",
        "01/04/2018 12:00:00 AM",
        "Closed",
    ),
    (
        "CANCEL",
        "01/02/2018 10:00:00 AM",
        "01/02/2018 03:00:00 PM",
        "01/02/2018 02:00:00 PM",
        "01/05/2018 12:00:00 AM",
        "Cancelled",
    ),
    ("REFER", "01/02/2018 10:30:00 AM", "01/02/2018 11:00:00 AM", "", "", "Referred Out"),
    (
        "OPEN",
        "01/02/2018 11:00:00 AM",
        "01/02/2018 11:00:00 AM",
        "",
        "01/08/2018 12:00:00 AM",
        "Open",
    ),
    (
        "DUEBEFORE",
        "01/02/2018 11:30:00 AM",
        "01/02/2018 01:00:00 PM",
        "01/02/2018 01:00:00 PM",
        "01/02/2018 12:00:00 AM",
        "Closed",
    ),
    (
        "BACKWARDS",
        "01/02/2018 12:00:00 PM",
        "01/02/2018 12:00:00 PM",
        "01/02/2018 11:00:00 AM",
        "",
        "Closed",
    ),
    ("ODD", "01/02/2018 12:30:00 PM", "", "", "01/03/2018 12:00:00 AM", "Pending"),
]
OPENING = ["register", "dispatch", "acknowledge"]
CLOSING = ["handle", "verify_pass", "close"]


def _la_frame(rows=LA_CASE_ROWS) -> pd.DataFrame:
    data = [
        (
            rid,
            created,
            updated,
            closed,
            due,
            status,
            "Bulky Items",
            "Call",
            "55",
            "",
            "",
            "1 MAIN ST",
        )
        for rid, created, updated, closed, due, status in rows
    ]
    return pd.DataFrame(data, columns=LA_COLUMNS)


def _by_case(batch: ReplayBatch) -> dict[str, list]:
    out: dict[str, list] = {}
    for e in batch.emissions:
        if e.stream == "case":
            out.setdefault(e.message.case_id, []).append(e.message)
    return out


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_case_events_off_by_default(fmt: ImportFormat) -> None:
    batch = replay_frame(_la_frame(), fmt)
    assert {e.stream for e in batch.emissions} == {"hotline"}
    assert batch.report.case_events == 0 and not batch.report.actions


def test_la_rows_drive_the_case_lifecycle(fmt: ImportFormat) -> None:
    batch = replay_frame(_la_frame(), fmt, cases=True)
    rep = batch.report
    assert rep.emitted == len(LA_CASE_ROWS) and not rep.invalid
    cases = _by_case(batch)
    seq = {cid: [ev.action for ev in evs] for cid, evs in cases.items()}
    assert seq == {
        "H-ONTIME": [*OPENING, "extend", *CLOSING],
        "H-LATE": [*OPENING, "extend", *CLOSING],
        "H-CANCEL": [*OPENING, "extend", "void"],
        "H-REFER": [*OPENING, "void"],
        "H-OPEN": [*OPENING, "extend"],
        "H-DUEBEFORE": [*OPENING, *CLOSING],  # due <= created: no extension
        "H-BACKWARDS": [*OPENING, *CLOSING],
        "H-ODD": [*OPENING, "extend"],  # unknown status: open
    }
    ontime = cases["H-ONTIME"]
    assert {ev.occurred_at for ev in ontime[:4]} == {_utc("2018-01-02T09:00:00-08:00")}
    assert ontime[3].deadline == _utc("2018-01-04T00:00:00-08:00")
    assert {ev.occurred_at for ev in ontime[4:]} == {_utc("2018-01-03T10:00:00-08:00")}
    assert all(ev.deadline is None for ev in ontime if ev.action != "extend")
    # void at closed, else updated (REFER has no ClosedDate)
    assert cases["H-CANCEL"][-1].occurred_at == _utc("2018-01-02T14:00:00-08:00")
    assert cases["H-REFER"][-1].occurred_at == _utc("2018-01-02T11:00:00-08:00")
    # a close before creation is moved to the creation time
    assert cases["H-BACKWARDS"][-1].occurred_at == _utc("2018-01-02T12:00:00-08:00")
    assert rep.actions == Counter(
        {
            "register": 8,
            "dispatch": 8,
            "acknowledge": 8,
            "extend": 5,
            "handle": 4,
            "verify_pass": 4,
            "close": 4,
            "void": 2,
        }
    )
    assert rep.case_events == sum(rep.actions.values()) == len(batch.emissions) - rep.emitted
    assert rep.statuses == Counter(
        {
            "Closed -> closed": 4,
            "Cancelled -> cancelled": 1,
            "Referred Out -> referred": 1,
            "Open -> open": 1,
            "Pending -> open (unknown)": 1,
        }
    )
    assert rep.due_not_after_created == 1 and rep.end_before_created == 1
    assert rep.unknown_statuses == Counter({"Pending": 1})
    text = report_text(rep)
    assert "case events 43" in text and "'Cancelled -> cancelled' 1" in text


def test_case_events_are_keyed_ordered_and_deterministic(fmt: ImportFormat) -> None:
    a = replay_frame(_la_frame(), fmt, cases=True)
    b = replay_frame(_la_frame(), fmt, cases=True)
    assert [e.payload for e in a.emissions] == [e.payload for e in b.emissions]
    instants = [e.record_ts.timestamp() for e in a.emissions]
    assert instants == sorted(instants)
    ids = set()
    for e in a.emissions:
        if e.stream != "case":
            continue
        ev = decode("case", e.payload)
        assert ev == e.message and e.key == ev.case_id.encode()
        assert e.record_ts == ev.occurred_at
        rid = ev.case_id.removeprefix("H-")
        assert ev.event_id == f"la311:{rid}:{ev.action}"
        ids.add(ev.event_id)
    assert len(ids) == a.report.case_events
    # per row, the request precedes its case events at the same instant
    first = a.emissions[0]
    assert first.stream == "hotline" and first.message.request_id == "ONTIME"


def _lifecycle(batch: ReplayBatch) -> dict[str, tuple]:
    """Each case through the real state machine, opened like the worker opens it."""
    out = {}
    for e in batch.emissions:
        if e.stream != "hotline":
            continue
        msg = e.message
        cid = f"H-{msg.request_id}"
        events = [CaseInput(cid, "accept", msg.occurred_at, source="hotline", event_id="open")]
        events += [from_case_event(ev) for ev in _by_case(batch).get(cid, [])]
        state, illegal = replay_case(events)
        assert illegal == [], illegal
        assert state is not None
        out[cid] = (state.stage, state.closed_at, state.stage_deadline)
    return out


def test_la_case_events_are_all_legal(fmt: ImportFormat) -> None:
    states = _lifecycle(replay_frame(_la_frame(), fmt, cases=True))
    assert {cid: s[0] for cid, s in states.items()} == {
        "H-ONTIME": "closed",
        "H-LATE": "closed",
        "H-CANCEL": "voided",
        "H-REFER": "voided",
        "H-OPEN": "acknowledged",
        "H-DUEBEFORE": "closed",
        "H-BACKWARDS": "closed",
        "H-ODD": "acknowledged",
    }
    assert states["H-OPEN"][2] == _utc("2018-01-08T00:00:00-08:00")  # the handling deadline
    assert states["H-BACKWARDS"][1] == _utc("2018-01-02T12:00:00-08:00")


# expected per city fixture: case -> (actions, stage after the state machine, due or None)
CITY_CASES = {
    "nyc311": {
        "H-90000001": ([*OPENING, "extend", *CLOSING], "closed", "2018-01-02T17:00:00-05:00"),
        "H-90000002": ([*OPENING, "extend", *CLOSING], "closed", "2018-01-05T10:00:00-05:00"),
        "H-90000003": ([*OPENING, "extend"], "acknowledged", "2018-01-17T08:15:00-05:00"),
        "H-90000004": ([*OPENING, *CLOSING], "closed", None),  # due == created: ignored
        "H-90000005": (OPENING, "acknowledged", None),  # Assigned: still open
    },
    "boston311": {
        "H-101005000001": ([*OPENING, "extend", *CLOSING], "closed", "2024-01-03T08:30:00-05:00"),
        "H-101005000002": ([*OPENING, "extend", *CLOSING], "closed", "2024-01-04T09:00:00-05:00"),
        "H-101005000003": ([*OPENING, "extend"], "acknowledged", "2024-01-05T11:20:00-05:00"),
        "H-101005000004": ([*OPENING, *CLOSING], "closed", None),  # no sla_target_dt
    },
    "baltimore311": {  # local Eastern times (EDT), void-like "(Duplicate)" statuses
        "H-18-00000001": ([*OPENING, "extend", *CLOSING], "closed", "2018-04-19T11:11:26-04:00"),
        "H-18-00000002": ([*OPENING, "extend", "void"], "voided", "2018-04-16T13:06:56-04:00"),
        "H-18-00000003": ([*OPENING, "void"], "voided", None),  # Open (Duplicate), no due
        "H-18-00000004": ([*OPENING, "extend"], "acknowledged", "2018-04-28T08:00:00-04:00"),
        "H-18-00000005": ([*OPENING, "extend", *CLOSING], "closed", "2018-04-17T22:00:00-04:00"),
        "H-18-00000006": ([*OPENING, "extend", "void"], "voided", "2018-04-25T14:15:00-04:00"),
    },
}


@pytest.mark.parametrize("name", sorted(CITY_CASES))
def test_other_city_exports_map_declaratively(name: str) -> None:
    fmt = load_format(name)
    batch = read_export(FIXTURES / f"{name}_sample.csv", fmt, cases=True)
    rep = batch.report
    assert not rep.invalid and not rep.unknown_categories and not rep.unknown_statuses
    assert not rep.bad_times
    cases = _by_case(batch)
    states = _lifecycle(batch)
    want = CITY_CASES[name]
    assert set(cases) == set(want) == set(states)
    for cid, (actions, stage, due) in want.items():
        evs = cases[cid]
        assert [ev.action for ev in evs] == actions, cid
        assert all(ev.event_id == f"{name}:{cid[2:]}:{ev.action}" for ev in evs)
        deadlines = [ev.deadline for ev in evs if ev.action == "extend"]
        assert deadlines == ([_utc(due)] if due else []), cid
        assert states[cid][0] == stage, cid


def test_baltimore_reads_a_real_export_layout() -> None:
    fmt = load_format("baltimore311")
    batch = read_export(FIXTURES / "baltimore311_sample.csv", fmt, cases=True)
    cases = _by_case(batch)
    requests = {e.message.request_id: e.message for e in batch.emissions if e.stream == "hotline"}
    assert requests["18-00000002"].occurred_at == _utc("2018-04-12T13:06:56-04:00")  # PM
    assert requests["18-00000002"].category == "facilities.pothole"  # "TRM-Pothole Repair"
    assert requests["18-00000006"].category == "sanitation.rodents"  # by regex
    assert {r.channel for r in requests.values()} == {"phone", "other"}
    assert not batch.report.unknown_channels and not batch.report.unknown_statuses
    assert cases["H-18-00000002"][-1].occurred_at == _utc("2018-04-13T10:00:00-04:00")
    assert cases["H-18-00000003"][-1].occurred_at == _utc("2018-04-13T11:00:00-04:00")
    assert {"duplicate", "transferred", "cancelled", "referred"} == VOID_LIKE


def test_unparseable_optional_times_are_counted(fmt: ImportFormat) -> None:
    rows = [("X1", "01/02/2018 09:00:00 AM", "soon", "", "someday", "Closed")]
    batch = replay_frame(_la_frame(rows), fmt, cases=True)
    rep = batch.report
    assert rep.bad_times == Counter({"updated": 1, "due": 1}) and rep.no_end_time == 1
    assert [ev.action for ev in _by_case(batch)["H-X1"]] == OPENING


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"due": "%d"}, "round-trip"),
        ({"caller": "%Y"}, "datetime_formats"),
    ],
)
def test_per_column_datetime_formats_are_validated(overrides, message: str) -> None:
    data = yaml.safe_load((FORMATS_DIR / "la311.yaml").read_text())
    data["datetime_formats"] = overrides
    with pytest.raises(ValidationError, match=message):
        ImportFormat.model_validate(data)


def test_per_column_format_needs_its_column() -> None:
    data = yaml.safe_load((FORMATS_DIR / "la311.yaml").read_text())
    data["columns"]["due"] = None
    data["datetime_formats"] = {"due": "%Y-%m-%d %H:%M:%S"}
    with pytest.raises(ValidationError, match="columns.due"):
        ImportFormat.model_validate(data)
