"""Build a city YAML (``core.city.City``) from the files a city has, with located findings.

Two sources, one result:

- **Grid boundaries**: a GeoJSON FeatureCollection with one (Multi)Polygon feature per grid
  whose properties name the grid and, where present, its community, street and district
  (codes and names), owner and households; ``PropertyMap`` says which property is which.
  Checked: every feature has a usable code (unique) and an areal geometry; invalid or
  self-intersecting polygons are repaired with shapely's ``make_valid`` when the repair keeps
  one polygon holding all but ``tolerance`` of the area (reported), else refused; overlaps
  between grids and gaps enclosed by grids above ``tolerance``; a grid outside its parent's
  polygon (from an optional parents FeatureCollection) by more than ``tolerance`` of its
  area; a community or street placed under two different parents.
- **A 311-style export** with no boundaries: one grid per value of the format's grid column
  (through its ``grid_template``), parents from optional ``ExportLevels`` columns (majority
  per grid), and a polygon per grid from the requests' locations: the Voronoi cell of the
  grid's median location, clipped to the padded extent of all locations (a grid without any
  located request gets no polygon: events reach it by code only).

Categories always come from the import format (declared once, there); the calendar is the
standard one in the format's time zone unless given.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import shapely
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from shapely.geometry import MultiPoint, box, shape
from shapely.geometry.polygon import orient
from shapely.validation import explain_validity, make_valid

from core.calendar_config import WorkingCalendar
from core.city import (
    UNLOCATED,
    Category,
    City,
    Community,
    District,
    Grid,
    Polygon,
    Street,
    SubCategory,
    is_code,
)
from sources.formats import ImportFormat

BBOX_MARGIN_DEG = 0.02  # ~2 km around the outermost request
DECIMALS = 6  # ~0.1 m
CCW = 1.0  # shapely orient() sign for a counter-clockwise exterior ring
DEFAULT_TOLERANCE = 0.01
OWNER_PREFIX = "owner-"
ALL = "ALL"  # the code of a level the source does not name

Severity = Literal["error", "repaired", "warning"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PropertyMap(_Strict):
    """Which GeoJSON feature property holds what; ``None``: the source has no such property."""

    grid_code: str = "grid_code"
    grid_name: str | None = None
    community_code: str | None = None
    community_name: str | None = None
    street_code: str | None = None
    street_name: str | None = None
    district_code: str | None = None
    district_name: str | None = None
    owner: str | None = None
    households: str | None = None
    parent_code: str = "code"  # the code property of the parents file


class ExportLevels(_Strict):
    """Export columns that name a grid's parents and its display name (all optional)."""

    grid_name: str | None = None
    community: str | None = None
    street: str | None = None
    district: str | None = None


class CityMeta(_Strict):
    """The city's own identity and its tolerances."""

    code: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str = Field(min_length=1)
    timezone: str | None = None  # default: the import format's
    tolerance: float = Field(DEFAULT_TOLERANCE, ge=0, lt=1)


class MappingFile(_Strict):
    """A small mapping file: ``properties`` (GeoJSON) and/or ``levels`` (export columns)."""

    properties: PropertyMap = PropertyMap()
    levels: ExportLevels = ExportLevels()


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    where: str  # e.g. "feature 4 (grid G004)"
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


@dataclass(slots=True)
class CityImport:
    """The built city (None when an error prevents it) and every finding."""

    city: City | None
    findings: list[Finding] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def report(self) -> str:
        head = ", ".join(f"{k} {v}" for k, v in self.stats.items())
        lines = [head] if head else []
        lines += [str(f) for f in self.findings]
        verdict = "city built" if self.city is not None else "no city: fix the errors above"
        return "\n".join([*lines, verdict])


# ---- geometry helpers (shared with sources.la_city) -----------------------------------------


