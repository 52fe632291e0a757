"""KPI SQL on the real embedded engine: published figures reproduced, every KPI equal to an
independent pandas computation, rankings and the SLA countdown; once on clickhouse-server 18.16.
"""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.records import CASE_STATE_COLUMNS as STATE_COLUMNS
from core.settings import Settings
from gridpulse.store import store_schema
from sinks.clickhouse.kpis import (
    COUNTDOWN_COLUMNS,
    KEYS,
    RATES,
    STAGES,
    KpiDefinitions,
    as_dicts,
    columns,
    countdown_sql,
    kpi_sql,
    percent,
    rank,
    ranking_sql,
    ratio,
)

START = datetime(2025, 3, 1, tzinfo=UTC)
END = datetime(2025, 4, 1, tzinfo=UTC)
T0, T1 = int(START.timestamp()), int(END.timestamp())
DAY = 86_400
MAIN = ("accepted", "registered", "dispatched", "acknowledged", "handled", "verified", "closed")
STAMP = {  # main-line stage -> the timestamp of reaching it
    "registered": "registered_at",
    "dispatched": "dispatched_at",
    "acknowledged": "acknowledged_at",
    "handled": "handled_at",
    "verified": "verified_at",
    "closed": "closed_at",
}
TIMER = dict(zip(MAIN[:-1], STAGES, strict=True))  # stage -> the limit running in it
STREETS = [("D1", "S1"), ("D1", "S2"), ("D2", "S3"), ("D2", "S4"), ("D2", "S5")]
_dbs = itertools.count()


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from sinks.clickhouse.backend import ChdbBackend

    be = ChdbBackend(tmp_path_factory.mktemp("chdb"))
    yield be
    be.close_sync()


def fresh_db(be, name: str) -> str:
    be.db = f"kpi_{name}_{next(_dbs)}"
    be.migrate_sync(store_schema(Settings()))
    be.execute_sync(f"SYSTEM STOP MERGES {be.db}.case_state")  # keep old versions in parts
    return be.db


def case(i: int, **kw) -> dict:
    """A case_state row with every column; timestamps are epoch seconds (0 = not reached)."""
    row = dict.fromkeys(STATE_COLUMNS, 0)
    row.update(
        case_id=f"C{i:06d}",
        version=5,
        updated_at=T1,
        source="inspector",
        district="D1",
        street="S1",
        community="S1-C1",
        grid_code="S1-C1-G1",
        category="sanitation",
        subcategory="sanitation.overflowing_bin",
        unit="U1",
        stage="accepted",
        opened_at=T0 + i % (25 * DAY),
        stage_limit_unit="",
        rating="",
        late_stages="",
    )
    row.update(kw)
    return row


def reach(row: dict, stage: str, step: int = 3600) -> dict:
    """Set the main-line timestamps up to ``stage`` (each ``step`` after the last)."""
    t = row["opened_at"]
    for s in MAIN[1 : MAIN.index(stage) + 1]:
        t += step
        row[STAMP[s]] = t
    row["stage"] = stage
    return row


def older(row: dict) -> dict:
    """An earlier version of the case: registered and dispatched, overdue (must lose to the
    newer one through FINAL/argMax, or every count would change)."""
    old = case(
        0,
        **{
            k: row[k]
            for k in (
                "case_id",
                "opened_at",
                "source",
                "district",
                "street",
                "community",
                "grid_code",
                "unit",
            )
        },
    )
    reach(old, "dispatched", step=60)
    old.update(version=row["version"] - 2, stage_deadline=T1 - DAY - 7, late_stages="register")
    return old


def insert(be, rows: list[dict]) -> None:
    """Insert rows (one part per 20,000 rows: versions of a case in different parts are only
    deduplicated by FINAL/argMax, not by ReplacingMergeTree's merge on insert)."""
    frame = pd.DataFrame(rows, columns=list(STATE_COLUMNS))
    for i in range(0, len(frame), 20_000):
        be.insert_sync("case_state", frame.iloc[i : i + 20_000].reset_index(drop=True))


