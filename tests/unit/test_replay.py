"""Replay of LA 311 exports: the declarative format, the import report and the LA city config."""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from gridpulse.city import load_city
from sources.formats import FORMATS_DIR, ImportFormat, load_format
from sources.la_city import build_city, read_frames
from sources.replay import MissingColumns, ReplayBatch, parse_local, read_export, report_text
from streams.events import HotlineRequest, decode

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
