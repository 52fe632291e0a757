"""Onboard a city that is not bundled with YAML only, and replay its export end to end.

Inside the test: a GeoJSON of 3 x 3 grid squares ("Springfield", property names of its own,
one bow-tied polygon to repair), a format file of its own (minute-precision created times,
12-hour closed times, ISO 8601 due dates with an offset, prefix and regex category patterns,
``unknown_grid: locate``) and a 311 export built from a seeded generator. Then, through the
real command line: ``gridpulse city import --geojson`` builds the city, ``gridpulse city
import --export`` builds a second one from the export alone, ``replay --dry-run`` checks the
pair, and ``gridpulse replay`` publishes to a real broker and worker. Per-grid hourly counts
(``counts_1h``) and on-time closure (``cases``) must equal a pandas computation of the CSV
that restates the rules independently (shapely point-in-polygon, pandas time parsing).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import yaml
from shapely.geometry import Point, shape

from core.city import UNLOCATED, load_city
from tests.integration.harness import ROOT, PipelineEnv, WorkerProc, to_epoch

pytestmark = pytest.mark.integration

DB = "gridpulse"
TZ = ZoneInfo("America/Chicago")
LON0, LAT0, STEP = -89.70, 39.75, 0.01  # the grid squares' south-west corner and size
N = 3  # 3 x 3 grids
ROWS = 400
SEED = 11
CREATED_FMT = "%m/%d/%y %H:%M"  # minute precision
CLOSED_FMT = "%m/%d/%Y %I:%M:%S %p"  # 12-hour clock
TYPES = ("PW-Pothole Repair", "PW-Pothole Patch", "Graffiti (private)", "Rats", "Noise")

FORMAT = {
    "name": "springfield311",
    "description": "Springfield service requests (a city gridpulse does not bundle)",
    "checked_against": "the synthetic export this test writes",
    "timezone": "America/Chicago",
    "datetime_format": CREATED_FMT,
    "datetime_formats": {"closed": CLOSED_FMT, "due": "iso8601"},
    "columns": {
        "id": "Ticket",
        "created": "Opened",
        "closed": "Closed",
        "due": "Due",
        "status": "State",
        "category": "Kind",
        "grid": "Beat",
        "lat": "Y",
        "lon": "X",
        "address": ["Where"],
    },
    "status_map": {"DONE": "closed", "OPEN": "open", "DUP": "duplicate"},
    "categories": {
        "groups": {"roads": "Roads", "clean": "Cleanliness", "misc": "Other"},
        "map": {"Rats": "clean.rodents"},
        "patterns": [
            {"prefix": "PW-Pothole", "code": "roads.pothole", "name": "Pothole"},
            {"regex": "(?i)graffiti.*", "code": "clean.graffiti", "name": "Graffiti"},
        ],
        "other": "misc.other",
    },
    "grid_template": "SP-{value}",
    "unknown_grid": "locate",
}


def square(i: int, j: int) -> list[list[list[float]]]:
    x, y = LON0 + i * STEP, LAT0 + j * STEP
    return [[[x, y], [x + STEP, y], [x + STEP, y + STEP], [x, y + STEP], [x, y]]]


def geojson() -> dict:
    features = []
    for i in range(N):
        for j in range(N):
            ring = square(i, j)
            if (i, j) == (1, 1):  # a tiny bow-tie loop at a corner: repairable, reported
                x, y = ring[0][3]
                ring = [
                    [*ring[0][:4], [x + 0.0002, y + 0.0002], [x - 0.0002, y + 0.0002], *ring[0][3:]]
                ]
            features.append(
                {
                    "type": "Feature",
                    "properties": {
                        "BEAT_ID": f"SP-{i}{j}",
                        "BEAT_NAME": f"Beat {i}{j}",
                        "NBHD": f"N{i}",
                        "WARD": "W1" if i < 2 else "W2",
                        "HH": 250 + 10 * j,
                    },
                    "geometry": {"type": "Polygon", "coordinates": ring},
                }
            )
    return {"type": "FeatureCollection", "features": features}


def export_rows() -> list[dict[str, str]]:
    """A seeded export: coded rows, unknown codes with and without points, uncoded rows."""
    rnd = random.Random(SEED)
    start = datetime(2026, 3, 9, 7, 0, tzinfo=TZ)  # a Monday after the DST change
    rows = []
    for k in range(ROWS):
        created = start + timedelta(minutes=rnd.randrange(0, 4 * 24 * 60))
        i, j = rnd.randrange(N), rnd.randrange(N)
        x = LON0 + (i + rnd.uniform(0.05, 0.95)) * STEP
        y = LAT0 + (j + rnd.uniform(0.05, 0.95)) * STEP
        kind = rnd.random()
        beat, lon, lat = f"{i}{j}", f"{x:.6f}", f"{y:.6f}"
        if kind < 0.1:
            beat = "99"  # unknown code, usable point: located by point
        elif kind < 0.14:
            beat, lon, lat = "99", "", ""  # unknown code, no point: dead letter
        elif kind < 0.22:
            beat = ""  # no code: located by point
        elif kind < 0.25:
            beat, lon, lat = "", "", ""  # nothing: UNLOCATED
        due = created + timedelta(hours=rnd.choice((4, 24, 72)))
        state = rnd.choices(("DONE", "OPEN", "DUP"), weights=(7, 2, 1))[0]
        closed = ""
        if state == "DONE":
            closed_at = created + timedelta(minutes=rnd.randrange(1, 5 * 24 * 60))
            if closed_at == due:
                closed_at += timedelta(minutes=1)
            closed = closed_at.strftime(CLOSED_FMT)
        rows.append(
            {
                "Ticket": f"SP{k:05d}",
                "Opened": created.strftime(CREATED_FMT),
                "Closed": closed,
                "Due": due.isoformat(),
                "State": state,
                "Kind": rnd.choice(TYPES),
                "Beat": beat,
                "X": lon,
                "Y": lat,
                "Where": f"{k} Main St",
            }
        )
    return rows


def gridpulse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gridpulse.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def pandas_expectation(csv: Path, city_file: Path) -> tuple[Counter, pd.Series, int]:
    """Hourly counts per grid, on-time per closed case id, dead letters: from the CSV."""
    city = load_city(city_file)
    polys = [(g.code, shape(g.polygon.model_dump())) for g in city.iter_grids() if g.polygon]
    codes = {g.code for g in city.iter_grids()}
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    created = pd.to_datetime(df["Opened"], format=CREATED_FMT).dt.tz_localize(str(TZ))

    def grid(row) -> str | None:
        code = f"SP-{row.Beat}" if row.Beat else None
        if code in codes:
            return code
        if row.X and row.Y:
            p = Point(float(row.X), float(row.Y))
            return next((c for c, poly in polys if poly.covers(p)), UNLOCATED)
        return None if code else UNLOCATED  # an unknown code without a point: dead letter

    df["grid"] = [grid(r) for r in df.itertuples()]
    dead = int(df["grid"].isna().sum())
    df["hour"] = created.dt.tz_convert("UTC").dt.floor("h")
    live = df[df["grid"].notna()]
    counts = Counter(
        {
            (g, int(h.timestamp())): int(n)
            for (g, h), n in live.groupby(["grid", "hour"]).size().items()
        }
    )
    closed = live[live["State"] == "DONE"]
    closed_at = pd.to_datetime(closed["Closed"], format=CLOSED_FMT).dt.tz_localize(str(TZ))
    due = pd.to_datetime(closed["Due"], utc=True)
    on_time = pd.Series(
        (closed_at.dt.tz_convert("UTC") <= due).to_numpy(), index="H-" + closed["Ticket"]
    )
    return counts, on_time, dead


def query(worker: WorkerProc, sql: str) -> list[list[str]]:
    """Rows of a read-only query through the worker's web view (TSV)."""
    r = worker.http.post("/query/", json={"sql": sql})
    assert r.status_code == 200, r.text
    return [line.split("\t") for line in r.text.splitlines() if line]


