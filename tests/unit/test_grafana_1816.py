"""Every panel and variable query of the committed boards on Debian's clickhouse-server 18.16
(the project's session fixture), over the same simulated day as on the embedded engine: the
panel SQL keeps to what 18.16 understands, and the KPI panels still equal
``sinks.clickhouse.kpis`` there."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from grafana import readmodel, sample
from grafana.boards import boards
from grafana.build import DASHBOARDS
from grafana.city import load_city
from grafana.macros import expand
from grafana.render import board_range, resolve_variables
from sinks.clickhouse import kpis

DB = "gp_boards_1816"


@pytest.mark.integration
def test_every_panel_runs_on_clickhouse_18_16(clickhouse_server):
    from sinks.clickhouse.backend import NativeBackend

    be = NativeBackend(clickhouse_server.rsplit("/", 1)[0] + f"/{DB}")
    try:
        assert be.version.startswith("18.16")
        readmodel.prepare(be)
        city = load_city()
        day = sample.generate(city)
        sample.load(be, day)
        for board in boards(city):
            doc = json.loads((DASHBOARDS / f"{board.key}.json").read_text(encoding="utf-8"))
            tr = board_range(board, day, city.timezone)
            variables = resolve_variables(be, doc, tr, DB)
            assert all(v.options for k, v in variables.items() if k not in ("db", "tz"))
            for panel, spec in zip(doc["panels"], board.panels, strict=True):
                sql = expand(panel["targets"][0]["rawSql"], tr, variables, interval_ms=300_000)
                rows = be.rows_sync(sql)
                assert rows, f"{board.key} panel {panel['id']} ({spec.title}) returned no rows"
                assert len(rows[0]) == len(spec.queries[0].columns), spec.title
                if spec.title == "kpi.on_time_close_rate":
                    start = datetime.fromtimestamp(tr.from_s, UTC)
                    end = datetime.fromtimestamp(tr.to_s, UTC)
                    (ref,) = kpis.as_dicts(
                        kpis.columns("city"), be.rows_sync(kpis.kpi_sql(DB, "city", start, end))
                    )
                    assert rows[0][0] == kpis.percent(ref["on_time_close_rate"])
    finally:
        be.close_sync()
