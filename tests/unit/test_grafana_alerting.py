"""The warning panels (Operations) and the on-call panels (SLA & on-call), on the embedded
engine and on Debian's ClickHouse 18.16: each panel's committed SQL, expanded as the plugin
expands it (variables at "All" or chosen), over the simulated day's warning revisions and
alert-stage rows (written through the tables' real layouts, stale versions and re-published
revisions in parts of their own), returns its panel's columns, non-empty, and its figures
equal what pandas computes from the generated rows (evidence parsed here from its JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

import pandas as pd
import pytest

from grafana import alerting_panels as ap
from grafana import readmodel, sample
from grafana.build import DASHBOARDS
from grafana.catalogue import TEXT
from grafana.city import load_city
from grafana.macros import ALL, TimeRange, VariableValue, expand
from sinks.clickhouse import alerts as alert_sql
from sinks.clickhouse import warnings as warning_sql

DB = "gp_alerting"
TABLES = (
    warning_sql.WARNINGS_TABLE,
    alert_sql.STATE_TABLE,
    alert_sql.OUTBOX_TABLE,
    alert_sql.ATTEMPTS_TABLE,
)
NEW_PANELS = {
    "operations": ("ops.warnings_active", "ops.warnings", "ops.warnings_by_kind"),
    "sla": (
        "sla.oncall",
        "sla.ack_time",
        "sla.open_alerts",
        "sla.delivery_failures",
        "sla.deliveries",
        "sla.receivers",
        "sla.dead_deliveries",
    ),
}


@cache
def day() -> sample.SampleDay:
    return sample.generate(load_city())


@dataclass(repr=False)
class World:
    be: Any
    day: sample.SampleDay


@pytest.fixture(
    scope="module",
    params=["chdb", pytest.param("18.16", marks=pytest.mark.integration)],
)
def world(request, tmp_path_factory):
    if request.param == "chdb":
        from sinks.clickhouse.backend import ChdbBackend

        be = ChdbBackend(tmp_path_factory.mktemp("grafana_alerting"), db=DB)
    else:
        from sinks.clickhouse.backend import NativeBackend

        url = request.getfixturevalue("clickhouse_server")
        be = NativeBackend(url.rsplit("/", 1)[0] + f"/{DB}")
        assert be.version.startswith("18.16")
    d = day()
    readmodel.prepare(be)
    sample.load(be, sample.SampleDay(d.start, d.end, {t: d.tables[t] for t in TABLES}))
    yield World(be, d)
    be.close_sync()


def time_range(board: str, d: sample.SampleDay) -> TimeRange:
    if board == "operations":
        return TimeRange.of(d.start, d.end)
    return TimeRange.of(d.end - timedelta(hours=24), d.end)


def panel_sql(w: World, board: str, title: str, chosen: dict[str, list[str]] | None = None) -> str:
    """The committed panel's SQL, expanded; every variable at "All" unless ``chosen``."""
    doc = json.loads((DASHBOARDS / f"{board}.json").read_text(encoding="utf-8"))
    zh, en = TEXT[title]
    (panel,) = [p for p in doc["panels"] if p["title"] == f"{zh} / {en}"]
    values = {}
    for v in doc["templating"]["list"]:
        if v["type"] == "constant":
            values[v["name"]] = VariableValue(DB if v["name"] == "db" else v["query"])
        else:
            values[v["name"]] = VariableValue((chosen or {}).get(v["name"], [ALL]))
    (target,) = panel["targets"]
    return expand(target["rawSql"], time_range(board, w.day), values, interval_ms=300_000)


def rows(w: World, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in w.be.rows_sync(sql)]


def epochs(sql: str, columns: tuple[str, ...], times: tuple[str, ...]) -> str:
    """The panel's rows with its time columns as Unix seconds (engine-independent)."""
    cols = ", ".join(f"toUInt32({c})" if c in times else c for c in columns)
    return f"SELECT {cols} FROM ({sql})"


# --- what pandas says --------------------------------------------------------------------------


def latest(frame: pd.DataFrame, key: str, order: str) -> pd.DataFrame:
    return frame.sort_values(order, kind="stable").drop_duplicates(key, keep="last")


def warnings_frame(d: sample.SampleDay) -> pd.DataFrame:
    return d.tables[warning_sql.WARNINGS_TABLE].drop_duplicates()


def active(d: sample.SampleDay) -> pd.DataFrame:
    last = latest(warnings_frame(d), "fingerprint", "revision")
    return last[last["status"] == "firing"]


def open_alerts(d: sample.SampleDay) -> pd.DataFrame:
    last = latest(d.tables[alert_sql.STATE_TABLE], "fingerprint", "version")
    return last[last["status"] == "firing"]