def city_row(be, db: str, defs: KpiDefinitions | None = None) -> dict:
    rows = be.rows_sync(kpi_sql(db, "city", START, END, defs))
    assert len(rows) == 1
    return as_dicts(columns("city"), rows)[0]


# --- 1. published figures ------------------------------------------------------------------


def test_fuzhou_registration_rate(backend):
    """Fuzhou: 立案率 = 33,928 registered / 36,314 accepted = 93.43 %."""
    db = fresh_db(backend, "fuzhou")
    rows = []
    for i in range(36_314):
        r = case(i)
        if i < 33_928:
            reach(r, "registered")
        elif i % 3 == 0:
            r.update(stage="rejected", rejected_at=r["opened_at"] + 600)
        rows.append(r)
    noise = [  # voided duplicates and cases of other periods: not counted
        reach(case(100_000 + i, voided=1), "registered") | {"stage": "voided"} for i in range(50)
    ] + [case(200_000 + i, opened_at=T1 + i) for i in range(40)]
    insert(backend, rows + noise)
    insert(backend, [older(r) for r in rows[::7]])  # older versions of 1 in 7, inserted last
    got = city_row(backend, db)
    assert (got["accepted"], got["registered"], got["voided"]) == (36_314, 33_928, 50)
    assert ratio(got["registered"], got["accepted"]) == 93.43
    assert percent(got["registration_rate"]) == 93.43


def test_tianmen_close_rates(backend):
    """Tianmen: 结案率 911 / 972 = 93.72 %, 按期结案率 737 / 972 = 75.82 %."""
    db = fresh_db(backend, "tianmen")
    rows, n = [], itertools.count()
    for _ in range(737):  # closed on time
        rows.append(reach(case(next(n)), "closed"))
    for k in range(150):  # closed, a stage late
        rows.append(reach(case(next(n), late_stages=("handle", "verify,close")[k % 2]), "closed"))
    for _ in range(24):  # force-closed: closed for 结案率, never on time
        rows.append(
            reach(case(next(n), forced=1), "dispatched")
            | {"stage": "closed", "closed_at": T1 - DAY}
        )
    for k in range(40):  # open, the running stage is overdue at the period end
        rows.append(reach(case(next(n), stage_deadline=T1 - 3600 - k), "acknowledged"))
    for _ in range(21):  # open within its deadline, but an earlier stage finished late
        rows.append(
            reach(case(next(n), stage_deadline=T1 + DAY, late_stages="dispatch"), "dispatched")
        )
    # not due: open within all deadlines, paused with a later deadline, voided, rejected
    rows += [reach(case(next(n), stage_deadline=T1 + DAY), "handled") for _ in range(30)]
    rows += [
        reach(case(next(n), stage_deadline=T1 + DAY, paused=1), "acknowledged") for _ in range(5)
    ]
    rows += [reach(case(next(n), voided=1), "dispatched") | {"stage": "voided"} for _ in range(15)]
    rows += [case(next(n), stage="rejected", rejected_at=T0 + DAY) for _ in range(10)]
    insert(backend, rows)
    insert(backend, [older(r) for r in rows[::5]])
    got = city_row(backend, db)
    assert (got["due_to_close"], got["closed"], got["closed_on_time"]) == (972, 911, 737)
    assert ratio(got["closed"], got["due_to_close"]) == 93.72
    assert percent(got["close_rate"]) == 93.72
    assert ratio(got["closed_on_time"], got["due_to_close"]) == 75.82
    assert percent(got["on_time_close_rate"]) == 75.82
    # configurable: force-closed cases not counted as closed
    strict = city_row(backend, db, KpiDefinitions(forced_counts_as_closed=False))
    assert strict["closed"] == 911 - 24
    # configurable: every registered case is due (the 30 + 5 open ones join)
    every = city_row(backend, db, KpiDefinitions(due_rule="registered"))
    assert every["due_to_close"] == 972 + 35


