import math
import random
from datetime import UTC, datetime, timedelta

import shapely

from streams.detect.lifecycle import WarningLifecycle
from streams.detect.sensors import RULES_LIFECYCLE
from streams.detect.spatial import (
    ClusterConfig,
    ClusterRule,
    DuplicateClusters,
    HotspotConfig,
    Hotspots,
    RepeatComplaints,
    RepeatConfig,
    ReportRow,
    address_key,
    adjacency,
    components,
    haversine_m,
    rebuild_clusters,
    rebuild_repeats,
)

T0 = datetime(2026, 11, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def square_grid(n: int = 3, size: float = 0.004) -> dict[str, shapely.Polygon]:
    """n x n squares named by row and column: "r0c0" … (lon/lat near Fuzhou)."""
    lon0, lat0 = 119.25, 26.03
    return {
        f"r{r}c{c}": shapely.box(
            lon0 + c * size, lat0 + r * size, lon0 + (c + 1) * size, lat0 + (r + 1) * size
        )
        for r in range(n)
        for c in range(n)
    }


def test_adjacency_of_a_3x3_grid() -> None:
    adj = adjacency(square_grid())
    assert adj["r1c1"] == {f"r{r}c{c}" for r in range(3) for c in range(3)} - {"r1c1"}
    assert adj["r0c0"] == {"r0c1", "r1c0", "r1c1"}
    assert adj["r0c1"] == {"r0c0", "r0c2", "r1c0", "r1c1", "r1c2"}
    assert all(g not in adj[g] for g in adj)
    assert all(g in adj[n] for g in adj for n in adj[g])


def test_edge_adjacency_excludes_corner_contact() -> None:
    adj = adjacency(square_grid(), tolerance=1e-9, min_shared=1e-4)
    assert adj["r1c1"] == {"r0c1", "r1c0", "r1c2", "r2c1"}
    assert adj["r0c0"] == {"r0c1", "r1c0"}


def test_adjacency_tolerates_slivers_between_digitised_polygons() -> None:
    polys = {"a": shapely.box(0, 0, 1, 1), "b": shapely.box(1.00001, 0, 2, 1)}
    assert adjacency(polys, tolerance=1e-9)["a"] == frozenset()
    assert adjacency(polys, tolerance=1e-4)["a"] == {"b"}


def test_components_restricted_to_rising_grids() -> None:
    adj = adjacency(square_grid(), min_shared=1e-4)
    assert components(["r0c0", "r0c2", "r2c0", "r2c2"], adj) == [
        ["r0c0"],
        ["r0c2"],
        ["r2c0"],
        ["r2c2"],
    ]
    assert components(["r0c0", "r0c1", "r0c2", "r2c2"], adj) == [["r0c0", "r0c1", "r0c2"], ["r2c2"]]


def hotspots() -> Hotspots:
    return Hotspots(adjacency(square_grid(), min_shared=1e-4), HotspotConfig(min_grids=3))


EXPECTED = {f"r{r}c{c}": 0.5 for r in range(3) for c in range(3)}


def test_hotspot_in_adjacent_grids_fires_and_non_adjacent_does_not() -> None:
    det = hotspots()
    adjacent = {"r0c0": 5, "r0c1": 6, "r1c0": 4}
    fired = det.observe_window("sanitation", T0, T0 + HOUR, adjacent, EXPECTED)
    assert [(v.kind, v.severity, v.key["category"]) for v in fired] == [
        ("hotspot", "minor", "sanitation")
    ]
    assert fired[0].key["grid_code"] == "r0c1"  # the most surprising grid anchors it
    assert fired[0].evidence == ("grid:r0c0", "grid:r0c1", "grid:r1c0")
    assert fired[0].score > 0.5
    apart = {"r0c0": 5, "r0c2": 6, "r2c0": 4, "r2c2": 5}  # more events, no two adjacent
    assert hotspots().observe_window("sanitation", T0, T0 + HOUR, apart, EXPECTED) == []


def test_hotspot_needs_improbable_counts_and_an_expectation() -> None:
    det = hotspots()
    usual = {"r0c0": 5, "r0c1": 6, "r1c0": 4}
    busy = {g: 5.0 for g in EXPECTED}  # these counts are normal where 5 are expected
    assert det.observe_window("order", T0, T0 + HOUR, usual, busy) == []
    cold = {"r0c0": 0.5}  # the other grids have no expectation yet (warm-up)
    assert det.observe_window("order", T0 + HOUR, T0 + 2 * HOUR, usual, cold) == []


def test_hotspot_keeps_its_fingerprint_while_it_moves_and_resolves_once() -> None:
    det = hotspots()
    life = WarningLifecycle(RULES_LIFECYCLE)
    windows = [
        {"r0c0": 5, "r0c1": 6, "r1c0": 4},
        {"r0c1": 6, "r1c1": 7, "r1c0": 5, "r2c1": 4},
        {"r1c1": 6, "r2c1": 5},  # shrinks to keep_grids: lives on
        {"r2c2": 5},
    ]
    warnings = []
    for i, counts in enumerate(windows):
        start = T0 + i * HOUR
        warnings += life.observe_all(
            det.observe_window("safety", start, start + HOUR, counts, EXPECTED)
        )
    # one episode: fired once, republished hourly while it lives, resolved once
    assert [w.status for w in warnings] == ["firing", "firing", "firing", "resolved"]
    assert [w.revision for w in warnings] == [0, 1, 2, 3]
    assert len({w.fingerprint for w in warnings}) == 1
    assert warnings[2].evidence == ["grid:r1c1", "grid:r2c1"]
    assert det.snapshot() == {}


def test_hotspot_restore_from_snapshot_continues_the_same_hotspot() -> None:
    det = hotspots()
    det.observe_window("safety", T0, T0 + HOUR, {"r0c0": 5, "r0c1": 6, "r1c0": 4}, EXPECTED)
    restored = hotspots()
    restored.restore(det.snapshot())
    nxt = {"r0c1": 6, "r1c1": 7, "r1c0": 5}
    a = det.observe_window("safety", T0 + HOUR, T0 + 2 * HOUR, nxt, EXPECTED)
    b = restored.observe_window("safety", T0 + HOUR, T0 + 2 * HOUR, nxt, EXPECTED)
    assert [v.fingerprint for v in a] == [v.fingerprint for v in b] and len(a) == 1


def offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    dlat = north_m / 6_371_008.8
    dlon = east_m / (6_371_008.8 * math.cos(math.radians(lat)))
    return lon + math.degrees(dlon), lat + math.degrees(dlat)


def test_ten_reports_within_50_m_are_one_cluster() -> None:
    rng = random.Random(11)
    det = DuplicateClusters(ClusterConfig(default=ClusterRule(radius_m=50)))
    base = (119.30, 26.06)
    ids, verdicts = set(), []
    for i in range(10):
        r, a = rng.uniform(0, 24), rng.uniform(0, 2 * math.pi)  # pairwise within 48 m
        lon, lat = offset(*base, r * math.cos(a), r * math.sin(a))
        got = det.observe(f"e{i}", "facilities.damaged_road", T0 + i * HOUR, lon, lat, "G1")
        ids.add(got.cluster_id)
        verdicts += got.verdicts
    assert ids == {"facilities.damaged_road/e0"}
    assert verdicts[-1].observed == 10 and verdicts[-1].severity == "major"
    assert verdicts[-1].evidence == tuple(f"e{i}" for i in range(10))
    assert verdicts[0].observed == 3  # fires at the first grade
    far = det.observe("x", "facilities.damaged_road", T0, *offset(*base, 120, 0))
    other = det.observe("y", "sanitation.exposed_garbage", T0, *base)
    assert far.cluster_id != "facilities.damaged_road/e0" and far.size == 1
    assert other.cluster_id == "sanitation.exposed_garbage/y"


def test_cluster_window_and_expiry_timer() -> None:
    rule = ClusterRule(radius_m=75, window=timedelta(hours=24))
    det = DuplicateClusters(ClusterConfig(default=rule))
    p = (119.30, 26.06)
    for i in range(3):
        det.observe(f"e{i}", "c", T0 + i * HOUR, *p)
    assert det.expire(T0 + 30 * HOUR, T0 + 20 * HOUR) == []  # watermark behind: nothing ages
    quiet = det.expire(T0 + 30 * HOUR, T0 + 30 * HOUR)
    assert [(v.kind, v.severity) for v in quiet] == [("duplicate_cluster", None)]
    assert det.observe("e9", "c", T0 + 31 * HOUR, *p).cluster_id == "c/e9"


def test_haversine_matches_a_known_distance() -> None:
    # one degree of latitude is about 111.2 km
    assert abs(haversine_m(119.3, 26.0, 119.3, 27.0) - 111_195) < 50


def test_cluster_rebuild_equals_streaming() -> None:
    rng = random.Random(2)
    rows = []
    for i in range(600):
        lon, lat = offset(119.3, 26.06, rng.uniform(0, 600), rng.uniform(0, 600))
        rows.append(
            ReportRow(f"e{i}", rng.choice("ab"), T0 + timedelta(minutes=7 * i), lon, lat, "G")
        )
    streamed = DuplicateClusters()
    for i, r in enumerate(rows):
        streamed.observe(r.event_id, r.category, r.at, r.lon, r.lat, r.grid)
        if i % 40 == 0:
            streamed.expire(r.at, r.at)
    end = rows[-1].at
    streamed.expire(end, end)
    assert rebuild_clusters(rows, watermark=end).snapshot() == streamed.snapshot()
    assert any(size >= 3 for *_, size, _, _ in streamed.snapshot().values())


def test_repeat_complaints_by_caller_and_address() -> None:
    det = RepeatComplaints(RepeatConfig(within=timedelta(days=7)))
    day = timedelta(days=1)
    assert det.observe("h1", "disputes.noise_complaint", T0, "caller-a", "12 Wusi Rd") == []
    second = det.observe("h2", "disputes.noise_complaint", T0 + 2 * day, "caller-a", "")
    assert [(v.key, v.severity, v.evidence) for v in second] == [
        ({"caller": "caller-a", "category": "disputes.noise_complaint"}, "info", ("h1", "h2"))
    ]
    other_caller_same_address = det.observe(
        "h3", "disputes.noise_complaint", T0 + 3 * day, "caller-b", " 12  wusi rd."
    )
    assert [v.key.get("address") for v in other_caller_same_address] == [address_key("12 Wusi Rd")]
    assert det.observe("h4", "order.street_vending", T0 + 3 * day, "caller-a", "") == []
    third = det.observe("h5", "disputes.noise_complaint", T0 + 4 * day, "caller-a", "")
    assert [v.severity for v in third] == ["minor"]
    # outside D days: a complaint 8 days after the last one starts afresh
    assert det.observe("h6", "facilities.broken_streetlight", T0, "caller-z") == []
    assert det.observe("h7", "facilities.broken_streetlight", T0 + 8 * day, "caller-z") == []


def test_repeat_complaints_age_out_on_the_timer() -> None:
    det = RepeatComplaints(RepeatConfig(within=timedelta(days=7)))
    day = timedelta(days=1)
    det.observe("h1", "c", T0, "caller-a")
    det.observe("h2", "c", T0 + day, "caller-a")
    assert det.expire(T0 + 8 * day, T0 + 6 * day) == []  # watermark behind
    assert [v.severity for v in det.expire(T0 + 8 * day, T0 + 8 * day)] == [None]
    assert det.subjects == {}


def test_repeat_rebuild_equals_streaming() -> None:
    rng = random.Random(4)
    rows = [
        ReportRow(
            f"h{i}",
            rng.choice("xy"),
            T0 + timedelta(hours=5 * i),
            0.0,
            0.0,
            caller_hash=f"c{rng.randrange(30)}",
            address=f"{rng.randrange(40)} Main St",
        )
        for i in range(500)
    ]
    cfg = RepeatConfig(within=timedelta(days=10))
    streamed = RepeatComplaints(cfg)
    for i, r in enumerate(rows):
        streamed.observe(r.event_id, r.category, r.at, r.caller_hash, r.address)
        if i % 9 == 0:
            streamed.expire(r.at, r.at)
    end = rows[-1].at
    streamed.expire(end, end)
    assert rebuild_repeats(rows, cfg, watermark=end).snapshot() == streamed.snapshot()