def to_polygon(poly: shapely.Polygon) -> Polygon:
    """A GeoJSON polygon: counter-clockwise exterior, holes kept, rounded to ``DECIMALS``."""

    def ring(coords: Any) -> list[tuple[float, float]]:
        pts = [(round(x, DECIMALS), round(y, DECIMALS)) for x, y in coords]
        return [c for i, c in enumerate(pts) if i == 0 or c != pts[i - 1]]

    poly = orient(poly, CCW)
    rings = [ring(poly.exterior.coords), *(ring(r.coords) for r in poly.interiors)]
    return Polygon(coordinates=rings)


def ring(poly: shapely.Polygon) -> Polygon:
    """The exterior of ``poly`` alone as a GeoJSON polygon (see ``to_polygon``)."""
    return to_polygon(shapely.Polygon(poly.exterior))


def voronoi_cells(centres: pd.DataFrame) -> dict[str, shapely.Polygon]:
    """Grid -> Voronoi cell of its (lon, lat) centre, clipped to the padded extent given in
    ``centres.attrs["extent"]`` (minx, miny, maxx, maxy)."""
    if centres[["lon", "lat"]].duplicated().any():
        raise ValueError("two grids share a median location: their Voronoi cells would merge")
    minx, miny, maxx, maxy = centres.attrs["extent"]
    frame = box(
        minx - BBOX_MARGIN_DEG,
        miny - BBOX_MARGIN_DEG,
        maxx + BBOX_MARGIN_DEG,
        maxy + BBOX_MARGIN_DEG,
    )
    if len(centres) == 1:
        return {centres.index[0]: frame}
    pts = MultiPoint(list(zip(centres["lon"], centres["lat"], strict=True)))
    cells = shapely.voronoi_polygons(pts, extend_to=frame, ordered=True)
    return {
        grid: cell.intersection(frame)
        for grid, cell in zip(centres.index, cells.geoms, strict=True)
    }


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


def dump_city(city: City) -> str:
    """YAML text of the city, one polygon ring per line to keep the file small."""

    class _Dumper(yaml.SafeDumper):
        pass

    def _flow_ring(dumper: yaml.SafeDumper, data: list) -> yaml.Node:  # type: ignore[type-arg]
        flow = bool(data) and all(isinstance(x, list) for x in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow or None)

    _Dumper.add_representer(list, _flow_ring)
    data = city.model_dump(mode="json", exclude_none=True)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10**9)


# ---- the tree ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GridRecord:
    """One grid and the names of its parents, whatever the source."""

    where: str
    code: str
    name: str
    community: tuple[str, str]  # (code, name)
    street: tuple[str, str]
    district: tuple[str, str]
    owner: str
    households: int
    polygon: Polygon | None


def _parents_agree(records: Sequence[GridRecord]) -> list[Finding]:
    """A community (street) must sit under one street (district) only."""
    out: list[Finding] = []
    for child, parent, level, up in (
        ("community", "street", "community", "street"),
        ("street", "district", "street", "district"),
    ):
        first: dict[str, tuple[str, str]] = {}
        for r in records:
            code, above = getattr(r, child)[0], getattr(r, parent)[0]
            seen = first.setdefault(code, (above, r.where))
            if seen[0] != above:
                out.append(
                    Finding(
                        "error",
                        r.where,
                        f"{level} {code!r} is under {up} {above!r} here but under "
                        f"{seen[0]!r} at {seen[1]}",
                    )
                )
    return out


def assemble(
    records: Sequence[GridRecord], meta: CityMeta, fmt: ImportFormat, calendar: WorkingCalendar
) -> City:
    """The city tree from grid records (in first-seen order at every level)."""
    tree: dict[tuple[str, str], dict[tuple[str, str], dict[tuple[str, str], list[Grid]]]] = {}
    for r in records:
        grids = tree.setdefault(r.district, {}).setdefault(r.street, {}).setdefault(r.community, [])
        grids.append(
            Grid(
                code=r.code,
                name=r.name,
                owner=r.owner,
                households=r.households,
                polygon=r.polygon,
            )
        )
    districts = [
        District(
            code=d[0],
            name=d[1],
            streets=[
                Street(
                    code=s[0],
                    name=s[1],
                    communities=[Community(code=c[0], name=c[1], grids=g) for c, g in cs.items()],
                )
                for s, cs in streets.items()
            ],
        )
        for d, streets in tree.items()
    ]
    return City(
        code=meta.code,
        name=meta.name,
        timezone=calendar.timezone,
        calendar=calendar,
        districts=districts,
        categories=categories(fmt),
    )