def outbox(d: sample.SampleDay) -> pd.DataFrame:
    return latest(d.tables[alert_sql.OUTBOX_TABLE], "notification_id", "version")


def attempts_in_range(d: sample.SampleDay, tr: TimeRange) -> pd.DataFrame:
    a = d.tables[alert_sql.ATTEMPTS_TABLE]
    hour = a["at"] // 3600 * 3600
    return a[(hour >= tr.from_s // 3600 * 3600) & (hour <= tr.to_s)].assign(hour=hour)


def severity_counts(frame: pd.DataFrame) -> tuple[int, ...]:
    return tuple(int((frame["severity"] == s).sum()) for s in ap.SEVERITIES)


def rank(severity: str) -> int:
    return ap.SEVERITIES.index(severity)


# --- every new panel ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("board", "title"), [(b, t) for b, titles in NEW_PANELS.items() for t in titles]
)
def test_panel_runs_with_its_columns(world, board, title):
    from grafana.boards import boards

    (spec,) = [
        p for b in boards(load_city()) if b.key == board for p in b.panels if p.title == title
    ]
    sql = panel_sql(world, board, title)
    names = [r[0] for r in rows(world, f"DESCRIBE ({sql})")]
    assert names == list(spec.queries[0].columns)
    got = rows(world, sql)
    assert got, f"{title} returned no rows"
    if spec.type == "timeseries":
        assert len({r[0] for r in got}) > 1


def test_the_sample_has_what_the_panels_show(world):
    d = world.day
    w = warnings_frame(d)
    assert len(w) < len(d.tables[warning_sql.WARNINGS_TABLE])  # some revisions published twice
    assert (w.groupby("fingerprint")["started_at"].nunique() > 1).any()  # one fired again
    assert (active(d)["started_at"] < d.start.timestamp()).any()  # carried over from yesterday
    assert set(active(d)["severity"]) == set(ap.SEVERITIES)
    o = open_alerts(d)
    assert (o["acked_at"] > 0).any() and (o["acked_at"] == 0).any()
    assert set(o["escalation_level"]) == {0, 1, 2}
    assert {"delivered", "dead", "muted"} <= set(outbox(d)["status"])
    assert {"delivered", "retry", "dead"} == set(d.tables[alert_sql.ATTEMPTS_TABLE]["outcome"])


# --- Operations: warnings -------------------------------------------------------------------------


def test_active_warnings_by_severity(world):
    a = active(world.day)
    got = rows(world, panel_sql(world, "operations", "ops.warnings_active"))
    assert got == [severity_counts(a)]
    for district in ("D01", "D02"):
        chosen = {"district": [district]}
        got = rows(world, panel_sql(world, "operations", "ops.warnings_active", chosen))
        assert got == [severity_counts(a[a["district"] == district])]
    cat = a["category"].mode()[0]
    got = rows(world, panel_sql(world, "operations", "ops.warnings_active", {"category": [cat]}))
    assert got == [severity_counts(a[a["category"] == cat])]


def test_active_warnings_list_with_evidence(world):
    a = active(world.day)
    got = rows(world, panel_sql(world, "operations", "ops.warnings"))
    assert len(got) == len(a) < 200
    ranks = [rank(r[0]) for r in got]
    assert ranks == sorted(ranks)  # most severe first
    want = sorted(
        (
            r.severity,
            r.kind,
            r.street,
            r.grid_code,
            r.category,
            r.summary,
            len(json.loads(r.evidence)),
            ", ".join(json.loads(r.evidence)),
        )
        for r in a.itertuples()
    )
    assert sorted((*r[:6], *r[-2:]) for r in got) == want
    assert any(r[-2] == 0 and r[-1] == "" for r in got)  # a warning with no evidence
    assert any(r[3] == "" and r[-1].startswith("grid:") for r in got)  # street-level hotspot
    # drill-down: a street, then one of its grids (the street-level warning is not a grid's)
    street = a[a["grid_code"] == ""]["street"].iloc[0]
    on_street = rows(world, panel_sql(world, "operations", "ops.warnings", {"street": [street]}))
    assert len(on_street) == (a["street"] == street).sum() and {r[2] for r in on_street} == {street}
    grid = a["grid_code"].iloc[0]
    chosen = {"street": [a["street"].iloc[0]], "grid": [grid]}
    in_grid = rows(world, panel_sql(world, "operations", "ops.warnings", chosen))
    assert [r[3] for r in in_grid] == [grid] * int((a["grid_code"] == grid).sum())


def test_warnings_raised_by_kind(world):
    d = world.day
    tr = time_range("operations", d)
    episodes = warnings_frame(d)[["fingerprint", "started_at", "kind"]].drop_duplicates()
    raised = episodes[(episodes["started_at"] >= tr.from_s) & (episodes["started_at"] <= tr.to_s)]
    want = raised.assign(time=raised["started_at"] // 300 * 300).groupby(["time", "kind"]).size()
    sql = epochs(
        panel_sql(world, "operations", "ops.warnings_by_kind"), ap.BY_KIND_COLUMNS, ("time",)
    )
    got = {(t, k): n for t, k, n in rows(world, sql)}
    assert got == {k: int(v) for k, v in want.items()}
    assert len(raised) < len(episodes)  # the ones started yesterday are out of range


# --- SLA & on-call: alerts and deliveries --------------------------------------------------------


def test_oncall_totals_and_open_alerts(world):
    d = world.day
    o = open_alerts(d)
    got = rows(world, panel_sql(world, "sla", "sla.oncall"))
    assert got == [
        (len(o), int((o["acked_at"] == 0).sum()), int((o["escalation_level"] > 0).sum()))
    ]
    d02 = o[o["district"] == "D02"]
    got = rows(world, panel_sql(world, "sla", "sla.oncall", {"district": ["D02"]}))
    assert got[0][0] == len(d02)

    tr = time_range("sla", d)
    listed = rows(world, panel_sql(world, "sla", "sla.open_alerts"))
    assert len(listed) == len(o) < 200
    order = [(rank(r[0]), r[1], -r[2]) for r in listed]
    assert order == sorted(order)  # most severe, unacknowledged, most escalated first
    want = sorted(
        (r.severity, int(r.acked_at > 0), r.escalation_level, r.case_id, tr.to_s - r.starts_at)
        for r in o.itertuples()
    )
    assert sorted((r[0], r[1], r[2], r[8], r[10]) for r in listed) == want


def test_time_to_ack_by_severity(world):
    d = world.day
    tr = time_range("sla", d)
    last = latest(d.tables[alert_sql.STATE_TABLE], "fingerprint", "version")
    acked = last[
        (last["acked_at"] >= tr.from_s)
        & (last["acked_at"] <= tr.to_s)
        & (last["first_notified_at"] > 0)
    ]
    want = []
    for s in ap.SEVERITIES:
        sub = acked[acked["severity"] == s]
        if len(sub):
            secs = sorted((sub["acked_at"] - sub["first_notified_at"]).tolist())
            n = len(secs)
            esc = int((sub["escalation_level"] > 0).sum())
            want.append((s, n, esc, secs[n // 2], secs[int(0.9 * n)], secs[-1]))
    assert rows(world, panel_sql(world, "sla", "sla.ack_time")) == want


def test_delivery_failures_by_receiver(world):
    d = world.day
    tr = time_range("sla", d)
    a = attempts_in_range(d, tr).assign(
        failed=lambda f: f["outcome"] != "delivered", dead=lambda f: f["outcome"] == "dead"
    )
    per_hour = a.groupby(["hour", "receiver"])["failed"].sum()
    sql = epochs(panel_sql(world, "sla", "sla.delivery_failures"), ap.FAILURE_TS_COLUMNS, ("time",))
    assert {(t, r): n for t, r, n in rows(world, sql)} == {k: int(v) for k, v in per_hour.items()}

    got = rows(world, panel_sql(world, "sla", "sla.deliveries"))
    by = a.groupby("receiver")
    assert {r[0]: r[1:4] for r in got} == {
        k: (len(g), int(g["failed"].sum()), int(g["dead"].sum())) for k, g in by
    }
    assert [r[2] for r in got] == sorted((r[2] for r in got), reverse=True)
    for receiver, attempted, failed, _dead, pct, error in got:
        assert pct == pytest.approx(100 * failed / attempted, abs=0.051)
        fails = a[(a["receiver"] == receiver) & a["failed"]]
        if len(fails):
            assert error in set(fails[fails["at"] == fails["at"].max()]["error"])


def test_receivers_now_and_dead_deliveries(world):
    box = outbox(world.day)
    got = rows(world, panel_sql(world, "sla", "sla.receivers"))
    want = {
        k: (
            int((g["status"] == "pending").sum()),
            int(((g["status"] == "pending") & (g["attempt"] > 0)).sum()),
            int((g["status"] == "delivered").sum()),
            int((g["status"] == "dead").sum()),
            int((g["status"] == "muted").sum()),
        )
        for k, g in box.groupby("receiver")
    }
    assert {r[0]: r[1:6] for r in got} == want
    dead = rows(world, panel_sql(world, "sla", "sla.dead_deliveries"))
    want_dead = box[box["status"] == "dead"]
    assert len(want_dead) < 100
    assert sorted((r[0], r[1], r[2], r[3]) for r in dead) == sorted(
        zip(
            want_dead["receiver"],
            want_dead["notification_id"],
            want_dead["attempt"],
            want_dead["last_error"],
            strict=True,
        )
    )
