"""The city model: grid tree, category codes, sensor kinds and sensors, from a YAML file.

The tree is city -> district -> street -> community -> grid. Each grid has a code, a name,
an owner, a household count and, optionally, a GeoJSON polygon (a grid without one is only
reached by its code: the locator never places a point in it). Categories are two-level (大类/小类)
and say which streams may produce them. Validation happens once, at load.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from core.calendar_config import WorkingCalendar
from core.types import CODE_MAX, CODE_PATTERN, TimeZoneName

StreamName = Literal["inspector", "sensor", "hotline"]

_CODE = re.compile(CODE_PATTERN)


def is_code(text: str) -> bool:
    """Whether ``text`` can travel as a code in wire messages (see ``core.events.Code``)."""
    return 0 < len(text) <= CODE_MAX and _CODE.match(text) is not None


UNLOCATED = "UNLOCATED"
"""Grid code under which events outside every grid polygon are counted."""


class Polygon(BaseModel):
    """A GeoJSON Polygon (lon/lat, outer ring first)."""

    type: Literal["Polygon"] = "Polygon"
    coordinates: list[list[tuple[float, float]]]

    @model_validator(mode="after")
    def _closed_ring(self) -> Polygon:
        if not self.coordinates or len(self.coordinates[0]) < 4:
            raise ValueError("a polygon needs an outer ring of at least 4 positions")
        ring = self.coordinates[0]
        if ring[0] != ring[-1]:
            raise ValueError("a polygon ring must be closed (first position == last)")
        return self


class Grid(BaseModel):
    code: str
    name: str
    owner: str
    households: int = Field(ge=0)
    polygon: Polygon | None = None


class Community(BaseModel):
    code: str
    name: str
    grids: list[Grid]


class Street(BaseModel):
    code: str
    name: str
    communities: list[Community]


class District(BaseModel):
    code: str
    name: str
    streets: list[Street]


class SubCategory(BaseModel):
    code: str
    name: str
    name_zh: str = ""
    streams: list[StreamName]


class Category(BaseModel):
    code: str
    name: str
    name_zh: str = ""
    subcategories: list[SubCategory]


class SensorKind(BaseModel):
    code: str
    name: str
    unit: str
    # physically possible range; readings outside are dead-lettered as impossible
    min: float
    max: float


class Sensor(BaseModel):
    id: str
    kind: str
    grid: str
    lon: float
    lat: float


class GridPath(BaseModel):
    """Where a grid sits in the tree: what every stored event is denormalized with."""

    district: str
    street: str
    community: str
    grid: str


UNLOCATED_PATH = GridPath(district="", street="", community="", grid=UNLOCATED)


class City(BaseModel):
    code: str
    name: str
    timezone: TimeZoneName = "Asia/Shanghai"
    # optional in the YAML: defaults to the standard calendar in the city's timezone
    calendar: WorkingCalendar
    districts: list[District]
    categories: list[Category]
    sensor_kinds: list[SensorKind] = []
    sensors: list[Sensor] = []

    @model_validator(mode="before")
    @classmethod
    def _default_calendar(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("calendar") is None:
            tz = data.get("timezone", cls.model_fields["timezone"].default)
            data = {**data, "calendar": {"timezone": tz}}
        return data

    @model_validator(mode="after")
    def _calendar_in_city_timezone(self) -> City:
        if self.calendar.timezone != self.timezone:
            raise ValueError(
                f"calendar timezone {self.calendar.timezone!r} != city timezone {self.timezone!r}"
            )
        return self

    @model_validator(mode="after")
    def _consistent(self) -> City:
        codes = [g.code for g in self.iter_grids()]
        for level, level_codes in (
            ("district", [d.code for d in self.districts]),
            ("street", [s.code for d in self.districts for s in d.streets]),
            (
                "community",
                [c.code for d in self.districts for s in d.streets for c in s.communities],
            ),
            ("grid", codes),
            ("sensor", [s.id for s in self.sensors]),
        ):
            if len(level_codes) != len(set(level_codes)):
                raise ValueError(f"{level} codes must be unique")
        bad = [c for c in codes if not is_code(c)]
        if bad:
            raise ValueError(
                f"grid codes must match {CODE_PATTERN} (at most {CODE_MAX}): {bad[:5]}"
            )
        for k in self.sensor_kinds:
            if not k.min < k.max:
                raise ValueError(f"sensor kind {k.code}: min must be below max")
        if UNLOCATED in codes:
            raise ValueError(f"{UNLOCATED!r} is reserved for events outside every grid")
        subs = [s.code for c in self.categories for s in c.subcategories]
        if len(subs) != len(set(subs)):
            raise ValueError("subcategory codes must be unique across categories")
        kinds = {k.code for k in self.sensor_kinds}
        grids = set(codes)
        for s in self.sensors:
            if s.kind not in kinds:
                raise ValueError(f"sensor {s.id}: unknown kind {s.kind!r}")
            if s.grid not in grids:
                raise ValueError(f"sensor {s.id}: unknown grid {s.grid!r}")
        return self

    def iter_grids(self):  # type: ignore[no-untyped-def]
        for d in self.districts:
            for s in d.streets:
                for c in s.communities:
                    yield from c.grids

    @cached_property
    def grid_paths(self) -> dict[str, GridPath]:
        out: dict[str, GridPath] = {}
        for d in self.districts:
            for s in d.streets:
                for c in s.communities:
                    for g in c.grids:
                        out[g.code] = GridPath(
                            district=d.code, street=s.code, community=c.code, grid=g.code
                        )
        return out

    @cached_property
    def subcategories(self) -> dict[str, tuple[Category, SubCategory]]:
        return {s.code: (c, s) for c in self.categories for s in c.subcategories}

    @cached_property
    def sensor_index(self) -> dict[str, Sensor]:
        return {s.id: s for s in self.sensors}

    @cached_property
    def sensor_kind_index(self) -> dict[str, SensorKind]:
        return {k.code: k for k in self.sensor_kinds}

    @cached_property
    def locator(self) -> GridLocator:
        return GridLocator(self)


class GridLocator:
    """Point-in-polygon grid assignment backed by a shapely STRtree (grids with a polygon)."""

    def __init__(self, city: City) -> None:
        import shapely
        from shapely.geometry import shape

        grids = [g for g in city.iter_grids() if g.polygon is not None]
        self._codes = [g.code for g in grids]
        self._geoms = [shape(g.polygon.model_dump()) for g in grids if g.polygon is not None]
        for geom in self._geoms:
            shapely.prepare(geom)
        self._tree = shapely.STRtree(self._geoms)

    def locate(self, lon: float, lat: float) -> str | None:
        """The grid containing the point (boundary points count as inside), or None."""
        from shapely.geometry import Point

        pt = Point(lon, lat)
        hits = self._tree.query(pt, predicate="intersects")
        # a point on a shared edge belongs to the first grid in file order: deterministic
        return self._codes[int(hits.min())] if len(hits) else None

    def locate_many(self, lons: list[float], lats: list[float]) -> list[str | None]:
        """``locate`` for a whole batch in one vectorised tree query (same answers)."""
        import numpy as np
        import shapely

        if not lons:
            return []
        points = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        which, grid = self._tree.query(points, predicate="intersects")
        first = np.full(len(lons), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, which, grid)
        return [self._codes[int(g)] if g != np.iinfo(np.int64).max else None for g in first]


def load_city(path: str | Path) -> City:
    with open(path, encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return City.model_validate(data)


CITIES = Path(__file__).resolve().parent.parent / "config" / "cities"
"""The bundled city files (``--city sample`` is ``config/cities/sample.yaml``)."""


def city_path(name: str) -> Path:
    """A YAML path as given, or the city of that name under ``config/cities``.

    Raises SystemExit naming the known cities when there is no such city.
    """
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    candidate = CITIES / f"{name}.yaml"
    if not candidate.exists():
        known = ", ".join(sorted(q.stem for q in CITIES.glob("*.yaml")))
        raise SystemExit(f"unknown city {name!r}: give a YAML path or one of: {known}")
    return candidate
