"""Build the Los Angeles city config from LA 311 exports.

The tree is derived from the data itself: district = area planning commission (APC),
street = council district (CD), community = neighbourhood council (NC), one grid per NC.
An NC sits under the (APC, CD) pair most of its rows name. LA publishes no NC boundaries in
these exports, so each grid's polygon is the Voronoi cell of the NC's median request
location, clipped to the bounding box of all request locations plus a margin: coarse, but it
lets the locator place unassigned requests near where that NC's requests cluster.

    python -m sources.la_city --out config/cities/la.yaml /work/shared/data/la311/*.csv
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import date, time
from pathlib import Path

import pandas as pd
import shapely
import yaml
from shapely.geometry import MultiPoint, box
from shapely.geometry.polygon import orient

from core.calendar_config import WorkingCalendar
from core.city import Category, City, Community, District, Grid, Polygon, Street, SubCategory
from sources.formats import ImportFormat, load_format

CITY_CODE = "la"
CITY_NAME = "Los Angeles"
FORMAT = "la311"
APC_COLUMN = "APC"
CD_COLUMN = "CD"
NC_NAME_COLUMN = "NCName"
BBOX_MARGIN_DEG = 0.02  # ~2 km around the outermost request
DECIMALS = 6  # ~0.1 m: plenty for request-cluster cells
CCW = 1.0  # shapely orient() sign for a counter-clockwise exterior ring
OWNER_PREFIX = "owner-"
# City of Los Angeles office hours and the city holidays the exports span; keep current
WORK_PERIODS = ((time(8, 0), time(12, 0)), (time(13, 0), time(17, 0)))
HOLIDAYS = (
    date(2017, 12, 25),  # Christmas Day
    date(2018, 1, 1),  # New Year's Day
    date(2018, 1, 15),  # Martin Luther King Jr. Day
)


def slug(text: str) -> str:
    """An upper-case code from a display name: 'South Los Angeles APC' -> 'SOUTH_LOS_ANGELES'."""
    words = re.sub(r"\bAPC\b", "", text.upper())
    return re.sub(r"[^A-Z0-9]+", "_", words).strip("_")


def read_frames(paths: Sequence[str | Path]) -> pd.DataFrame:
    """All exports as one all-string frame."""
    return pd.concat(
        [pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths], ignore_index=True
    )


def nc_rows(df: pd.DataFrame, fmt: ImportFormat) -> pd.DataFrame:
    """Rows with an NC, plus their grid code and numeric lat/lon (NaN where unusable)."""
    cols = fmt.columns
    assert cols.grid and cols.lat and cols.lon, "the LA format maps grid, lat and lon"
    out = df[df[cols.grid].str.strip() != ""].copy()
    out["grid"] = out[cols.grid].map(fmt.grid_code)
    out["lat"] = pd.to_numeric(out[cols.lat], errors="coerce")
    out["lon"] = pd.to_numeric(out[cols.lon], errors="coerce")
    origin = (out["lat"] == 0) & (out["lon"] == 0)
    out.loc[origin, ["lat", "lon"]] = float("nan")
    return out[out["grid"].notna()]


def nesting(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per grid: its name and the majority (APC, CD); ties go to the smallest pair."""
    placed = rows[(rows[APC_COLUMN] != "") & (rows[CD_COLUMN] != "")]
    counts = placed.groupby(["grid", APC_COLUMN, CD_COLUMN]).size().rename("n").reset_index()
    counts["cd_num"] = pd.to_numeric(counts[CD_COLUMN])
    counts = counts.sort_values(
        ["grid", "n", APC_COLUMN, "cd_num"], ascending=[True, False, True, True]
    )
    best = counts.drop_duplicates("grid").set_index("grid")[[APC_COLUMN, "cd_num"]]
    names = rows.groupby("grid")[NC_NAME_COLUMN].agg(lambda s: s.value_counts().index[0])
    return best.join(names)


def voronoi_cells(centres: pd.DataFrame) -> dict[str, shapely.Polygon]:
    """Grid -> Voronoi cell of its (lon, lat) centre, clipped to the padded extent."""
    if centres[["lon", "lat"]].duplicated().any():
        raise ValueError("two NCs share a median location: their Voronoi cells would merge")
    pts = MultiPoint(list(zip(centres["lon"], centres["lat"], strict=True)))
    minx, miny, maxx, maxy = centres.attrs["extent"]
    frame = box(
        minx - BBOX_MARGIN_DEG,
        miny - BBOX_MARGIN_DEG,
        maxx + BBOX_MARGIN_DEG,
        maxy + BBOX_MARGIN_DEG,
    )
    cells = shapely.voronoi_polygons(pts, extend_to=frame, ordered=True)
    return {
        grid: cell.intersection(frame)
        for grid, cell in zip(centres.index, cells.geoms, strict=True)
    }


