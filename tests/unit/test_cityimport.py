"""``gridpulse city import``: a city from grid boundaries or from an export, every check with
its located finding, optional polygons, and a format checked against a city."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from shapely.geometry import Point, shape

from core.city import City, load_city
from gridpulse.cli import main as cli
from infra.ports import free_port
from sources.cityimport import (
    CityMeta,
    ExportLevels,
    PropertyMap,
    city_from_export,
    city_from_geojson,
    dump_city,
    pairing_problems,
)
from sources.formats import ImportFormat, load_format
from sources.replay import grid_problems, read_export

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
META = CityMeta(code="newtown", name="Newtown")
PROPS = PropertyMap(
    grid_code="GID",
    grid_name="GNAME",
    community_code="COMM",
    street_code="STREET",
    district_code="DIST",
    owner="OWNER",
    households="HH",
)


@pytest.fixture(scope="module")
def fmt() -> ImportFormat:
    return load_format("baltimore311")


def square(x: float, y: float, size: float = 1.0) -> dict:
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def feature(code: str | None, geometry: dict | None, **props: object) -> dict:
    base = {"GID": code, "COMM": "C1", "STREET": "S1", "DIST": "D1", "HH": "300"}
    return {"type": "Feature", "properties": {**base, **props}, "geometry": geometry}


def blocks(n: int = 3) -> list[dict]:
    """An n x n block of unit squares, codes G<i><j>, communities per column."""
    return [
        feature(f"G{i}{j}", square(i, j), COMM=f"C{i}", GNAME=f"Grid {i}{j}")
        for i in range(n)
        for j in range(n)
    ]


def build(features: list[dict], fmt: ImportFormat, **kw: object):
    return city_from_geojson(features, fmt, META, PROPS, **kw)  # type: ignore[arg-type]


def messages(result) -> list[str]:
    return [str(f) for f in result.findings]


def test_clean_boundaries_build_a_city(fmt: ImportFormat) -> None:
    feats = blocks()
    feats[0]["properties"].update(OWNER="Ms Li", HH="412")
    result = build(feats, fmt)
    assert result.findings == [] and result.city is not None
    city = result.city
    grids = {g.code: g for g in city.iter_grids()}
    assert len(grids) == 9 and grids["G00"].owner == "Ms Li" and grids["G00"].households == 412
    assert grids["G01"].owner == "owner-G01" and grids["G01"].name == "Grid 01"
    assert city.grid_paths["G21"].community == "C2" and city.grid_paths["G21"].district == "D1"
    assert city.locator.locate(2.5, 1.5) == "G21"
    assert city.timezone == fmt.timezone and city.calendar.timezone == fmt.timezone
    # categories are the format's, declared once there
    assert set(city.subcategories) == set(fmt.categories.subcategory_names())
    again = City.model_validate(yaml.safe_load(dump_city(city)))
    assert again == city


def test_self_intersection_is_repaired_and_reported(fmt: ImportFormat) -> None:
    feats = blocks()
    # G11 with a tiny bow-tie loop at its north-west corner (0.04 % of the area)
    loop = [[1, 2], [1.02, 2.02], [0.98, 2.02], [1, 2]]
    feats[4]["geometry"]["coordinates"] = [[[1, 1], [2, 1], [2, 2], *loop, [1, 1]]]
    result = build(feats, fmt)
    assert result.city is not None
    [finding] = result.findings
    assert finding.severity == "repaired" and finding.where == "feature 5 (grid G11)"
    assert "Self-intersection" in finding.message and "make_valid" in finding.message
    g11 = next(g for g in result.city.iter_grids() if g.code == "G11")
    assert shape(g11.polygon.model_dump()).is_valid
    assert shape(g11.polygon.model_dump()).area == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        (  # a bow tie of two equal halves: no safe repair
            {"type": "Polygon", "coordinates": [[[5, 0], [6, 1], [6, 0], [5, 1], [5, 0]]]},
            "2 separate parts (50.0% of the area outside the largest)",
        ),
        (
            {
                "type": "MultiPolygon",
                "coordinates": [square(5, 0)["coordinates"], square(7, 0)["coordinates"]],
            },
            "2 separate parts",
        ),  # fmt: skip
        ({"type": "LineString", "coordinates": [[5, 0], [6, 1]]}, "LineString is not a polygon"),
        (None, "no geometry"),
        (
            {"type": "Polygon", "coordinates": [[[5, 0], [6, 0], [7, 0], [5, 0]]]},
            "polygon has no area",
        ),
    ],
)
def test_unusable_geometry_is_an_error(fmt: ImportFormat, geometry, message: str) -> None:
    result = build([*blocks(), feature("BAD", geometry)], fmt)
    assert result.city is None
    assert [f"error: feature 10 (grid BAD): {message}" in m for m in messages(result)] == [True]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (None, "feature 10: no 'GID' property"),
        ("a b", "feature 10 (grid a b): grid code 'a b' is not a usable code"),
        ("UNLOCATED", "grid code 'UNLOCATED' is not a usable code"),
        ("G01", "feature 10 (grid G01): duplicate grid code (first at feature 2 (grid G01))"),
    ],
)
def test_bad_codes_are_located(fmt: ImportFormat, code: str | None, message: str) -> None:
    result = build([*blocks(), feature(code, square(9, 9))], fmt)
    assert result.city is None
    assert any(message in m for m in messages(result)), messages(result)


def test_overlaps_above_the_tolerance(fmt: ImportFormat) -> None:
    sliver = build([*blocks(), feature("X", square(3 - 0.001, 0))], fmt)  # 0.1 % of X
    assert sliver.city is not None and sliver.findings == []
    big = build([*blocks(), feature("X", square(2.5, 0))], fmt)
    assert big.city is None
    [finding] = big.findings
    assert finding.where == "grids G20 and X"
    assert "overlap by 50.0% of the smaller grid near (2.75" in finding.message


def test_gaps_above_the_tolerance(fmt: ImportFormat) -> None:
    holed = [f for f in blocks() if f["properties"]["GID"] != "G11"]
    result = build(holed, fmt)
    assert result.city is None
    [finding] = result.findings
    assert finding.where == "gap near (1.500000, 1.500000)" and "100.0%" in finding.message
    feats = blocks()
    feats[4]["geometry"] = square(1.05, 1.05, 0.95)
    small = feats  # G11 shrunk to its north-east corner: an L-shaped gap of 9.75 % of a grid
    tight = city_from_geojson(small, fmt, CityMeta(code="t", name="T", tolerance=0.0), PROPS)
    assert any("gap near" in m for m in messages(tight))
    loose = city_from_geojson(small, fmt, CityMeta(code="t", name="T", tolerance=0.2), PROPS)
    assert not any("gap near" in m for m in messages(loose))


def test_grid_outside_its_parent(fmt: ImportFormat) -> None:
    parents = [
        {"type": "Feature", "properties": {"code": "C0"}, "geometry": square(0, 0, 3)},
        {"type": "Feature", "properties": {"code": "D1"}, "geometry": square(0, 0, 2.5)},
    ]
    feats = blocks()
    feats[0]["geometry"] = square(-0.5, 0)  # G00: half outside community C0 (x < 0)
    feats[0]["properties"]["GID"] = "G00"
    result = build(feats, fmt, parents=parents)
    assert result.city is None
    found = messages(result)
    assert "error: feature 1 (grid G00): 50.0% of the grid lies outside its community 'C0'" in found
    # out of district D1 (0..2.5 squared): the x=2 column, the y=2 row and G00 (x < 0)
    outside_d1 = sorted(m.split("grid ")[1][:3] for m in found if "district 'D1'" in m)
    assert outside_d1 == ["G00", "G02", "G12", "G20", "G21", "G22"]


def test_a_community_under_two_streets(fmt: ImportFormat) -> None:
    feats = blocks()
    feats[8]["properties"]["STREET"] = "S2"  # G22 puts community C2 under S2
    result = build(feats, fmt)
    assert result.city is None
    assert messages(result) == [
        "error: feature 9 (grid G22): community 'C2' is under street 'S2' here but under "
        "'S1' at feature 7 (grid G20)"
    ]


def test_households_must_be_numbers(fmt: ImportFormat) -> None:
    feats = blocks()
    feats[2]["properties"]["HH"] = "many"
    result = build(feats, fmt)
    assert messages(result) == ["error: feature 3 (grid G02): households 'many' not a number"]


def test_missing_levels_default(fmt: ImportFormat) -> None:
    feats = [feature(f"G{i}", square(i, 0), COMM=None, STREET=None, DIST=None) for i in range(3)]
    result = build(feats, fmt)
    assert result.city is not None
    path = result.city.grid_paths["G1"]
    assert (path.district, path.street, path.community) == ("ALL", "ALL", "G1")


# ---- from an export ------------------------------------------------------------------------


def test_city_from_an_export(fmt: ImportFormat) -> None:
    df = pd.read_csv(FIXTURES / "baltimore311_sample.csv", dtype=str, keep_default_na=False)
    extra = df.iloc[[0]].assign(ServiceRequestNum="X", CouncilDistrict="7", Latitude="")
    junk = df.iloc[[0]].assign(ServiceRequestNum="Y", CouncilDistrict="7 8")
    df = pd.concat([df, extra, junk], ignore_index=True)
    df["Agency"] = df["Agency"].where(df["ServiceRequestNum"] != "X", "Public Works")
    result = city_from_export(df, fmt, META, ExportLevels(district="Agency"))
    assert result.city is not None, result.report()
    city = result.city
    grids = {g.code: g for g in city.iter_grids()}
    assert set(grids) == {"CD01", "CD07", "CD09", "CD11", "CD12"}
    assert grids["CD07"].polygon is None  # no located request: reached by code only
    assert city.grid_paths["CD11"].district == "TRANSPORTATION"  # the majority agency (2 of 3)
    assert city.grid_paths["CD07"].district == "PUBLIC_WORKS"
    for code in ("CD01", "CD09", "CD11", "CD12"):
        rows = df[df["CouncilDistrict"] == code[2:].lstrip("0")]
        median = Point(
            rows["Longitude"].astype(float).median(), rows["Latitude"].astype(float).median()
        )
        assert shape(grids[code].polygon.model_dump()).covers(median)
        assert city.locator.locate(median.x, median.y) == code
    found = messages(result)
    assert "warning: grid CD07: no located request: no polygon (code only)" in found
    assert "warning: CouncilDistrict='7 8': 1 rows: renders to no grid code" in found


def test_export_without_a_grid_column_is_refused() -> None:
    with pytest.raises(ValueError, match="maps no grid column"):
        city_from_export(pd.DataFrame({"x": []}), load_format("open311"), META)


def test_polygons_are_optional(tmp_path: Path, fmt: ImportFormat) -> None:
    city = build(blocks(), fmt).city
    assert city is not None
    data = city.model_dump(mode="json")
    del data["districts"][0]["streets"][0]["communities"][0]["grids"][0]["polygon"]  # G00
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    loaded = load_city(path)
    assert next(loaded.iter_grids()).polygon is None
    assert loaded.locator.locate(0.5, 0.5) is None and loaded.locator.locate(1.5, 0.5) == "G10"
    assert "polygon" not in dump_city(loaded).split("- code: G01")[0].split("- code: G00")[1]


# ---- a format against a city ---------------------------------------------------------------


def test_pairing_problems(fmt: ImportFormat) -> None:
    city = build(blocks(), fmt).city
    assert city is not None and pairing_problems(fmt, city) == []
    la = load_city(ROOT / "config" / "cities" / "la.yaml")
    problems = pairing_problems(fmt, la)
    assert "format 'baltimore311' emits category 'facilities.pothole': not in city la" in problems
    data = city.model_dump(mode="json")
    data["categories"][0]["subcategories"][0]["streams"] = ["inspector"]
    inspector_only = City.model_validate(data)
    code = data["categories"][0]["subcategories"][0]["code"]
    problems = pairing_problems(fmt, inspector_only)
    assert problems == [f"category {code!r} of city newtown is not fed by the hotline"]


def test_grid_problems(fmt: ImportFormat) -> None:
    la = load_city(ROOT / "config" / "cities" / "la.yaml")
    report = read_export(FIXTURES / "baltimore311_sample.csv", fmt, city=la).report
    [problem] = grid_problems(report, la)
    assert "none of the 6 rows' grid codes is a grid of city la" in problem
    assert "export: CD01, CD09, CD11" in problem and "grid_template" in problem
    df = pd.read_csv(FIXTURES / "baltimore311_sample.csv", dtype=str, keep_default_na=False)
    own = city_from_export(df, fmt, META).city
    assert own is not None
    ok = read_export(FIXTURES / "baltimore311_sample.csv", fmt, city=own).report
    assert grid_problems(ok, own) == [] and ok.grid_paths == {"code": 6}


# ---- the commands --------------------------------------------------------------------------


def test_city_import_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "grids.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": blocks()}))
    out = tmp_path / "newtown.yaml"
    args = ["city", "import", "--geojson", str(src), "--format", "baltimore311",
            "--code", "newtown", "--grid-code", "GID", "--community-code", "COMM",
            "--out", str(out)]  # fmt: skip
    assert cli(args) == 0
    assert f"wrote {out}" in capsys.readouterr().err
    city = load_city(out)
    assert city.code == "newtown" and city.grid_paths["G12"].community == "C1"
    header = "# Generated by: gridpulse city import --format baltimore311 --code newtown"
    assert out.read_text().startswith(f"{header} --geojson {src} --grid-code GID")

    broken = {"type": "FeatureCollection", "features": [*blocks(), feature("G00", square(9, 9))]}
    src.write_text(json.dumps(broken))
    mapping = tmp_path / "map.yaml"
    mapping.write_text(yaml.safe_dump({"properties": {"grid_code": "GID"}}))
    out.unlink()
    args = ["city", "import", "--geojson", str(src), "--format", "baltimore311", "--code",
            "newtown", "--mapping", str(mapping), "--out", str(out)]  # fmt: skip
    assert cli(args) == 1 and not out.exists()
    err = capsys.readouterr().err
    assert "error: feature 10 (grid G00): duplicate grid code" in err and "no city" in err


def _export_city(tmp_path: Path) -> Path:
    out = tmp_path / "balt.yaml"
    args = ["city", "import", "--export", str(FIXTURES / "baltimore311_sample.csv"),
            "--format", "baltimore311", "--code", "balt", "--out", str(out)]  # fmt: skip
    assert cli(args) == 0
    return out


def test_replay_dry_run_needs_no_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    city = _export_city(tmp_path)
    monkeypatch.setenv("GRIDPULSE_BROKER", f"kafka://127.0.0.1:{free_port()}")
    csv = str(FIXTURES / "baltimore311_sample.csv")
    capsys.readouterr()
    assert cli(["--city", str(city), "replay", csv, "--format", "baltimore311", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "rows 6, emitted 6" in out and "grid paths: 'code' 6" in out
    assert "format and city agree" in out and "dry run: nothing published" in out

    assert cli(["--city", "la", "replay", csv, "--format", "baltimore311", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "format/city problems" in err and "not in city la" in err


def test_replay_with_the_broker_down_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    city = _export_city(tmp_path)
    port = free_port()
    monkeypatch.setenv("GRIDPULSE_BROKER", f"kafka://127.0.0.1:{port}")
    csv = str(FIXTURES / "baltimore311_sample.csv")
    capsys.readouterr()
    assert cli(["--city", str(city), "replay", csv, "--format", "baltimore311"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gridpulse replay: error: no broker reachable at 127.0.0.1:{port}")
    assert "gridpulse up" in err and "Traceback" not in err and "KafkaTimeoutError" not in err
