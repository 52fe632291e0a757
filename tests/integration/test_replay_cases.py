"""Replay the LA 311 exports with their case lifecycles (created / ServiceDate / ClosedDate)
through broker -> worker -> case agent -> embedded ClickHouse, and check time-to-close and
on-time counts in ``case_state`` against an independent pandas computation of the CSVs.

Requests and case events go out together, as fast as the publisher can, in the export's
event-time order (a plain ``replay --speed 0``): many lifecycle events reach the case agent
before the ``accept`` the worker derives from their request. They are held (a ``held`` row)
and applied when the case opens, so every event is applied exactly once and nothing is
recorded as ``illegal`` whatever the arrival order.

On time: the export's due date becomes an approved deadline (an instant), so a case is on
time exactly when it closed at or before its due date.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from core.settings import REPO_ROOT
from sources.formats import load_format
from sources.replay import read_export
from tests.integration.conftest import publish_recorded
from tests.integration.harness import PipelineEnv, WorkerProc

DATA = Path("/work/shared/data/la311")
if not DATA.exists():
    DATA = REPO_ROOT.parent / "shared" / "data" / "la311"
FILES = sorted(DATA.glob("*.csv"))
LA = REPO_ROOT / "config" / "cities" / "la.yaml"
LA_SLA = REPO_ROOT / "config" / "sla" / "la.yaml"
LA_FORMAT = REPO_ROOT / "sources" / "formats" / "la311.yaml"
DB = "gridpulse"
TZ = "America/Los_Angeles"
CSV_FMT = "%m/%d/%Y %I:%M:%S %p"
# the rule of sources/formats/la311.yaml, restated: which LA statuses end a case how
CLOSED, VOID, OPEN = {"Closed"}, {"Cancelled", "Referred Out"}, {"Open"}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not FILES, reason=f"LA 311 files not found in {DATA}"),
]


def _local(s: pd.Series) -> pd.Series:
    t = pd.to_datetime(s.replace("", None), format=CSV_FMT)
    return t.dt.tz_localize(TZ, ambiguous=True, nonexistent="shift_forward")


def pandas_cases() -> pd.DataFrame:
    """Independent: one row per request straight from the CSVs (no gridpulse code)."""
    df = pd.concat(
        [pd.read_csv(f, dtype=str, keep_default_na=False) for f in FILES], ignore_index=True
    )
    assert set(df["Status"]) <= CLOSED | VOID | OPEN
    created, closed = _local(df["CreatedDate"]), _local(df["ClosedDate"])
    updated, due = _local(df["UpdatedDate"]), _local(df["ServiceDate"])
    closing = df["Status"].isin(CLOSED)
    voiding = df["Status"].isin(VOID)
    end = closed.fillna(updated)
    end = end.where(~voiding | end.notna(), created)
    end = end.where(closing | voiding)
    end = end.where(~(end < created), created)  # an end before creation is moved to it
    on_time = end <= due
    out = pd.DataFrame(
        {
            "case_id": "H-" + df["SRNumber"],
            "type": df["RequestType"],
            "closed": closing,
            "voided": voiding,
            "ttc": (end - created).dt.total_seconds(),
            # the export's due date is the deadline only when it lies after the creation time
            "has_due": due.notna() & (due > created),
            "on_time_due": on_time,
        }
    )
    return out.set_index("case_id")


def wait_count(worker: WorkerProc, sql: str, want: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        [[n]] = worker.query(sql)
        got = int(n)
        if got >= want:
            return got
        if not worker.alive():
            raise RuntimeError(f"worker died:\n{worker.log_tail()}")
        time.sleep(0.5)
    raise TimeoutError(f"{sql}: {got} of {want} after {timeout}s\n{worker.log_tail()}")


def test_la311_case_lifecycle_matches_pandas(broker, tmp_path):
    t0 = time.monotonic()
    fmt = load_format("la311")
    requests, case_events = [], []
    for f in FILES:
        batch = read_export(f, fmt, cases=True)
        assert batch.report.invalid == []
        requests += [e for e in batch.emissions if e.stream == "hotline"]
        case_events += [e for e in batch.emissions if e.stream == "case"]
    n = len(requests)
    assert n == 19_999
    penv = PipelineEnv(broker, f"chdb://{tmp_path}/chdb", LA, tmp_path / "pipe")
    worker = WorkerProc(penv).start().wait_ready()
    try:
        t1 = time.monotonic()
        mixed = sorted(requests + case_events, key=lambda e: e.record_ts.timestamp())
        sent, _ = publish_recorded(penv, mixed)
        assert len(sent) == len(mixed)
        t2 = time.monotonic()
        # every LA category has an SLA policy ("*"), so every request opens a case
        total = wait_count(
            worker,
            f"SELECT count() FROM {DB}.case_events WHERE outcome != 'held'",
            n + len(case_events),
            timeout=240,
        )
        print(f"\nsetup {t1 - t0:.1f}s, publish {t2 - t1:.1f}s, apply {time.monotonic() - t2:.1f}s")
        outcomes = dict(
            worker.query(f"SELECT outcome, count() FROM {DB}.case_events GROUP BY outcome")
        )
        [[alerts]] = worker.query(f"SELECT count() FROM {DB}.sla_events")
        rows = worker.query(
            "SELECT case_id, stage, voided, toUInt32(opened_at), toUInt32(closed_at), "
            f"late_stages FROM {DB}.cases"
        )
    finally:
        worker.stop()
    assert total == n + len(case_events)
    # nothing illegal: due <= created is not emitted, ends before creation are moved to it,
    # and events that arrive before their case opens are held, then applied once
    counted = {k: int(v) for k, v in outcomes.items()}
    assert counted.pop("applied") == total
    assert set(counted) <= {"held"}, counted

    got = pd.DataFrame(
        rows, columns=["case_id", "stage", "voided", "opened", "closed_at", "late"]
    ).set_index("case_id")
    want = pandas_cases()
    assert len(got) == len(want) == n
    got = got.loc[want.index]
    is_closed = got["stage"] == "closed"
    is_voided = got["voided"] == "1"
    assert (is_closed == want["closed"]).all()
    assert (is_voided == want["voided"]).all()
    assert ((got["stage"] == "voided") == is_voided).all()
    assert set(got.loc[~want["closed"] & ~want["voided"], "stage"]) == {"acknowledged"}

    ttc = got["closed_at"].astype(int) - got["opened"].astype(int)
    closed = want["closed"]
    assert (ttc[closed] == want.loc[closed, "ttc"].astype(int)).all()
    assert int(ttc[closed].sum()) == int(want.loc[closed, "ttc"].sum())
    per_type_got = ttc[closed].groupby(want.loc[closed, "type"]).mean()
    per_type_want = want.loc[closed].groupby("type")["ttc"].mean()
    pd.testing.assert_series_equal(per_type_got, per_type_want, check_names=False)

    judged = closed & want["has_due"]
    on_time_got = ~got.loc[judged, "late"].str.split(",").apply(lambda s: "handle" in s)
    on_time_want = want.loc[judged, "on_time_due"]
    mismatch = on_time_got != on_time_want
    assert not mismatch.any(), (
        f"{int(mismatch.sum())} on-time mismatches, e.g.\n"
        f"{pd.concat([got.loc[judged][mismatch], want.loc[judged][mismatch]], axis=1).head()}"
    )
    print(
        f"\ncases {n}, closed {int(closed.sum())}, voided {int(want['voided'].sum())}, "
        f"open {int((~closed & ~want['voided']).sum())}, judged by due {int(judged.sum())}, "
        f"on time {int(on_time_got.sum())}, "
        f"time-to-close sum {int(want.loc[closed, 'ttc'].sum())} s, "
        f"mean {want.loc[closed, 'ttc'].mean():.0f} s; {len(case_events)} replayed case "
        f"events, {alerts} SLA alerts"
    )
