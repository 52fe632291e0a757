"""Every panel and variable query of the committed boards, expanded as the ClickHouse plugin
expands it, runs on the embedded engine over a simulated day and returns the columns its panel
reads; the figures equal counts computed independently from the generated rows, and the KPI
panels equal ``sinks.clickhouse.kpis`` to the last digit."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from grafana import readmodel, sample
from grafana.boards import boards
from grafana.build import DASHBOARDS
from grafana.city import CityMap, load_city
from grafana.macros import ALL, TimeRange, VariableValue, expand
from grafana.users import READ_TABLES, read_only_user_sql
from sinks.clickhouse import kpis

DB = "gp_boards"
BOARD_FILES = ("operations", "sla", "leadership")
NUMERIC = re.compile(r"^(Nullable\(|LowCardinality\()?(U?Int|Float|Decimal)")


@dataclass(repr=False)
class World:
    be: Any
    city: CityMap
    day: sample.SampleDay


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sinks.clickhouse.backend import ChdbBackend

    be = ChdbBackend(tmp_path_factory.mktemp("grafana_chdb"), db=DB)
    readmodel.prepare(be)
    city = load_city()
    day = sample.generate(city)
    sample.load(be, day)
    yield World(be, city, day)
    be.close_sync()


def doc(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / f"{name}.json").read_text(encoding="utf-8"))


def time_range(name: str, day: sample.SampleDay) -> TimeRange:
    if name == "operations":
        return TimeRange.of(day.start, day.end)
    if name == "sla":
        return TimeRange.of(day.end - timedelta(hours=24), day.end)
    month = datetime.fromisoformat("2026-11-01T00:00:00+08:00")
    return TimeRange.of(month, day.end)


def rows(w: World, sql: str) -> list[tuple[Any, ...]]:
    return w.be.rows_sync(sql)


def variables(w: World, d: dict[str, Any], tr: TimeRange, chosen: dict[str, Any] | None = None):
    """Every variable of the board at "All" (or ``chosen``), options from its own query."""
    out: dict[str, VariableValue] = {}
    chosen = chosen or {}
    for v in d["templating"]["list"]:
        if v["type"] == "constant":
            out[v["name"]] = VariableValue(DB if v["name"] == "db" else v["query"])
            continue
        if v["type"] == "custom":
            options = tuple(v["query"].split(","))
        else:
            options = tuple(r[0] for r in rows(w, expand(v["query"], tr, out)))
        out[v["name"]] = VariableValue(chosen.get(v["name"], [ALL]), options=options)
    return out


def panels() -> list[tuple[str, int]]:
    return [(b, p["id"]) for b in BOARD_FILES for p in doc(b)["panels"]]


def spec(w: World, board: str, panel_id: int):
    by_key = {b.key: b for b in boards(w.city)}
    return by_key[board].panels[panel_id - 1]


def panel_sql(w: World, board: str, panel_id: int, chosen: dict[str, Any] | None = None) -> str:
    d = doc(board)
    tr = time_range(board, w.day)
    (panel,) = [p for p in d["panels"] if p["id"] == panel_id]
    (target,) = panel["targets"]
    return expand(target["rawSql"], tr, variables(w, d, tr, chosen), interval_ms=300_000)


def describe(w: World, sql: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in rows(w, f"DESCRIBE ({sql})")]


@pytest.mark.parametrize(("board", "panel_id"), panels())
def test_panel_runs_and_returns_what_its_type_reads(world, board, panel_id):
    sql = panel_sql(world, board, panel_id)
    s = spec(world, board, panel_id)
    cols = describe(world, sql)
    assert [c for c, _ in cols] == list(s.queries[0].columns)
    result = rows(world, sql)
    assert result, f"{board} panel {panel_id} ({s.title}) returned no rows"
    types = dict(cols)
    if s.type == "timeseries":
        assert types[s.queries[0].time_column].startswith("DateTime")
        assert len({r[0] for r in result}) > 1  # a series, not a point
    if s.type in ("timeseries", "stat", "bargauge", "barchart"):
        numeric = [c for c, t in cols if NUMERIC.match(t)]
        assert numeric, f"{s.title}: no numeric field to plot"
    if s.type == "geomap":
        assert NUMERIC.match(types["latitude"]) and NUMERIC.match(types["longitude"])


def test_variable_queries_chain(world):
    d = doc("operations")
    tr = time_range("operations", world.day)
    every = variables(world, d, tr)
    streets = set(every["street"].options)
    districts = every["district"].options
    assert len(districts) == 2 and len(streets) == 7
    one = variables(world, d, tr, {"district": [districts[0]]})
    assert set(one["street"].options) < streets
    assert all(s.startswith(districts[0]) for s in one["street"].options)
    kept = one["street"].options
    assert all(any(c.startswith(s) for s in kept) for c in one["community"].options)


def _panel_id(w: World, board: str, title: str) -> int:
    by_key = {b.key: b for b in boards(w.city)}
    return [i for i, p in enumerate(by_key[board].panels, start=1) if p.title == title][0]


def _counted(w: World) -> pd.DataFrame:
    """Non-late events whose minute bucket lies in the operations range (inclusive)."""
    ev = w.day.events
    tr = time_range("operations", w.day)
    bucket = ev["event_time"] // 60 * 60
    return ev[(ev["late"] == 0) & (bucket >= tr.from_s) & (bucket <= tr.to_s)]


def test_event_counts_equal_the_generated_events(world):
    ev = _counted(world)
    total = _panel_id(world, "operations", "ops.total")
    assert rows(world, panel_sql(world, "operations", total)) == [(len(ev),)]
    d01 = rows(world, panel_sql(world, "operations", total, {"district": ["D01"]}))
    d02 = rows(world, panel_sql(world, "operations", total, {"district": ["D02"]}))
    both = rows(world, panel_sql(world, "operations", total, {"district": ["D01", "D02"]}))
    assert d01[0][0] == (ev["district"] == "D01").sum() and d01[0][0] + d02[0][0] == len(ev)
    assert both == [(len(ev),)]
    hot = rows(world, panel_sql(world, "operations", total, {"source": ["hotline"]}))
    assert hot == [((ev["source"] == "hotline").sum(),)]
    street = _panel_id(world, "operations", "ops.by_street")
    got = {(r[0], r[1]): r[2:] for r in rows(world, panel_sql(world, "operations", street))}
    want = ev.groupby(["district", "street"]).size()
    assert {k: v[0] for k, v in got.items()} == want.to_dict()
    for (_d, s), (n, inspector, sensor, hotline) in got.items():
        sub = ev[ev["street"] == s]["source"].value_counts()
        assert (inspector, sensor, hotline) == tuple(
            sub.get(x, 0) for x in ("inspector", "sensor", "hotline")
        )
        assert n == inspector + sensor + hotline


def test_late_dead_and_map_figures(world):
    ev = world.day.events
    tr = time_range("operations", world.day)
    late = ev[
        (ev["late"] == 1)
        & (ev["event_time"] // 60 * 60 >= tr.from_s)
        & (ev["event_time"] // 60 * 60 <= tr.to_s)
    ]
    lid = _panel_id(world, "operations", "ops.late")
    assert rows(world, panel_sql(world, "operations", lid)) == [(len(late),)]
    did = _panel_id(world, "operations", "ops.dead")
    dead = world.day.tables["dead_letters"]
    in_range = dead[(dead["ingested_at"] >= tr.from_s) & (dead["ingested_at"] <= tr.to_s)]
    assert rows(world, panel_sql(world, "operations", did)) == [(len(in_range),)]
    mid = _panel_id(world, "operations", "ops.map")
    grids = {g.grid_code: g for g in world.city.grids}
    got = rows(world, panel_sql(world, "operations", mid))
    assert sum(r[3] for r in got) == len(_counted(world))
    for code, lat, lon, _n in got:
        assert (lat, lon) == (grids[code].lat, grids[code].lon)


def test_rising_compares_the_last_two_hours(world):
    ev = _counted(world)
    to = time_range("operations", world.day).to_s
    bucket = ev["event_time"] // 60 * 60
    last = ev[(bucket > to - 3600) & (bucket <= to)].groupby("subcategory").size()
    prev = ev[(bucket > to - 7200) & (bucket <= to - 3600)].groupby("subcategory").size()
    rid = _panel_id(world, "operations", "ops.rising")
    for _cat, sub, n_last, n_prev, change in rows(world, panel_sql(world, "operations", rid)):
        assert (n_last, n_prev) == (last.get(sub, 0), prev.get(sub, 0))
        assert change == n_last - n_prev


def _kpi(world: World, level: str, start: int, end: int) -> list[dict[str, Any]]:
    s, e = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    return kpis.as_dicts(kpis.columns(level), rows(world, kpis.kpi_sql(DB, level, s, e)))


def test_kpi_stats_equal_gridpulse_kpi(world):
    tr = time_range("leadership", world.day)
    (cur,) = _kpi(world, "city", tr.from_s, tr.to_s)
    (prev,) = _kpi(world, "city", 2 * tr.from_s - tr.to_s, tr.from_s)
    for rate in (
        "on_time_close_rate",
        "close_rate",
        "rework_rate",
        "satisfaction_rate",
        "response_rate",
        "resolution_rate",
    ):
        pid = _panel_id(world, "leadership", f"kpi.{rate}")
        ((current, previous, change),) = rows(world, panel_sql(world, "leadership", pid))
        num, den = kpis.RATES[rate][:2]
        assert current == kpis.percent(cur[rate]) == kpis.ratio(cur[num], cur[den])
        assert previous == kpis.percent(prev[rate])
        assert change == round(current - previous, 2)


def test_summary_and_ranking_equal_kpi_sql(world):
    tr = time_range("leadership", world.day)
    sid = _panel_id(world, "leadership", "lead.summary")
    got = rows(world, panel_sql(world, "leadership", sid))
    want = [*_kpi(world, "district", tr.from_s, tr.to_s), *_kpi(world, "city", tr.from_s, tr.to_s)]
    assert len(got) == len(want) == 3
    names = [c for c, _ in describe(world, panel_sql(world, "leadership", sid))]
    for g, w in zip(got, want, strict=True):
        row = dict(zip(names, g, strict=True))
        assert row["district"] == w.get("district", "全市 / City")
        for c in names[1:]:
            assert row[c] == (kpis.percent(w[c]) if c in kpis.RATES else w[c]), c
    for title, desc in (("lead.top", True), ("lead.bottom", False)):
        pid = _panel_id(world, "leadership", title)
        s, e = datetime.fromtimestamp(tr.from_s, UTC), datetime.fromtimestamp(tr.to_s, UTC)
        ref = rows(
            world, kpis.ranking_sql(DB, "street", s, e, "on_time_close_rate", descending=desc)
        )
        want_rows = [(d, st, kpis.percent(v), vol) for v, vol, d, st in ref[:10]]
        assert rows(world, panel_sql(world, "leadership", pid)) == want_rows


def test_countdown_and_alert_figures(world):
    tr = time_range("sla", world.day)
    cid = _panel_id(world, "sla", "sla.countdown")
    got = rows(world, panel_sql(world, "sla", cid))
    now = datetime.fromtimestamp(tr.to_s, UTC)
    ref = kpis.as_dicts(kpis.COUNTDOWN_COLUMNS, rows(world, kpis.countdown_sql(DB, now, limit=200)))
    assert [(r[0], r[2]) for r in got] == [(r["case_id"], r["remaining_s"]) for r in ref]
    assert got[0][2] < 0  # most urgent first: an overdue case
    alerts = world.day.tables["sla_events"].drop_duplicates("alert_id")
    recent = alerts[
        alerts["kind"].isin(["breach", "escalation"])
        & (alerts["fired_at"] > tr.to_s - 86400)
        & (alerts["fired_at"] <= tr.to_s)
    ]
    aid = _panel_id(world, "sla", "sla.alerts_24h")
    assert sum(r[2] for r in rows(world, panel_sql(world, "sla", aid))) == len(recent)
    oid = _panel_id(world, "sla", "sla.open")
    ((open_cases, overdue, _soon),) = rows(world, panel_sql(world, "sla", oid))
    state = (
        world.day.tables["case_state"]
        .sort_values("version")
        .drop_duplicates("case_id", keep="last")
    )
    still_open = state[~state["stage"].isin(kpis.TERMINAL)]
    assert open_cases == len(still_open)
    assert (
        overdue
        == ((still_open["stage_deadline"] > 0) & (still_open["stage_deadline"] < tr.to_s)).sum()
    )


def test_read_only_user_covers_every_table_the_boards_read(world):
    used = set()
    for b in BOARD_FILES:
        text = json.dumps(doc(b))
        used |= set(re.findall(r"\$\{db\}\.(\w+)", text))
    assert used <= set(READ_TABLES), used - set(READ_TABLES)
    stmts = read_only_user_sql(DB, "s3cret")
    assert not any("s3cret" in s for s in stmts)
    for stmt in stmts:  # the embedded engine has no user directory: parse, do not run
        quoted = stmt.replace("\\", "\\\\").replace("'", "\\'")
        (formatted,) = rows(world, f"SELECT formatQuery('{quoted}')")[0]
        assert formatted.split()[:2] == stmt.split()[:2]
    assert sum(s.startswith("GRANT SELECT ON gp_boards.") for s in stmts) == len(READ_TABLES)


def test_render_draws_every_board_from_its_sql(world, tmp_path):
    from grafana.city import SAMPLE_CITY
    from grafana.render import render_board

    for board in boards(world.city, "en"):
        path = render_board(
            world.be, board, "en", world.city.timezone, world.day, SAMPLE_CITY, tmp_path, db=DB
        )
        raw = path.read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 50_000
        width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
        assert width > 1000 and height > 600