def test_ratio_rounding():
    assert ratio(33_928, 36_314) == 93.43
    assert ratio(911, 972) == 93.72
    assert ratio(737, 972) == 75.82
    assert ratio(1, 8) == 12.5 and ratio(1, 3) == 33.33 and ratio(2, 3) == 66.67
    assert ratio(5, 0) is None and percent(None) is None and percent(math.nan) is None


# --- 2. every KPI against pandas -----------------------------------------------------------


def random_cases(seed: int, n: int) -> tuple[list[dict], set[str], set[str]]:
    """n cases with mixed outcomes; returns (rows, cases with an applied pause event, cases
    with only a refused one)."""
    rng = random.Random(seed)
    rows, paused_ev, refused_ev = [], set(), set()
    for i in range(n):
        district, street = rng.choice(STREETS)
        r = case(
            i,
            source=rng.choice(["hotline", "hotline", "inspector"]),
            district=district,
            street=street,
            community=f"{street}-C{rng.randrange(2)}",
            unit=f"U{rng.randrange(4)}",
            opened_at=T0 - 3 * DAY + rng.randrange(37 * DAY),
            version=rng.randrange(3, 30),
            urgent=int(rng.random() < 0.1),
        )
        r["grid_code"] = f"{r['community']}-G{rng.randrange(3)}"
        if rng.random() < 0.06:
            r.update(stage="rejected", rejected_at=r["opened_at"] + rng.randrange(1, 9000))
            rows.append(r)
            continue
        k = rng.choices(range(7), weights=[1, 1, 1, 1, 1, 1, 6])[0]
        t, done = r["opened_at"], []
        for s in MAIN[1 : k + 1]:
            t += rng.randrange(30, 3 * DAY)
            r[STAMP[s]] = t
            done.append(TIMER[MAIN[MAIN.index(s) - 1]])
        r["stage"] = MAIN[k]
        end = rng.random()
        if k < 6 and end < 0.1:  # voided in its current stage
            r.update(stage="voided", voided=1)
            done.append(TIMER[MAIN[k]])
        elif k < 6 and end < 0.2:  # force-closed in its current stage
            r.update(stage="closed", forced=1, closed_at=t + rng.randrange(60, DAY))
            done.append(TIMER[MAIN[k]])
        elif k < 6:  # open
            r["stage_deadline"] = 0 if rng.random() < 0.05 else T1 + rng.randrange(-9, 9) * DAY
            r["stage_started_at"] = t
            r["stage_limit_unit"] = "working_days"
            r["paused"] = int(rng.random() < 0.1)
            r["pause_count"] = rng.choice([0, 0, 0, 1, 2])
        r["late_stages"] = ",".join(sorted(s for s in done if rng.random() < 0.15))
        if r["handled_at"]:
            r["rework_count"] = rng.choice([0, 0, 0, 1, 2])
        if r["registered_at"]:
            r["extension_count"] = rng.choice([0, 0, 0, 0, 1, 2])
        if r["stage"] == "closed" and not r["forced"] and r["source"] == "hotline":
            r["rating"] = rng.choice(["", "satisfied", "basically_satisfied", "dissatisfied"])
            r["follow_up_at"] = r["closed_at"] + DAY if r["rating"] else 0
        roll = rng.random()
        if roll < 0.2:
            paused_ev.add(r["case_id"])
        elif roll < 0.25:
            refused_ev.add(r["case_id"])
        rows.append(r)
    return rows, paused_ev, refused_ev


