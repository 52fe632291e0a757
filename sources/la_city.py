"""Build the Los Angeles city config from LA 311 exports (LA's own nesting rules on top of
``sources.cityimport``, which builds any city from any import format without code).

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

from core.calendar_config import WorkingCalendar
from core.city import City, Community, District, Grid, Street
from sources.cityimport import categories, dump_city, ring, voronoi_cells
from sources.formats import ImportFormat, load_format

CITY_CODE = "la"
CITY_NAME = "Los Angeles"
FORMAT = "la311"
APC_COLUMN = "APC"
CD_COLUMN = "CD"
NC_NAME_COLUMN = "NCName"
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