def _finish(
    records: list[GridRecord],
    findings: list[Finding],
    meta: CityMeta,
    fmt: ImportFormat,
    calendar: WorkingCalendar | None,
) -> CityImport:
    findings += _parents_agree(records)
    result = CityImport(city=None, findings=findings)
    result.stats["grids"] = len(records)
    result.stats["without polygon"] = sum(r.polygon is None for r in records)
    if any(f.severity == "error" for f in findings):
        return result
    cal = calendar or WorkingCalendar(timezone=meta.timezone or fmt.timezone)
    try:
        result.city = assemble(records, meta, fmt, cal)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "city"
            findings.append(Finding("error", where, err["msg"]))
    return result


# ---- from GeoJSON ------------------------------------------------------------------------


def _prop(props: Mapping[str, Any], key: str | None) -> str:
    if key is None:
        return ""
    value = props.get(key)
    return "" if value is None else str(value).strip()


def single_polygon(
    geom: Any, tolerance: float, where: str, findings: list[Finding]
) -> shapely.Polygon | None:
    """One valid polygon from a feature geometry, repairing it when that is safe.

    Safe: ``make_valid`` (or a MultiPolygon) yields polygons of which the largest holds all
    but ``tolerance`` of the area; the dropped slivers are reported with the repair."""
    if geom is None or geom.is_empty:
        findings.append(Finding("error", where, "no geometry"))
        return None
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        findings.append(Finding("error", where, f"{geom.geom_type} is not a polygon"))
        return None
    repaired = ""
    if not geom.is_valid:
        reason = explain_validity(geom)
        geom = make_valid(geom)
        repaired = f"invalid polygon ({reason}) repaired with make_valid"
    parts = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type == "Polygon" and g.area > 0]
    if geom.geom_type == "GeometryCollection":
        parts = [
            p for g in geom.geoms for p in getattr(g, "geoms", [g]) if p.geom_type == "Polygon"
        ]
    total = sum(p.area for p in parts)
    if total <= 0:
        findings.append(Finding("error", where, "polygon has no area"))
        return None
    best = max(parts, key=lambda p: p.area)
    dropped = 1 - best.area / total
    if dropped > tolerance:
        findings.append(
            Finding(
                "error",
                where,
                f"{len(parts)} separate parts ({dropped:.1%} of the area outside the largest);"
                " a grid is one polygon: split it into grids or fix the boundary"
                + (f" [{repaired}]" if repaired else ""),
            )
        )
        return None
    if len(parts) > 1:
        repaired = (repaired + "; " if repaired else "") + (
            f"kept the largest of {len(parts)} parts (dropped {dropped:.2%} of the area)"
        )
    if repaired:
        findings.append(Finding("repaired", where, repaired))
    return best


def overlaps(
    codes: Sequence[str], geoms: Sequence[shapely.Polygon], tolerance: float
) -> list[Finding]:
    """Pairs of grids sharing more than ``tolerance`` of the smaller one's area."""
    tree = shapely.STRtree(list(geoms))
    left, right = tree.query(list(geoms), predicate="intersects")
    out = []
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i >= j:
            continue
        shared = geoms[i].intersection(geoms[j]).area
        smaller = min(geoms[i].area, geoms[j].area)
        if smaller > 0 and shared / smaller > tolerance:
            pt = geoms[i].intersection(geoms[j]).representative_point()
            out.append(
                Finding(
                    "error",
                    f"grids {codes[i]} and {codes[j]}",
                    f"overlap by {shared / smaller:.1%} of the smaller grid"
                    f" near ({pt.x:.6f}, {pt.y:.6f})",
                )
            )
    return out


