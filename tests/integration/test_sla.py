"""SLA timers on the real pipeline: cases with known deadlines produce exactly the expected
warnings and breaches, none missing and none twice, also across a worker SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from core.city import load_city
from core.events import CaseEvent, HotlineRequest, encode
from sources.emission import Emission
from tests.integration.conftest import publish_recorded
from tests.integration.harness import ROOT, PipelineEnv, WorkerProc, read_topic
from tests.integration.test_pipeline import SAMPLE

pytestmark = pytest.mark.integration
FAST_SLA = ROOT / "tests" / "fixtures" / "sla_fast.yaml"
# case -> seconds after opening when it is registered (None: never); limit 18 s,
# warnings at 9 s and 14.4 s
REGISTER_AFTER = {"r0": 3.0, "r1": 11.5, "r2": 16.0, "r3": None}
EXPECTED = {
    "r1": ["warning/1"],
    "r2": ["warning/1", "warning/2"],
    "r3": ["warning/1", "warning/2", "breach/0"],
}


def expected_ids() -> set[str]:
    return {f"H-{c}/register#0/{k}" for c, kinds in EXPECTED.items() for k in kinds}


def hotline(city, case: str, at: datetime) -> Emission:
    sub = next(s.code for c in city.categories for s in c.subcategories if "hotline" in s.streams)
    grid = next(city.iter_grids()).code
    msg = HotlineRequest(
        event_id=f"e-{case}",
        occurred_at=at,
        request_id=case,
        channel="phone",
        category=sub,
        grid=grid,
        caller_id="13800000000",
    )
    return Emission(at, "hotline", grid.encode(), encode(msg), msg)


def register(case: str, at: datetime) -> Emission:
    msg = CaseEvent(event_id=f"reg-{case}", occurred_at=at, case_id=f"H-{case}", action="register")
    return Emission(at, "case", msg.case_id.encode(), encode(msg), msg)


def run_cases(penv: PipelineEnv, worker: WorkerProc, kill_at: float | None) -> WorkerProc:
    city = load_city(SAMPLE)
    t0 = time.time()
    opened = datetime.fromtimestamp(t0, UTC)
    publish_recorded(penv, [hotline(city, c, opened) for c in REGISTER_AFTER])
    schedule = sorted((after, c) for c, after in REGISTER_AFTER.items() if after is not None)
    killed = False
    for after, case in schedule:
        if kill_at is not None and not killed and after > kill_at:
            time.sleep(max(0.0, t0 + kill_at - time.time()))
            worker.kill()
            worker = WorkerProc(penv, "restarted").start()
            killed = True
        time.sleep(max(0.0, t0 + after - time.time()))
        publish_recorded(penv, [register(case, datetime.fromtimestamp(time.time(), UTC))])
    worker.wait_ready()
    time.sleep(max(0.0, t0 + 24 - time.time()))
    return worker


@pytest.mark.parametrize("kill_at", [None, 12.0], ids=["steady", "sigkill"])
def test_exact_warnings_and_breaches(broker, tmp_path, kill_at):
    penv = PipelineEnv(
        broker,
        f"chdb://{tmp_path}/chdb",
        SAMPLE,
        tmp_path / "p",
        extra={
            "GRIDPULSE_SLA_FILE": str(FAST_SLA),
            "GRIDPULSE_SLA__TICK_SECONDS": "0.25",
            "GRIDPULSE_SINK__BATCH_SECONDS": "0.25",
        },
    )
    worker = WorkerProc(penv).start().wait_ready()
    try:
        worker = run_cases(penv, worker, kill_at)
        rows = worker.query("SELECT alert_id, count() FROM gridpulse.sla_events GROUP BY alert_id")
        stored = Counter({a: int(n) for a, n in rows})
        assert set(stored) == expected_ids()
        assert all(n == 1 for n in stored.values()), f"fired twice: {stored}"
        published = read_topic(broker, f"{penv.prefix}.sla.events", len(expected_ids()))
        assert {r.key.decode() for r in published} <= {f"H-{c}" for c in REGISTER_AFTER}
        import json

        assert {json.loads(r.value)["alert_id"] for r in published} == expected_ids()
        states = dict(worker.query("SELECT case_id, stage FROM gridpulse.cases ORDER BY case_id"))
        assert states == {
            "H-r0": "registered",
            "H-r1": "registered",
            "H-r2": "registered",
            "H-r3": "accepted",
        }
        # leadership's view through the CLI (served by this worker's query view)
        env = penv.env(worker.port)
        day = datetime.now(UTC).date()
        kpi = subprocess.run(
            [
                sys.executable,
                "-m",
                "gridpulse.cli",
                "kpi",
                "--format",
                "tsv",
                "--level",
                "city",
                "--start",
                f"{day}T00:00+00:00",
                "--end",
                f"{day + timedelta(days=1)}T00:00+00:00",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert kpi.returncode == 0, kpi.stderr
        head, row = kpi.stdout.splitlines()[:2]
        city = dict(zip(head.split("\t"), row.split("\t"), strict=True))
        assert (city["accepted"], city["registered"], city["registration_rate"]) == (
            "4",
            "3",
            "75.00%",
        )
        countdown = subprocess.run(
            [sys.executable, "-m", "gridpulse.cli", "countdown"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert countdown.returncode == 0, countdown.stderr
        assert sorted(line.split("\t")[0] for line in countdown.stdout.splitlines()) == [
            "H-r0",
            "H-r1",
            "H-r2",
            "H-r3",
        ]
    finally:
        worker.stop()