def expected(
    df: pd.DataFrame, keys: tuple[str, ...], paused_ev: set[str], defs: KpiDefinitions, cutoff: int
) -> pd.DataFrame:
    """Every KPI in pandas, straight from the definitions in docs/kpis.md."""
    d = df[(df.opened_at >= T0) & (df.opened_at < T1)].copy()
    late = d.late_stages.str.split(",").apply(set)
    keep = (d.voided == 0) if defs.exclude_voided else pd.Series(True, index=d.index)
    is_closed = d.stage == "closed"
    reg = d.registered_at > 0
    open_ = ~d.stage.isin(["rejected", "closed", "voided"])
    overdue = ((d.stage_deadline > 0) & (d.stage_deadline < cutoff)) | (d.late_stages != "")
    if defs.due_rule == "registered":
        due = reg
    else:
        due = reg & (is_closed | (d.voided == 1) | (open_ & overdue))
    no_late = late.apply(lambda s: not (s & set(defs.on_time_stages)))
    forced_ok = pd.Series(True, index=d.index) if defs.forced_counts_as_closed else d.forced == 0
    if defs.ever_paused_from == "case_events":
        ever_paused = d.case_id.isin(paused_ev)
    else:
        ever_paused = (d.pause_count > 0) | (d.paused == 1)
    on_time = is_closed & ((d.forced == 0) | defs.forced_counts_on_time) & no_late
    hot = d.source == "hotline"
    disp, hdl = d.dispatched_at > 0, d.handled_at > 0
    ack_ok = (d.acknowledged_at > 0) & late.apply(lambda s: "acknowledge" not in s)
    hdl_ok = hdl & late.apply(lambda s: "handle" not in s)
    rated = d.rating != ""
    f = pd.DataFrame(
        {
            "accepted": keep,
            "voided": d.voided == 1,
            "registered": keep & reg,
            "due_to_close": keep & due,
            "closed": keep & due & is_closed & forced_ok,
            "closed_on_time": keep & due & on_time,
            "due_unpaused": keep & due & ~ever_paused,
            "closed_on_time_unpaused": keep & due & on_time & ~ever_paused,
            "dispatched": keep & disp,
            "acknowledged_on_time": keep & disp & ack_ok,
            "handled": keep & disp & hdl,
            "handled_on_time": keep & disp & hdl_ok,
            "reworked": keep & hdl & (d.rework_count > 0),
            "extended": keep & reg & (d.extension_count > 0),
            "hotline_accepted": keep & hot,
            "hotline_dispatched": keep & hot & disp,
            "hotline_acknowledged_on_time": keep & hot & disp & ack_ok,
            "hotline_resolved": keep & hot & is_closed & (d.forced == 0),
            "hotline_rated": keep & hot & rated,
            "hotline_satisfied": keep & hot & rated & d.rating.isin(defs.satisfied_ratings),
        }
    ).astype(int)
    counts = list(f.columns)
    spans = {
        "register": ("opened_at", "registered_at"),
        "dispatch": ("registered_at", "dispatched_at"),
        "acknowledge": ("dispatched_at", "acknowledged_at"),
        "handle": ("acknowledged_at", "handled_at"),
        "verify": ("handled_at", "verified_at"),
        "close": ("verified_at", "closed_at"),
    }
    for stage, (a, b) in spans.items():
        ok = keep & (d[a] > 0) & (d[b] > 0)
        if stage == "close":
            ok &= d.forced == 0
        f[f"{stage}_ok"] = ok
        f[f"{stage}_s"] = (d[b] - d[a]).astype(float)
    for k in keys:
        f[k] = d[k]

    def summarize(g: pd.DataFrame) -> pd.Series:
        out = {c: int(g[c].sum()) for c in counts}
        for name, (num, den, _zh, _en) in RATES.items():
            out[name] = out[num] / out[den] if out[den] else math.nan
        for stage in STAGES:
            x = np.sort(g.loc[g[f"{stage}_ok"], f"{stage}_s"].to_numpy())
            out[f"{stage}_n"] = len(x)
            out[f"{stage}_mean_s"] = x.mean() if len(x) else math.nan
            out[f"{stage}_p90_s"] = x[min(int(0.9 * len(x)), len(x) - 1)] if len(x) else math.nan
        return pd.Series(out)

    if not keys:
        return pd.DataFrame([summarize(f)])
    return f.groupby(list(keys)).apply(summarize, include_groups=False).reset_index()


def same(a, b) -> bool:
    a = math.nan if a is None else float(a)
    b = float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@pytest.fixture(scope="module")