def gaps(geoms: Sequence[shapely.Polygon], tolerance: float) -> list[Finding]:
    """Holes enclosed by grids larger than ``tolerance`` of the median grid area."""
    if not geoms:
        return []
    limit = tolerance * statistics.median(g.area for g in geoms)
    union = shapely.union_all(list(geoms))
    out = []
    for part in getattr(union, "geoms", [union]):
        for hole in getattr(part, "interiors", []):
            gap = shapely.Polygon(hole)
            if gap.area > limit:
                pt = gap.representative_point()
                out.append(
                    Finding(
                        "error",
                        f"gap near ({pt.x:.6f}, {pt.y:.6f})",
                        f"an area of {gap.area / statistics.median(g.area for g in geoms):.1%}"
                        " of a median grid is enclosed by grids but in none",
                    )
                )
    return out


def outside_parents(
    records: Sequence[GridRecord],
    geoms: Mapping[str, shapely.Polygon],
    parents: Mapping[str, shapely.Polygon],
    tolerance: float,
) -> list[Finding]:
    """Grids lying more than ``tolerance`` of their area outside a parent's polygon."""
    out = []
    for r in records:
        g = geoms.get(r.code)
        if g is None or g.area == 0:
            continue
        for level, (code, _) in (
            ("community", r.community),
            ("street", r.street),
            ("district", r.district),
        ):
            parent = parents.get(code)
            if parent is None:
                continue
            outside = g.difference(parent).area / g.area
            if outside > tolerance:
                out.append(
                    Finding(
                        "error",
                        r.where,
                        f"{outside:.1%} of the grid lies outside its {level} {code!r}",
                    )
                )
    return out


