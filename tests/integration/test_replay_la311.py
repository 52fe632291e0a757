"""Replay real LA 311 exports through broker -> worker -> embedded ClickHouse and check the
per-council hourly counts against a pandas groupby of the CSVs."""

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from shapely.geometry import Point, shape

from core.city import UNLOCATED, load_city
from core.settings import REPO_ROOT
from sources.formats import load_format
from sources.replay import read_export
from tests.integration.conftest import publish_recorded
from tests.integration.harness import PipelineEnv, WorkerProc, to_epoch, wait_processed

DATA = Path("/work/shared/data/la311")
if not DATA.exists():
    DATA = REPO_ROOT.parent / "shared" / "data" / "la311"
FILES = sorted(DATA.glob("*.csv"))
LA = REPO_ROOT / "config" / "cities" / "la.yaml"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not FILES, reason=f"LA 311 files not found in {DATA}"),
]


def pandas_hourly() -> Counter:
    """Independent: straight from the CSVs with pandas (council from NC, else the polygon)."""
    city = load_city(LA)
    polys = [(g.code, shape(g.polygon.model_dump())) for g in city.iter_grids()]
    frames = [pd.read_csv(f, dtype=str, keep_default_na=False) for f in FILES]
    df = pd.concat(frames, ignore_index=True)
    created = pd.to_datetime(df["CreatedDate"], format="%m/%d/%Y %I:%M:%S %p")
    created = created.dt.tz_localize(
        "America/Los_Angeles", ambiguous=True, nonexistent="shift_forward"
    ).dt.tz_convert("UTC")

    def grid(row):
        if row.NC.strip():
            return f"NC{int(row.NC):03d}"
        try:
            lat, lon = float(row.Latitude), float(row.Longitude)
        except ValueError:
            return UNLOCATED
        p = Point(lon, lat)
        return next((c for c, poly in polys if poly.covers(p)), UNLOCATED)

    df["grid"] = [grid(r) for r in df.itertuples()]
    df["hour"] = created.dt.floor("h")
    g = df.groupby(["grid", "hour"]).size()
    return Counter({(grid, int(hour.timestamp())): int(n) for (grid, hour), n in g.items()})


def test_la311_hourly_counts_per_council(broker, tmp_path):
    fmt = load_format("la311")
    emissions = []
    for f in FILES:
        batch = read_export(f, fmt)
        assert batch.report.invalid == []
        emissions.extend(batch.emissions)
    penv = PipelineEnv(broker, f"chdb://{tmp_path}/chdb", LA, tmp_path / "pipe")
    worker = WorkerProc(penv).start().wait_ready()
    try:
        sent, ends = publish_recorded(penv, emissions)
        assert len(sent) == len(emissions) == 19_999
        wait_processed([worker], ends)
        rows = worker.query(
            "SELECT grid_code, bucket, sum(n) FROM gridpulse.counts_1h "
            "WHERE source = 'hotline' "
            "GROUP BY grid_code, bucket HAVING sum(n) > 0"
        )
        got = Counter({(g, to_epoch(b)): int(n) for g, b, n in rows})
        [[late]] = worker.query("SELECT sum(n) FROM gridpulse.late_counts")
        [[dead]] = worker.query("SELECT count() FROM gridpulse.dead_letters")
    finally:
        worker.stop()
    want = pandas_hourly()
    assert sum(want.values()) == 19_999
    assert int(late or 0) == 0 and int(dead) == 0
    assert got == want
