"""The generated sample city: valid, sized like a prefecture, and a true tessellation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import shapely
import yaml
from shapely.geometry import box, shape

from core.city import City
from sources.citygen import CityGenConfig, dump_city, generate_city

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "cities" / "sample.yaml"
CODE = re.compile(r"^[A-Za-z0-9_.\-]+$")


@pytest.fixture(scope="module")
def city() -> City:
    return City.model_validate(generate_city(7))


@pytest.fixture(scope="module")
def geoms(city: City) -> list[shapely.Polygon]:
    return [shape(g.polygon.model_dump()) for g in city.iter_grids()]


def test_tree_is_sized_like_a_prefecture(city: City) -> None:
    assert len(city.districts) == 2
    assert [len(d.streets) for d in city.districts] == [4, 3]
    communities = [c for d in city.districts for s in d.streets for c in s.communities]
    assert len(communities) == 100
    assert all(6 <= len(c.grids) <= 10 for c in communities)
    grids = list(city.iter_grids())
    assert 700 <= len(grids) <= 900
    assert all(220 <= g.households <= 420 for g in grids)
    assert city.code == "FZS" and city.timezone == "Asia/Shanghai"


def test_codes_are_unique_hierarchical_and_wire_safe(city: City) -> None:
    seen: set[str] = set()
    for d in city.districts:
        assert re.fullmatch(r"D\d{2}", d.code)
        for s in d.streets:
            assert re.fullmatch(rf"{d.code}S\d{{2}}", s.code)
            for c in s.communities:
                assert re.fullmatch(rf"{s.code}C\d{{3}}", c.code)
                for g in c.grids:
                    assert re.fullmatch(rf"{c.code}G\d{{2}}", g.code)
                    assert re.fullmatch(r"owner-\d{4} \S+", g.owner)
                    seen.update([d.code, s.code, c.code, g.code])
    assert all(CODE.match(code) for code in seen)
    assert len({c.code for d in city.districts for s in d.streets for c in s.communities}) == 100


def test_polygons_are_closed_ccw_and_valid(geoms: list[shapely.Polygon], city: City) -> None:
    for g, geom in zip(city.iter_grids(), geoms, strict=True):
        ring = g.polygon.coordinates[0]
        assert ring[0] == ring[-1]
        assert geom.is_valid and geom.exterior.is_ccw, g.code


def test_grids_tile_the_box_without_gaps_or_overlaps(geoms: list[shapely.Polygon]) -> None:
    cfg = CityGenConfig()
    total = sum(g.area for g in geoms)
    union = shapely.union_all(geoms)
    frame = box(cfg.lon_range[0], cfg.lat_range[0], cfg.lon_range[1], cfg.lat_range[1])
    assert total == pytest.approx(union.area, rel=1e-9)  # no overlaps
    assert union.area == pytest.approx(frame.area, rel=1e-9)  # no gaps
    rng = np.random.default_rng(1)
    xs = rng.uniform(*cfg.lon_range, 3000)
    ys = rng.uniform(*cfg.lat_range, 3000)
    hits = sum(shapely.contains_xy(g, xs, ys).astype(int) for g in geoms)
    assert (hits == 1).all()


def test_communities_and_streets_are_contiguous(city: City) -> None:
    for d in city.districts:
        for s in d.streets:
            street = shapely.union_all(
                [shape(g.polygon.model_dump()) for c in s.communities for g in c.grids]
            )
            assert street.geom_type == "Polygon", s.code
            for c in s.communities:
                part = shapely.union_all([shape(g.polygon.model_dump()) for g in c.grids])
                assert part.geom_type == "Polygon", c.code


def test_categories_and_sensor_kinds(city: City) -> None:
    subs = city.subcategories
    for code in [
        "sanitation.overflowing_bin",
        "sanitation.exposed_garbage",
        "sanitation.street_cleanliness",
        "facilities.broken_streetlight",
        "facilities.damaged_road",
        "facilities.manhole_cover",
        "order.illegal_construction",
        "order.street_vending",
        "order.illegal_parking",
        "disputes.neighbour_dispute",
        "disputes.noise_complaint",
        "safety.fire_hazard",
        "safety.hazardous_structure",
        "environment.water_logging",
        "environment.air_quality",
    ]:
        cat, sub = subs[code]
        assert cat.name_zh and sub.name_zh and sub.streams and CODE.match(code)
    kinds = city.sensor_kind_index
    assert (kinds["water_level"].unit, kinds["water_level"].min, kinds["water_level"].max) == (
        "m",
        0,
        10,
    )
    assert (kinds["noise"].min, kinds["noise"].max) == (20, 140)
    assert {"water_level", "manhole_tilt", "pm25", "noise"} <= set(kinds)


def test_sensors_lie_inside_their_grid(city: City) -> None:
    assert 1200 <= len(city.sensors) <= 1800
    assert len(city.sensor_index) == len(city.sensors)
    for s in city.sensors:
        assert re.fullmatch(rf"S-{s.kind}-\d{{4}}", s.id)
        assert city.locator.locate(s.lon, s.lat) == s.grid


def test_deterministic_by_seed() -> None:
    assert generate_city(7) == generate_city(7)
    assert generate_city(7) != generate_city(8)


def test_yaml_round_trips_exactly() -> None:
    small = CityGenConfig(
        cols=12,
        rows=4,
        communities_per_band=3,
        streets_per_district=(2, 1),
        street_communities=(1, 4),
        sensors_per_kind={"noise": 5},
    )
    data = generate_city(3, small)
    text = dump_city(data)
    assert "coordinates: [[[" in text and "鼓楼区" in text
    assert yaml.safe_load(text) == data


def test_committed_sample_is_seed_7_and_small() -> None:
    raw = SAMPLE.read_bytes()
    assert len(raw) < 2_000_000
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    assert yaml.load(raw, Loader=loader) == generate_city(7), (
        "regenerate: python -m sources.citygen --seed 7 --out config/cities/sample.yaml"
    )