def ring(poly: shapely.Polygon) -> Polygon:
    """A closed, counter-clockwise GeoJSON ring rounded to ``DECIMALS``, no repeated points."""
    coords = [
        (round(x, DECIMALS), round(y, DECIMALS)) for x, y in orient(poly, CCW).exterior.coords
    ]
    dedup = [c for i, c in enumerate(coords) if i == 0 or c != coords[i - 1]]
    return Polygon(coordinates=[dedup])


def categories(fmt: ImportFormat) -> list[Category]:
    """The format's subcategory codes as city categories, all fed by the hotline stream."""
    by_group: dict[str, list[SubCategory]] = {g: [] for g in fmt.categories.groups}
    for code, name in fmt.categories.subcategory_names().items():
        by_group[code.split(".", 1)[0]].append(
            SubCategory(code=code, name=name, streams=["hotline"])
        )
    return [
        Category(code=g, name=fmt.categories.groups[g], subcategories=subs)
        for g, subs in by_group.items()
        if subs
    ]


def build_city(df: pd.DataFrame, fmt: ImportFormat) -> City:
    """The LA city model from the concatenated exports."""
    rows = nc_rows(df, fmt)
    located = rows.dropna(subset=["lat", "lon"])
    centres = located.groupby("grid")[["lon", "lat"]].median()
    centres.attrs["extent"] = (
        located["lon"].min(),
        located["lat"].min(),
        located["lon"].max(),
        located["lat"].max(),
    )
    nest = nesting(rows)
    missing = sorted(set(nest.index) - set(centres.index))
    if missing:
        raise ValueError(f"NCs without any located request, no polygon possible: {missing}")
    cells = voronoi_cells(centres)

    districts: list[District] = []
    for apc, apc_rows in nest.groupby(APC_COLUMN, sort=True):
        apc_code = f"APC_{slug(str(apc))}"
        streets: list[Street] = []
        for cd, cd_rows in apc_rows.groupby("cd_num", sort=True):
            communities = [
                Community(
                    code=grid,
                    name=row[NC_NAME_COLUMN],
                    grids=[
                        Grid(
                            code=grid,
                            name=row[NC_NAME_COLUMN],
                            owner=f"{OWNER_PREFIX}{grid}",
                            households=0,  # unknown: LA 311 exports carry no population
                            polygon=ring(cells[grid]),
                        )
                    ],
                )
                for grid, row in cd_rows.sort_index().iterrows()
            ]
            streets.append(
                Street(
                    # a CD can span APCs: the district suffix keeps street codes unique
                    code=f"CD{int(cd):02d}-{slug(str(apc))}",
                    name=f"Council District {int(cd)} ({apc})",
                    communities=communities,
                )
            )
        districts.append(District(code=apc_code, name=str(apc), streets=streets))

    return City(
        code=CITY_CODE,
        name=CITY_NAME,
        timezone=fmt.timezone,
        calendar=WorkingCalendar(
            timezone=fmt.timezone, work_periods=WORK_PERIODS, holidays=HOLIDAYS
        ),
        districts=districts,
        categories=categories(fmt),
    )


def dump_city(city: City) -> str:
    """YAML text of the city, one polygon ring per line to keep the file small."""

    class _Dumper(yaml.SafeDumper):
        pass

    def _flow_ring(dumper: yaml.SafeDumper, data: list) -> yaml.Node:  # type: ignore[type-arg]
        flow = bool(data) and all(isinstance(x, list) for x in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow or None)

    _Dumper.add_representer(list, _flow_ring)
    data = city.model_dump(mode="json")
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10**9)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sources.la_city", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--format", default=FORMAT, help="bundled format name or YAML path")
    ap.add_argument("csv", nargs="+", type=Path)
    args = ap.parse_args(argv)
    fmt = load_format(args.format)
    city = build_city(read_frames(args.csv), fmt)
    header = (
        "# Generated by: python -m sources.la_city --out "
        f"{args.out} {' '.join(p.name for p in args.csv)}\n"
        "# Do not edit by hand; polygons are Voronoi cells of NC median request locations.\n"
        "# calendar: LA City office hours and holidays (sources/la_city.py); keep them current.\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + dump_city(city), encoding="utf-8")
    n = sum(1 for _ in city.iter_grids())
    print(f"{args.out}: {len(city.districts)} districts, {n} grids", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