def random_db(backend):
    db = fresh_db(backend, "random")
    rows, paused_ev, refused_ev = random_cases(seed=20250301, n=2_000)
    rng = random.Random(7)
    versions = [older(r) for r in rows if rng.random() < 0.3]
    insert(backend, rows[:1000])
    insert(backend, versions)
    insert(backend, rows[1000:])
    events = pd.DataFrame(
        [(c, "pause", "applied") for c in sorted(paused_ev)]
        + [(c, "pause", "illegal") for c in sorted(refused_ev)]
        + [(c, "resume", "applied") for c in sorted(refused_ev)],
        columns=["case_id", "action", "outcome"],
    )
    backend.insert_sync("case_events", events)
    return db, pd.DataFrame(rows, columns=list(STATE_COLUMNS)), paused_ev


DEFS = {
    "default": KpiDefinitions(),
    "variant": KpiDefinitions(
        exclude_voided=False,
        due_rule="registered",
        forced_counts_as_closed=False,
        forced_counts_on_time=True,
        on_time_stages=("handle",),
        ever_paused_from="snapshot",
        satisfied_ratings=("satisfied",),
    ),
}


@pytest.mark.parametrize("level", ["street", "city", "unit"])
@pytest.mark.parametrize("variant", list(DEFS))
def test_every_kpi_matches_pandas(backend, random_db, level, variant):
    db, df, paused_ev = random_db
    defs = DEFS[variant]
    now = END - timedelta(days=2) if variant == "variant" else None
    cutoff = T1 if now is None else int(now.timestamp())
    got = as_dicts(columns(level), backend.rows_sync(kpi_sql(db, level, START, END, defs, now=now)))
    want = expected(df, KEYS[level], paused_ev, defs, cutoff).to_dict("records")
    assert len(got) == len(want) > 0
    assert got[0]["accepted"] > 0
    metrics = [c for c in columns(level) if c not in KEYS[level]]
    for g, w in zip(got, want, strict=True):
        assert [g[k] for k in KEYS[level]] == [w[k] for k in KEYS[level]]
        wrong = {m: (g[m], w[m]) for m in metrics if not same(g[m], w[m])}
        assert not wrong, f"{[g[k] for k in KEYS[level]]}: {wrong}"
        for name, (_num, den, _zh, _en) in RATES.items():
            assert g[den] == 0 or 0 <= g[name] <= 1


def test_period_boundaries(backend, random_db):
    db, df, _ = random_db
    half = START + timedelta(days=10)
    a = as_dicts(columns("city"), backend.rows_sync(kpi_sql(db, "city", START, half)))[0]
    b = as_dicts(columns("city"), backend.rows_sync(kpi_sql(db, "city", half, END)))[0]
    whole = as_dicts(columns("city"), backend.rows_sync(kpi_sql(db, "city", START, END)))[0]
    assert a["accepted"] + b["accepted"] == whole["accepted"]
    inside = df[(df.opened_at >= T0) & (df.opened_at < T1) & (df.voided == 0)]
    assert whole["accepted"] == len(inside)


# --- 3. rankings and countdown -------------------------------------------------------------


def test_ranking_min_volume_and_order(backend, random_db):
    db, df, paused_ev = random_db
    by_unit = expected(df, KEYS["community"], paused_ev, KpiDefinitions(), T1)
    cut = int(by_unit.due_to_close.median()) + 1
    defs = KpiDefinitions(min_volume=cut)
    eligible = by_unit[by_unit.due_to_close >= cut]
    assert 0 < len(eligible) < len(by_unit), "the test needs units on both sides of the cut"
    rows = backend.rows_sync(ranking_sql(db, "community", START, END, "on_time_close_rate", defs))
    assert len(rows) == len(eligible)
    values = [r[0] for r in rows]
    assert values == sorted(values, reverse=True)
    assert all(r[1] >= cut for r in rows)
    want = dict(zip(eligible.community, eligible.on_time_close_rate, strict=True))
    assert {r[4]: r[0] for r in rows} == pytest.approx(want)
    ranked = rank(rows)
    assert [r[0] for r in ranked][0] == 1 and [r[1:] for r in ranked] == [tuple(r) for r in rows]
    # ascending, by a duration, volume = cases with that duration
    asc = backend.rows_sync(
        ranking_sql(db, "unit", START, END, "handle_mean_s", defs, descending=False)
    )
    assert [r[0] for r in asc] == sorted(r[0] for r in asc) and all(r[1] >= cut for r in asc)
    with pytest.raises(ValueError):
        ranking_sql(db, "unit", START, END, "no_such_kpi", defs)


