"""Import formats as real exports need them: time layouts, category patterns, grid values,
the unknown-grid path, the bundled formats and the Open311 GeoReport v2 reader."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from core.city import load_city
from sources.formats import (
    FORMATS_DIR,
    ISO8601,
    CategoryMapping,
    ImportFormat,
    check_datetime_format,
    load_format,
    parse_time,
)
from sources.open311 import Open311Error, page_url, read_requests, requests_frame
from sources.replay import (
    GRID_BY_CODE,
    GRID_BY_POINT,
    GRID_NONE,
    GRID_UNKNOWN_DEAD_LETTER,
    GRID_UNKNOWN_LOCATED,
    read_export,
    replay_frame,
    report_text,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
NY = ZoneInfo("America/New_York")
BUNDLED = sorted(p.stem for p in FORMATS_DIR.glob("*.yaml"))


# ---- time layouts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt",
    [
        "%m/%d/%Y %I:%M:%S %p",  # LA, NYC, Baltimore
        "%m/%d/%y %H:%M",  # minute precision
        "%Y-%m-%d",  # date only
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y/%m/%d %H:%M:%S+00",  # a literal suffix
        "%d %b %Y %H:%M:%S.%f",
        ISO8601,
    ],
)
def test_real_time_layouts_are_accepted(fmt: str) -> None:
    assert check_datetime_format(fmt) == fmt


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("%m/%d/%Y %H:%M:%S %p", "mixes %H with %p"),  # 01:06:56 PM would read as 01:06
        ("%m/%d/%Y %I:%M:%S", "%I without %p"),  # afternoons lost
        ("%m/%d", "whole date"),
        ("%d/%d/%Y", "whole date"),
        ("%Y-%m-%d %M", "skips a field"),
        ("%Y-%m-%d %H:%S", "skips a field"),
        ("%Y-%m-%d %Q", "unsupported directive"),
        ("%-m/%-d/%Y", "unsupported directive"),  # glibc's no-padding flag
        ("%Y-%m-%d %H:%M:%S %Z", "unsupported directive"),
        ("%m/%d/%Y %I:%M %p %d", "round-trip"),  # a directive strptime refuses twice
        ("%Y-%m-%d %I:%M:%S %p %H", "mixes %H with %p"),
    ],
)
def test_bad_time_layouts_are_rejected(fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_datetime_format(fmt)


def test_round_trip_samples_cover_afternoons_midnight_and_noon() -> None:
    from sources.formats import ROUND_TRIP_SAMPLES

    hours = {t.hour for t in ROUND_TRIP_SAMPLES}
    assert {0, 12} <= hours and any(h > 12 for h in hours) and any(0 < h < 12 for h in hours)
    assert any(t.day > 12 for t in ROUND_TRIP_SAMPLES)  # a %d/%m swap cannot round-trip


@pytest.mark.parametrize(
    ("text", "fmt", "want"),
    [
        ("04/12/2018 01:06:56 PM", "%m/%d/%Y %I:%M:%S %p", "2018-04-12T13:06:56-04:00"),
        ("04/12/2018 12:00:01 AM", "%m/%d/%Y %I:%M:%S %p", "2018-04-12T00:00:01-04:00"),
        ("04/12/18 13:05", "%m/%d/%y %H:%M", "2018-04-12T13:05:00-04:00"),
        ("2018-04-12", "%Y-%m-%d", "2018-04-12T00:00:00-04:00"),
        ("2021-01-04T14:05:49-05:00", ISO8601, "2021-01-04T14:05:49-05:00"),
        ("2021-01-04T19:05:49Z", ISO8601, "2021-01-04T14:05:49-05:00"),
        ("2021-01-04T14:05:49", ISO8601, "2021-01-04T14:05:49-05:00"),  # naive: local
        ("2021-01-04", ISO8601, "2021-01-04T00:00:00-05:00"),
        ("2021-01-04T10:00:00+01:00", "%Y-%m-%dT%H:%M:%S%z", "2021-01-04T04:00:00-05:00"),
    ],
)
def test_parse_time_per_layout(text: str, fmt: str, want: str) -> None:
    got = parse_time(text, fmt, NY)
    assert got == datetime.fromisoformat(want)
    assert got.utcoffset() == datetime.fromisoformat(want).utcoffset()  # in the format's zone


def test_parse_time_rejects_garbage() -> None:
    for text, fmt in (("soon", ISO8601), ("13/45/2018", "%m/%d/%Y"), ("", ISO8601)):
        with pytest.raises(ValueError):
            parse_time(text, fmt, NY)


def _fmt(**changes: object) -> dict:
    data = yaml.safe_load((FORMATS_DIR / "la311.yaml").read_text())
    data.update(changes)
    return data


def test_per_column_layouts_load_and_parse() -> None:
    fmt = ImportFormat.model_validate(
        _fmt(datetime_formats={"due": "%Y-%m-%d", "closed": ISO8601, "updated": "%m/%d/%y %H:%M"})
    )
    assert fmt.time_format("due") == "%Y-%m-%d"
    assert fmt.time_format("created") == fmt.datetime_format
    with pytest.raises(ValidationError, match="mixes %H with %p"):
        ImportFormat.model_validate(_fmt(datetime_formats={"closed": "%m/%d/%Y %H:%M:%S %p"}))


# ---- categories ------------------------------------------------------------------------------


def _mapping(**changes: object) -> CategoryMapping:
    data: dict = {
        "groups": {"roads": "Roads", "misc": "Other"},
        "map": {"TRM-Pothole": "roads.pothole_exact"},
        "patterns": [
            {"prefix": "TRM-Pothole", "code": "roads.pothole"},
            {"regex": "(?i).*street ?light.*", "code": "roads.light", "name": "Light"},
        ],
        "other": "misc.other",
    }
    data.update(changes)
    return CategoryMapping.model_validate(data)


def test_category_exact_then_first_pattern_then_none() -> None:
    m = _mapping()
    assert m.code_for("TRM-Pothole") == "roads.pothole_exact"  # exact wins
    assert m.code_for("TRM-Pothole Repair") == "roads.pothole"
    assert m.code_for("Streetlight out") == "roads.light"
    assert m.code_for("STREET LIGHT") == "roads.light"
    assert m.code_for("Light street") is None  # a regex must match the whole value
    assert m.subcategory_names() == {
        "roads.pothole_exact": "TRM-Pothole",
        "roads.pothole": "TRM-Pothole",
        "roads.light": "Light",
        "misc.other": "Other",
    }


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        ([{"prefix": "A", "regex": "B", "code": "roads.x"}], "exactly one of prefix or regex"),
        ([{"code": "roads.x"}], "exactly one of prefix or regex"),
        ([{"regex": "(", "code": "roads.x"}], "does not compile"),
        ([{"prefix": "A", "code": "water.x"}], "not in categories.groups"),
        ([{"prefix": "A", "code": "Roads X"}], "snake case"),
    ],
)
def test_bad_category_patterns_are_rejected(patterns: list, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _mapping(patterns=patterns)


def test_categories_need_a_map_or_patterns() -> None:
    with pytest.raises(ValidationError, match="map or patterns"):
        _mapping(map={}, patterns=[])


# ---- grid values and the unknown-grid path ---------------------------------------------------


def test_grid_value_pattern_extracts_the_value() -> None:
    boston = load_format("boston311")
    assert [boston.grid_code(v) for v in ("Ward 3", "03", "3", "Ward 12", "x", "")] == [
        "WARD03",
        "WARD03",
        "WARD03",
        "WARD12",
        None,
        None,
    ]
    for bad, message in (("Ward \\d+", "exactly one group"), ("(", "does not compile")):
        with pytest.raises(ValidationError, match=message):
            ImportFormat.model_validate(_fmt(grid_value_pattern=bad))


def test_locate_needs_coordinates() -> None:
    data = _fmt(unknown_grid="locate")
    data["columns"] = {**data["columns"], "lat": None, "lon": None}
    with pytest.raises(ValidationError, match="unknown_grid: locate needs"):
        ImportFormat.model_validate(data)


LA_ROW = {
    "SRNumber": "",
    "CreatedDate": "01/02/2018 09:00:00 AM",
    "UpdatedDate": "",
    "ClosedDate": "",
    "ServiceDate": "",
    "Status": "Open",
    "RequestType": "Bulky Items",
    "RequestSource": "Call",
    "NC": "",
    "Latitude": "",
    "Longitude": "",
    "Address": "",
}


@pytest.mark.parametrize("policy", ["dead_letter", "locate"])
def test_unknown_grid_takes_the_formats_path(policy: str) -> None:
    fmt = ImportFormat.model_validate(_fmt(unknown_grid=policy))
    city = load_city(ROOT / "config" / "cities" / "la.yaml")
    point = {"Latitude": "34.05", "Longitude": "-118.25"}
    rows = [
        {**LA_ROW, "SRNumber": "KNOWN", "NC": "46", **point},  # NC046 is an LA grid
        {**LA_ROW, "SRNumber": "UNKNOWN_PT", "NC": "999", **point},
        {**LA_ROW, "SRNumber": "UNKNOWN_NOPT", "NC": "999"},
        {**LA_ROW, "SRNumber": "POINT", **point},
        {**LA_ROW, "SRNumber": "NOTHING"},
    ]
    batch = replay_frame(pd.DataFrame(rows), fmt, cases=True, city=city)
    sent = {e.message.request_id: e.message.grid for e in batch.emissions if e.stream == "hotline"}
    rep = batch.report
    unknown_pt = GRID_UNKNOWN_LOCATED if policy == "locate" else GRID_UNKNOWN_DEAD_LETTER
    want = Counter([GRID_BY_CODE, unknown_pt, GRID_UNKNOWN_DEAD_LETTER, GRID_BY_POINT, GRID_NONE])
    assert rep.grid_paths == want
    assert sent["KNOWN"] == "NC046" and sent["POINT"] is None and sent["UNKNOWN_NOPT"] == "NC999"
    assert sent["UNKNOWN_PT"] == (None if policy == "locate" else "NC999")
    dead = 1 if policy == "locate" else 2
    assert rep.cases_skipped == dead  # no case events for requests bound for dead letters
    cased = {e.message.case_id for e in batch.emissions if e.stream == "case"}
    assert ("H-UNKNOWN_PT" in cased) == (policy == "locate") and "H-UNKNOWN_NOPT" not in cased
    assert rep.unknown_grid_codes == Counter({"NC999": 2})
    assert f"'{GRID_UNKNOWN_DEAD_LETTER}' {dead}" in report_text(rep)


def test_without_a_city_every_code_goes_by_code() -> None:
    rows = [{**LA_ROW, "SRNumber": "A", "NC": "999"}]
    rep = replay_frame(pd.DataFrame(rows), load_format("la311")).report
    assert rep.grid_paths == Counter({GRID_BY_CODE: 1})


# ---- the bundled formats ---------------------------------------------------------------------


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_formats_say_what_they_were_checked_against(name: str) -> None:
    fmt = load_format(name)
    assert len(fmt.checked_against) > 40, name


@pytest.mark.parametrize("name", ["baltimore311", "boston311", "nyc311"])
def test_bundled_samples_read_without_unknowns(name: str) -> None:
    batch = read_export(FIXTURES / f"{name}_sample.csv", load_format(name), cases=True)
    rep = batch.report
    assert rep.emitted == rep.rows and not rep.invalid
    assert not rep.unknown_statuses and not rep.unknown_channels and not rep.bad_times


def test_baltimore_real_values_map() -> None:
    fmt = load_format("baltimore311")
    assert fmt.categories.code_for("TRM-Pothole Repair") == "facilities.pothole"
    assert fmt.categories.code_for("BGE-StLight(s) Out") == "facilities.streetlight"
    assert fmt.categories.code_for("SW-Cleaning") == "sanitation.other"
    assert {fmt.status_map[s] for s in ("Open (Duplicate)", "New (Duplicate)")} == {"duplicate"}
    assert fmt.status_map["In Progress"] == "open"
    assert {"API", "Internal", "Mail", "System"} <= set(fmt.channel_map)
    when = parse_time("04/12/2018 11:11:26 AM", fmt.time_format("created"), fmt.tz)
    assert when.astimezone(UTC) == datetime(2018, 4, 12, 15, 11, 26, tzinfo=UTC)


# ---- Open311 GeoReport v2 --------------------------------------------------------------------


def _request(n: int, **extra: object) -> dict:
    return {
        "service_request_id": f"SR{n}",
        "status": "closed" if n % 2 else "open",
        "service_name": "Pothole in Street" if n % 3 else "Graffiti Removal",
        "service_code": "4fd3b656e750846c53000004",
        "requested_datetime": f"2014-05-{n:02d}T19:02:21-05:00",
        "updated_datetime": f"2014-05-{n + 1:02d}T10:15:40-05:00",
        "expected_datetime": f"2014-05-{n + 3:02d}T19:02:21-05:00",
        "address": f"{n} W 81ST ST",
        "lat": 41.74 + n / 1000,
        "long": -87.65,
        **extra,
    }


REQUESTS = [_request(n) for n in range(1, 8)]


def test_open311_file_both_layouts(tmp_path: Path) -> None:
    fmt = load_format("open311")
    for doc in (REQUESTS, {"service_requests": REQUESTS}):
        path = tmp_path / "requests.json"
        path.write_text(json.dumps(doc))
        batch = read_export(path, fmt, cases=True)
        rep = batch.report
        assert rep.emitted == 7 and not rep.invalid and not rep.unknown_statuses
        assert rep.grid_paths == Counter({GRID_BY_POINT: 7})
        msgs = {e.message.request_id: e.message for e in batch.emissions if e.stream == "hotline"}
        assert msgs["SR1"].occurred_at == datetime(2014, 5, 2, 0, 2, 21, tzinfo=UTC)
        assert msgs["SR1"].category == "facilities.pothole"
        assert msgs["SR3"].category == "sanitation.graffiti"
        assert msgs["SR1"].location is not None and msgs["SR1"].address == "1 W 81ST ST"
        events = {(e.message.case_id, e.message.action): e.message for e in batch.emissions
                  if e.stream == "case"}  # fmt: skip
        assert events[("H-SR1", "extend")].deadline == datetime(
            2014, 5, 5, 0, 2, 21, tzinfo=UTC
        )  # expected_datetime is the deadline
        assert events[("H-SR1", "close")].occurred_at == datetime(
            2014, 5, 2, 15, 15, 40, tzinfo=UTC
        )
        assert ("H-SR2", "close") not in events  # open


def test_open311_rejects_other_documents(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    for text in ('{"requests": []}', "[1, 2]", "not json"):
        path.write_text(text)
        with pytest.raises(Open311Error):
            read_requests(str(path))


def test_open311_frame_has_every_field_as_text() -> None:
    df = requests_frame([{"service_request_id": 7, "lat": 1.5, "extra": None}])
    assert df.loc[0, "service_request_id"] == "7" and df.loc[0, "lat"] == "1.5"
    assert df.loc[0, "status"] == "" and df.loc[0, "extra"] == ""


class _Pages(BaseHTTPRequestHandler):
    pages: list[list[dict]] = []
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).seen.append(self.path)
        page = int(parse_qs(urlsplit(self.path).query).get("page", ["1"])[0])
        body = self.pages[page - 1] if page <= len(self.pages) else []
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/open311/v2/requests.json"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_open311_paged_url(server: str) -> None:
    _Pages.pages, _Pages.seen = [REQUESTS[:3], REQUESTS[3:6], REQUESTS[6:]], []
    got = read_requests(server + "?jurisdiction_id=city.gov", page_size=3)
    assert [r["service_request_id"] for r in got] == [f"SR{n}" for n in range(1, 8)]
    assert len(_Pages.seen) == 4  # three pages and the empty fourth
    assert all("jurisdiction_id=city.gov" in p and "page_size=3" in p for p in _Pages.seen)
    batch = read_export(server, load_format("open311"))
    assert batch.report.emitted == 7


def test_open311_server_that_ignores_paging_is_read_once(server: str) -> None:
    _Pages.pages, _Pages.seen = [REQUESTS[:3]] * 5, []
    assert len(read_requests(server)) == 3 and len(_Pages.seen) == 2


def test_page_url_keeps_other_parameters() -> None:
    url = page_url("http://h/requests.json?status=open&page=9", 2, 50)
    assert parse_qs(urlsplit(url).query) == {
        "status": ["open"],
        "page": ["2"],
        "page_size": ["50"],
    }