def read_features(path: str | Path) -> list[dict[str, Any]]:
    """The features of a GeoJSON FeatureCollection file."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ValueError(f"{path}: not a GeoJSON FeatureCollection")
    return list(doc.get("features") or [])


def _parent_shapes(
    features: Sequence[Mapping[str, Any]], key: str, tolerance: float, findings: list[Finding]
) -> dict[str, shapely.Polygon]:
    out: dict[str, shapely.Polygon] = {}
    for n, feat in enumerate(features, start=1):
        code = _prop(feat.get("properties") or {}, key)
        where = f"parents feature {n} ({code or 'no code'})"
        geom = shape(feat["geometry"]) if feat.get("geometry") else None
        poly = single_polygon(geom, tolerance, where, findings) if code else None
        if code and poly is not None:
            out[code] = poly
    return out


def city_from_geojson(
    features: Sequence[Mapping[str, Any]],
    fmt: ImportFormat,
    meta: CityMeta,
    props: PropertyMap | None = None,
    parents: Sequence[Mapping[str, Any]] = (),
    calendar: WorkingCalendar | None = None,
) -> CityImport:
    """A city from grid polygon features (see the module docstring for every check)."""
    props = props or PropertyMap()
    findings: list[Finding] = []
    records: list[GridRecord] = []
    geoms: dict[str, shapely.Polygon] = {}
    first_seen: dict[str, str] = {}
    for n, feat in enumerate(features, start=1):
        p = feat.get("properties") or {}
        code = _prop(p, props.grid_code)
        where = f"feature {n}" + (f" (grid {code})" if code else "")
        if not code:
            findings.append(Finding("error", where, f"no {props.grid_code!r} property"))
            continue
        if not is_code(code) or code == UNLOCATED:
            findings.append(Finding("error", where, f"grid code {code!r} is not a usable code"))
            continue
        if code in first_seen:
            findings.append(
                Finding("error", where, f"duplicate grid code (first at {first_seen[code]})")
            )
            continue
        first_seen[code] = where
        try:
            geom = shape(feat["geometry"]) if feat.get("geometry") else None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            findings.append(Finding("error", where, f"unreadable geometry: {exc}"))
            continue
        poly = single_polygon(geom, meta.tolerance, where, findings)
        if poly is None:
            continue
        households_text = _prop(p, props.households)
        try:
            households = int(float(households_text)) if households_text else 0
        except ValueError:
            findings.append(Finding("error", where, f"households {households_text!r} not a number"))
            continue
        community = _prop(p, props.community_code) or code
        street = _prop(p, props.street_code) or ALL
        district = _prop(p, props.district_code) or ALL
        if street == ALL and district != ALL:
            street = f"{district}-{ALL}"
        records.append(
            GridRecord(
                where=where,
                code=code,
                name=_prop(p, props.grid_name) or code,
                community=(community, _prop(p, props.community_name) or community),
                street=(street, _prop(p, props.street_name) or street),
                district=(district, _prop(p, props.district_name) or district),
                owner=_prop(p, props.owner) or f"{OWNER_PREFIX}{code}",
                households=max(households, 0),
                polygon=to_polygon(poly),
            )
        )
        geoms[code] = poly
    codes = list(geoms)
    findings += overlaps(codes, [geoms[c] for c in codes], meta.tolerance)
    findings += gaps([geoms[c] for c in codes], meta.tolerance)
    if parents:
        shapes = _parent_shapes(parents, props.parent_code, meta.tolerance, findings)
        findings += outside_parents(records, geoms, shapes, meta.tolerance)
    result = _finish(records, findings, meta, fmt, calendar)
    result.stats["features"] = len(features)
    result.stats["repaired"] = sum(f.severity == "repaired" for f in findings)
    return result


# ---- from an export ----------------------------------------------------------------------


def _majority(values: pd.Series) -> str:
    """The most frequent non-empty value (ties: the smallest), else ''."""
    counts = values[values != ""].value_counts()
    if counts.empty:
        return ""
    top = counts[counts == counts.iloc[0]]
    return str(sorted(top.index)[0])


def _level_code(text: str) -> str:
    """A code from a display value: upper case, runs of other characters as '_'."""
    import re

    return re.sub(r"[^A-Za-z0-9]+", "_", text.strip().upper()).strip("_")[:64]


def city_from_export(
    df: pd.DataFrame,
    fmt: ImportFormat,
    meta: CityMeta,
    levels: ExportLevels | None = None,
    calendar: WorkingCalendar | None = None,
) -> CityImport:
    """A city from an all-string export frame: one grid per rendered grid value."""
    cols = fmt.columns
    levels = levels or ExportLevels()
    findings: list[Finding] = []
    if cols.grid is None:
        raise ValueError(f"format {fmt.name!r} maps no grid column: nothing to build grids from")
    needed = [c for c in (cols.grid, *levels.model_dump().values()) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"export lacks column(s) {missing}")
    rows = pd.DataFrame({"grid": df[cols.grid].map(fmt.grid_code)})
    for level, column in levels.model_dump().items():
        rows[level] = df[column].str.strip() if column else ""
    rows["lat"] = pd.to_numeric(df[cols.lat], errors="coerce") if cols.lat else float("nan")
    rows["lon"] = pd.to_numeric(df[cols.lon], errors="coerce") if cols.lon else float("nan")
    unusable = (rows["lat"].abs() > 90) | (rows["lon"].abs() > 180)
    unusable |= (rows["lat"] == 0) & (rows["lon"] == 0)
    rows.loc[unusable, ["lat", "lon"]] = float("nan")
    bad = df[cols.grid].str.strip().ne("") & rows["grid"].isna()
    for value, n in df.loc[bad, cols.grid].value_counts().items():
        findings.append(
            Finding("warning", f"{cols.grid}={value!r}", f"{n} rows: renders to no grid code")
        )
    rows = rows[rows["grid"].notna()]
    if rows.empty:
        findings.append(Finding("error", cols.grid, "no row names a grid"))
        return _finish([], findings, meta, fmt, calendar)

    located = rows.dropna(subset=["lat", "lon"])
    centres = located.groupby("grid")[["lon", "lat"]].median()
    cells: dict[str, shapely.Polygon] = {}
    if not centres.empty:
        centres.attrs["extent"] = (
            located["lon"].min(),
            located["lat"].min(),
            located["lon"].max(),
            located["lat"].max(),
        )
        try:
            cells = voronoi_cells(centres)
        except ValueError as exc:
            findings.append(Finding("error", "polygons", str(exc)))
    records: list[GridRecord] = []
    for code, grid_rows in rows.groupby("grid", sort=True):
        code = str(code)
        name = _majority(grid_rows["grid_name"]) or code
        community = _majority(grid_rows["community"])
        street = _majority(grid_rows["street"])
        district = _majority(grid_rows["district"])
        d_code = _level_code(district) or ALL
        s_code = f"{d_code}-{_level_code(street) or ALL}"
        c_code = f"{s_code}-{_level_code(community)}" if community else code
        cell = cells.get(code)
        if cell is None:
            findings.append(
                Finding("warning", f"grid {code}", "no located request: no polygon (code only)")
            )
        records.append(
            GridRecord(
                where=f"grid {code}",
                code=code,
                name=name,
                community=(c_code, community or name),
                street=(s_code, street or s_code),
                district=(d_code, district or d_code),
                owner=f"{OWNER_PREFIX}{code}",
                households=0,  # exports carry no population
                polygon=ring(cell) if cell is not None and not cell.is_empty else None,
            )
        )
    result = _finish(records, findings, meta, fmt, calendar)
    result.stats["rows"] = len(df)
    return result


def load_mapping(path: str | Path | None) -> MappingFile:
    """A mapping file (YAML), or the defaults."""
    if path is None:
        return MappingFile()
    with open(path, encoding="utf-8") as fh:
        return MappingFile.model_validate(yaml.safe_load(fh) or {})


# ---- a format against a city -------------------------------------------------------------


def pairing_problems(fmt: ImportFormat, city: City) -> list[str]:
    """What makes a format and a city disagree before anything is published: subcategories
    the format can emit that the city does not declare for the hotline stream."""
    problems = []
    subs = city.subcategories
    for code in sorted(fmt.categories.subcategory_names()):
        known = subs.get(code)
        if known is None:
            problems.append(f"format {fmt.name!r} emits category {code!r}: not in city {city.code}")
        elif "hotline" not in known[1].streams:
            problems.append(f"category {code!r} of city {city.code} is not fed by the hotline")
    return problems


# ---- the command ---------------------------------------------------------------------------


def import_city(
    fmt: ImportFormat,
    meta: CityMeta,
    *,
    geojson: str | Path | None = None,
    export: Sequence[str | Path] = (),
    mapping: MappingFile | None = None,
    parents: str | Path | None = None,
) -> CityImport:
    """``gridpulse city import``: a city from grid boundaries (``geojson``) or, without them,
    from exports read with ``fmt`` (``export``); categories from ``fmt``."""
    from sources.replay import read_frame

    mapping = mapping or MappingFile()
    if (geojson is None) == (not export):
        raise ValueError("give either a GeoJSON file of grid boundaries or export file(s)")
    if geojson is not None:
        parent_features = read_features(parents) if parents is not None else ()
        return city_from_geojson(
            read_features(geojson), fmt, meta, mapping.properties, parent_features
        )
    df = pd.concat([read_frame(p, fmt) for p in export], ignore_index=True)
    return city_from_export(df, fmt, meta, mapping.levels)


def city_file_text(result: CityImport, command: str) -> str:
    """The city YAML with a header saying how it was made."""
    assert result.city is not None
    header = (
        f"# Generated by: {command}\n"
        "# Categories come from the import format; the calendar is the standard one of the\n"
        "# city's time zone: add holidays and office hours under calendar (docs/cities.md).\n"
    )
    return header + dump_city(result.city)