def test_rank_ties():
    rows = [(0.9, 50, "a"), (0.8, 70, "b"), (0.8, 40, "c"), (0.5, 31, "d")]
    assert [r[0] for r in rank(rows)] == [1, 2, 2, 4]
    assert rank([]) == []


def test_countdown_lists_open_cases_by_remaining_time(backend, random_db):
    db, df, _ = random_db
    now = END - timedelta(days=1)
    rows = as_dicts(COUNTDOWN_COLUMNS, backend.rows_sync(countdown_sql(db, now, limit=5_000)))
    open_ = df[~df.stage.isin(["rejected", "closed", "voided"])]
    assert {r["case_id"] for r in rows} == set(open_.case_id)
    dated = [r for r in rows if r["remaining_s"] is not None]
    assert [r["remaining_s"] for r in dated] == sorted(r["remaining_s"] for r in dated)
    assert rows[len(dated) :] and all(r["remaining_s"] is None for r in rows[len(dated) :])
    by_id = open_.set_index("case_id")
    for r in dated:
        assert r["remaining_s"] == by_id.loc[r["case_id"], "stage_deadline"] - int(now.timestamp())
        assert r["stage"] == by_id.loc[r["case_id"], "stage"]
        assert r["paused"] == by_id.loc[r["case_id"], "paused"]
    assert any(r["remaining_s"] < 0 for r in dated) and any(r["remaining_s"] > 0 for r in dated)
    top = backend.rows_sync(countdown_sql(db, now, limit=10, filters={"street": "S2"}))
    assert len(top) == 10 and {r[COUNTDOWN_COLUMNS.index("street")] for r in top} == {"S2"}
    with pytest.raises(ValueError):
        countdown_sql(db, now, filters={"rating; DROP": "x"})


# --- ClickHouse 18.16 ----------------------------------------------------------------------


@pytest.mark.integration
def test_kpi_sql_runs_on_clickhouse_18_16(clickhouse_server):
    """The same SQL on Debian's clickhouse-server 18.16 gives the same numbers as chdb."""
    from sinks.clickhouse.backend import NativeBackend

    be = NativeBackend(clickhouse_server.rsplit("/", 1)[0] + "/gp_kpis")
    try:
        assert be.version.startswith("18."), be.version  # the oldest server we support
        be.execute_sync("DROP DATABASE IF EXISTS gp_kpis")
        be.migrate_sync(store_schema(Settings()))
        rows, paused_ev, _ = random_cases(seed=11, n=600)
        insert(be, rows)
        insert(be, [older(r) for r in rows[::4]])
        be.insert_sync(
            "case_events",
            pd.DataFrame(
                [(c, "pause", "applied") for c in sorted(paused_ev)],
                columns=["case_id", "action", "outcome"],
            ),
        )
        df = pd.DataFrame(rows, columns=list(STATE_COLUMNS))
        for level in ("street", "city"):
            for defs in DEFS.values():
                got = as_dicts(
                    columns(level), be.rows_sync(kpi_sql("gp_kpis", level, START, END, defs))
                )
                want = expected(df, KEYS[level], paused_ev, defs, T1).to_dict("records")
                assert len(got) == len(want)
                for g, w in zip(got, want, strict=True):
                    wrong = {
                        m: (g[m], w[m]) for m in w if m not in KEYS[level] and not same(g[m], w[m])
                    }
                    assert not wrong
        ranked = be.rows_sync(
            ranking_sql("gp_kpis", "street", START, END, "close_rate", KpiDefinitions(min_volume=5))
        )
        assert ranked and [r[0] for r in ranked] == sorted((r[0] for r in ranked), reverse=True)
        board = be.rows_sync(countdown_sql("gp_kpis", END, limit=20))
        assert len(board) == 20
    finally:
        be.close_sync()