def wait_for(worker: WorkerProc, sql: str, want: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        [[n]] = query(worker, sql)
        got = int(n)
        if got >= want:
            return got
        if not worker.alive():
            raise RuntimeError(f"worker died:\n{worker.log_tail()}")
        time.sleep(0.5)
    raise TimeoutError(f"{sql}: {got} of {want} after {timeout}s\n{worker.log_tail()}")


def test_new_city_from_yaml_only_replays_end_to_end(broker, tmp_path: Path) -> None:
    boundaries = tmp_path / "beats.geojson"
    boundaries.write_text(json.dumps(geojson()))
    fmt_file = tmp_path / "springfield311.yaml"
    fmt_file.write_text(yaml.safe_dump(FORMAT, sort_keys=False))
    csv = tmp_path / "export.csv"
    pd.DataFrame(export_rows()).to_csv(csv, index=False)
    city_file = tmp_path / "springfield.yaml"

    built = gridpulse(
        "city", "import", "--geojson", str(boundaries), "--format", str(fmt_file),
        "--code", "springfield", "--name", "Springfield", "--grid-code", "BEAT_ID",
        "--grid-name", "BEAT_NAME", "--community-code", "NBHD", "--street-code", "WARD",
        "--households", "HH", "--out", str(city_file),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "repaired: feature 5 (grid SP-11)" in built.stderr
    city = load_city(city_file)
    assert len(list(city.iter_grids())) == N * N
    assert city.grid_paths["SP-21"].street == "W2"
    assert set(city.subcategories) == {
        "roads.pothole", "clean.rodents", "clean.graffiti", "misc.other"
    }  # fmt: skip

    from_export = tmp_path / "springfield_export.yaml"
    derived = gridpulse(
        "city", "import", "--export", str(csv), "--format", str(fmt_file),
        "--code", "springfield_export", "--out", str(from_export),
    )  # fmt: skip
    assert derived.returncode == 0, derived.stderr
    derived_city = load_city(from_export)
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert {g.code for g in derived_city.iter_grids()} == {f"SP-{b}" for b in df["Beat"] if b}
    for g in derived_city.iter_grids():  # each grid's cell holds the median of its points
        rows = df[(df["Beat"] == g.code[3:]) & (df["X"] != "")]
        median = Point(rows["X"].astype(float).median(), rows["Y"].astype(float).median())
        assert shape(g.polygon.model_dump()).covers(median), g.code

    penv = PipelineEnv(broker, f"chdb://{tmp_path}/chdb", city_file, tmp_path / "pipe")
    worker = WorkerProc(penv).start().wait_ready()
    try:
        env = penv.env(worker.port)
        dry = gridpulse("--city", str(city_file), "replay", str(csv), "--format", str(fmt_file),
                        "--dry-run", env=env)  # fmt: skip
        assert dry.returncode == 0, dry.stderr
        assert "format and city agree" in dry.stdout and "nothing published" in dry.stdout
        mismatch = gridpulse("--city", "la", "replay", str(csv), "--format", str(fmt_file),
                             env=env)  # fmt: skip
        assert mismatch.returncode == 2 and "not published" in mismatch.stderr

        run = gridpulse("--city", str(city_file), "replay", str(csv), "--format", str(fmt_file),
                        env=env)  # fmt: skip
        assert run.returncode == 0, run.stderr
        want_counts, want_on_time, want_dead = pandas_expectation(csv, city_file)
        for path, n in (
            ("unknown_code_located_by_point", None),
            ("unknown_code_dead_letter", want_dead),
        ):
            assert f"'{path}'" in run.stdout
            if n is not None:
                assert f"'{path}' {n}" in run.stdout
        wait_for(worker, f"SELECT count() FROM {DB}.dead_letters", want_dead)
        wait_for(worker, f"SELECT count() FROM {DB}.events", ROWS - want_dead)
        wait_for(
            worker,
            f"SELECT sum(n) FROM {DB}.counts_1h WHERE source = 'hotline'",
            ROWS - want_dead,
        )
        wait_for(
            worker,
            f"SELECT count() FROM {DB}.cases WHERE stage = 'closed'",
            len(want_on_time),
        )
        rows = query(
            worker,
            f"SELECT grid_code, bucket, sum(n) FROM {DB}.counts_1h WHERE source = 'hotline' "
            "GROUP BY grid_code, bucket HAVING sum(n) > 0",
        )
        cases = query(worker, f"SELECT case_id, late_stages FROM {DB}.cases WHERE stage = 'closed'")
        reasons = dict(
            query(worker, f"SELECT reason_code, count() FROM {DB}.dead_letters GROUP BY 1")
        )
    finally:
        worker.stop()
    got_counts = Counter({(g, to_epoch(b)): int(n) for g, b, n in rows})
    assert sum(want_counts.values()) == ROWS - want_dead
    assert got_counts == want_counts
    assert want_dead > 0 and reasons == {"unknown_grid": str(want_dead)}
    got_on_time = pd.Series(
        {cid: "handle" not in late.split(",") for cid, late in cases}
    ).sort_index()
    assert 0 < int(want_on_time.sum()) < len(want_on_time)  # both outcomes occur
    pd.testing.assert_series_equal(got_on_time, want_on_time.sort_index(), check_names=False)
    print(
        f"\n{ROWS} rows: {want_dead} dead letters, {len(want_counts)} grid-hours, "
        f"{len(want_on_time)} closed, {int(want_on_time.sum())} on time; "
        f"UNLOCATED {sum(n for (g, _), n in want_counts.items() if g == UNLOCATED)}"
    )
