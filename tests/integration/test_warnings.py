"""Early warnings on the real pipeline: a burst of inspector reports in one grid, after a
week of ordinary traffic, raises one count_spike warning for that grid that later resolves:
each revision once in the store and on the warnings topic, also across a worker SIGKILL.
Grids nobody patrolled carry one open patrol gap each; the patrolled ones none."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from core.city import load_city
from core.events import SupervisorReport, encode
from core.warning import fingerprint
from gridpulse.live import WARNINGS_SQL
from sources.emission import Emission
from tests.integration.conftest import publish_recorded
from tests.integration.harness import GRACE_S, PipelineEnv, WorkerProc, read_topic
from tests.integration.test_pipeline import SAMPLE

pytestmark = pytest.mark.integration
HOUR = 3600
BASELINE_DAYS = 9
BURST = 25


def report(grid: str, category: str, at: float, n: int) -> Emission:
    when = datetime.fromtimestamp(at, UTC)
    msg = SupervisorReport(
        event_id=f"w-{grid}-{int(at)}-{n}",
        occurred_at=when,
        report_id=f"w-{grid}-{int(at)}-{n}",
        grid=grid,
        category=category,
        reporter_id="inspector-7",
    )
    return Emission(when, "inspector", grid.encode(), encode(msg), msg)


def traffic(grids: list[str], category: str, now_hour: int) -> tuple[list[Emission], int]:
    """Ordinary reports (0-3 an hour per grid) for nine days up to the last closed hour, and a
    burst in the first grid six hours ago; returns the emissions and the burst's hour."""
    rng = random.Random(11)
    burst_hour = now_hour - 6 * HOUR
    out = []
    for hour in range(now_hour - BASELINE_DAYS * 24 * HOUR, now_hour - HOUR, HOUR):
        for grid in grids:
            n = BURST if (hour == burst_hour and grid == grids[0]) else rng.choice([0, 1, 1, 2, 3])
            out += [report(grid, category, hour + 60 + i * 7, i) for i in range(n)]
    out.sort(key=lambda e: e.record_ts)
    return out, burst_hour


def wait_judged(worker: WorkerProc, until_s: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        stats = worker.stats() or {}
        if stats.get("warnings", {}).get("last_judged", 0) >= until_s:
            return
        time.sleep(0.25)
    raise AssertionError(f"hours up to {until_s} not judged: {worker.stats()}")


@pytest.mark.parametrize("kill", [False, True], ids=["steady", "sigkill"])
def test_a_burst_raises_one_warning_that_resolves(broker, tmp_path, kill):
    city = load_city(SAMPLE)
    grids = [g.code for g in list(city.iter_grids())[:3]]
    category = next(
        s.code for c in city.categories for s in c.subcategories if "inspector" in s.streams
    )
    path = city.grid_paths[grids[0]]
    penv = PipelineEnv(
        broker,
        f"chdb://{tmp_path}/chdb",
        SAMPLE,
        tmp_path / "p",
        extra={
            "GRIDPULSE_DETECT__BACKFILL_HOURS": "8",
            "GRIDPULSE_DETECT__TICK_SECONDS": "0.5",
            "GRIDPULSE_SINK__BATCH_SECONDS": "0.25",
        },
    )
    now_hour = int(time.time()) // HOUR * HOUR
    if time.time() - now_hour < GRACE_S + 30:  # the last hour must have closed already
        time.sleep(GRACE_S + 30 - (time.time() - now_hour))
    emissions, burst_hour = traffic(grids, category, now_hour)
    publish_recorded(penv, emissions)
    worker = WorkerProc(penv).start().wait_ready()
    try:
        if kill:
            deadline = time.time() + 120
            while time.time() < deadline:
                if int(worker.query("SELECT count() FROM gridpulse.warnings")[0][0]) > 0:
                    break
                time.sleep(0.05)
            worker.kill()
            worker = WorkerProc(penv, "restarted").start().wait_ready()
        wait_judged(worker, now_hour - 2 * HOUR)
        spike = fingerprint(
            "count_spike",
            {
                "district": path.district,
                "street": path.street,
                "community": path.community,
                "grid_code": grids[0],
                "category": category,
                "scale": "hour",
            },
        )
        log = worker.query(
            f"SELECT revision, status, toUInt32(window_start), observed FROM gridpulse.warning_log "
            f"WHERE fingerprint = '{spike}' ORDER BY revision"
        )
        assert [(int(r), s) for r, s, _, _ in log] == [(0, "firing"), (1, "resolved")]
        assert int(log[0][2]) == burst_hour and float(log[0][3]) == BURST
        stored = worker.query(
            "SELECT fingerprint, revision FROM gridpulse.warning_log "
            "WHERE kind = 'count_spike' AND grid_code != ''"
        )
        assert {f for f, _ in stored} == {spike}, "only the burst's grid spikes"
        n = int(worker.query("SELECT count() FROM gridpulse.warning_log")[0][0])
        published = read_topic(broker, f"{penv.prefix}.warnings", n)
        revisions = Counter(
            (json.loads(r.value)["fingerprint"], json.loads(r.value)["revision"]) for r in published
        )
        assert {(spike, 0), (spike, 1)} <= set(revisions)
        active = worker.query(
            f"SELECT count() FROM gridpulse.active_warnings WHERE fingerprint = '{spike}'"
        )
        assert int(active[0][0]) == 0
        worker.query(WARNINGS_SQL.format(db="gridpulse"))  # the live view's panel runs
        gaps = dict(
            worker.query(
                "SELECT grid_code, count() FROM gridpulse.active_warnings "
                "WHERE kind = 'patrol_gap' GROUP BY grid_code"
            )
        )
        unpatrolled = next(g.code for g in city.iter_grids() if g.code not in grids)
        assert not set(gaps) & set(grids), "patrolled grids have no gap"
        assert int(gaps[unpatrolled]) == 1
    finally:
        worker.stop()
