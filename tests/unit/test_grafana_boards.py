"""The committed board JSON: regenerated exactly, valid against Grafana's dashboard schema
(the foundation SDK's types), stable uids, no dangling variable or datasource reference, one
source for Chinese and English titles, provisioning consistent with the boards."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from grafana import build, validate
from grafana.boards import TARGETS, boards, dashboard
from grafana.catalogue import TEXT
from grafana.city import load_city
from grafana.model import DATASOURCE_TYPE, DATASOURCE_UID

ROOT = Path(build.__file__).resolve().parent
BOARDS = {
    "operations.json": "gridpulse-operations",
    "sla.json": "gridpulse-sla",
    "leadership.json": "gridpulse-leadership",
}


def committed() -> dict[str, dict]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8")) for p in build.DASHBOARDS.glob("*.json")
    }


def test_regenerating_gives_exactly_the_committed_files(tmp_path):
    files = build.dashboards()
    assert set(files) == set(BOARDS)
    assert build.stale(files, build.DASHBOARDS) == []
    assert build.main(["--check"]) == 0
    assert build.main(["--out", str(tmp_path)]) == 0
    for name in files:
        assert (tmp_path / name).read_bytes() == (build.DASHBOARDS / name).read_bytes()
    (tmp_path / "sla.json").write_text("{}", encoding="utf-8")
    assert build.main(["--check", "--out", str(tmp_path)]) == 1


def test_uids_are_stable_and_unique():
    docs = committed()
    assert {n: d["uid"] for n, d in docs.items()} == BOARDS
    for d in docs.values():
        assert [p["id"] for p in d["panels"]] == list(range(1, len(d["panels"]) + 1))


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_valid_against_the_dashboard_schema(name):
    d = committed()[name]
    assert validate.schema_problems(d) == []
    broken = json.loads(json.dumps(d))
    broken["panels"][0]["options"]["notAnOption"] = 1
    broken["panels"][0]["gridPos"]["depth"] = 3
    assert validate.schema_problems(broken) == [
        "not in the dashboard schema: /panels[0]/gridPos/depth",
        "not in the dashboard schema: /panels[0]/options/notAnOption",
    ]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_no_dangling_variable_or_datasource_reference(name):
    d = committed()[name]
    assert validate.reference_problems(d, DATASOURCE_UID, DATASOURCE_TYPE) == []
    broken = json.loads(json.dumps(d))
    broken["panels"][0]["targets"][0]["rawSql"] += " AND x IN (${nowhere:singlequote})"
    broken["panels"][1]["datasource"] = {"type": "prometheus", "uid": "prom"}
    problems = validate.reference_problems(broken, DATASOURCE_UID, DATASOURCE_TYPE)
    assert any("dangling variable $nowhere" in p for p in problems)
    assert any("prometheus/prom" in p or "'prom'" in p for p in problems)


def test_variables_chain_district_to_grid():
    d = committed()["operations.json"]
    names = [v["name"] for v in d["templating"]["list"]]
    assert names == ["db", "tz", "district", "street", "community", "grid", "category", "source"]
    by = {v["name"]: v for v in d["templating"]["list"]}
    assert "${district:singlequote}" in by["street"]["query"]
    assert "${street:singlequote}" in by["community"]["query"]
    assert "${community:singlequote}" in by["grid"]["query"]
    assert all(by[n]["multi"] and by[n]["includeAll"] for n in names[2:])
    assert by["db"]["hide"] == 2 and by["db"]["query"] == "gridpulse"


def test_titles_come_from_one_catalogue_in_either_language():
    city = load_city()
    for b in boards(city):
        for lang, pick in (("zh", 0), ("en", 1), ("both", None)):
            dash = dashboard(b, lang, timezone=city.timezone)  # type: ignore[arg-type]
            for panel, spec in zip(dash.panels, b.panels, strict=True):
                zh, en = TEXT[spec.title]
                want = f"{zh} / {en}" if pick is None else (zh, en)[pick]
                assert panel.title == want
    assert committed()["leadership.json"]["title"] == "领导驾驶舱 / Leadership"


def test_defaults_time_zone_refresh_and_targets():
    docs = committed()
    assert {d["timezone"] for d in docs.values()} == {"Asia/Shanghai"}
    assert {n: d["refresh"] for n, d in docs.items()} == {
        "operations.json": "30s",
        "sla.json": "1m",
        "leadership.json": "15m",
    }
    lead = docs["leadership.json"]
    (on_time,) = [p for p in lead["panels"] if p["title"].startswith("按期结案率 /")]
    steps = on_time["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "green", "value": 95.0}
    assert on_time["fieldConfig"]["defaults"]["unit"] == "percent"
    assert TARGETS["rework_rate"].thresholds().steps[0].color == "green"  # lower is better


def test_every_table_the_boards_read_is_made_by_a_migration():
    from grafana.readmodel import schema_settings
    from grafana.users import READ_TABLES
    from sinks.clickhouse import schema

    features = schema.Features.from_version("26.9.2.1")
    ddl = [s for m in schema.MIGRATIONS for s in m.statements("gp", features, schema_settings())]
    made = {m.group(1) for s in ddl if (m := re.search(r"CREATE \w+ IF NOT EXISTS gp\.(\w+)", s))}
    used = set(re.findall(r"\$\{db\}\.(\w+)", json.dumps(committed())))
    assert used <= set(READ_TABLES) <= made, (used - set(READ_TABLES), set(READ_TABLES) - made)
    for view in ("active_warnings", "warning_log", "open_alerts", "alert_ack_times"):
        assert view in used
    assert not used & {"warnings", "alert_state", "alert_outbox", "alert_deliveries"}


def test_provisioning_matches_the_boards():
    ds = yaml.safe_load((ROOT / "provisioning/datasources/clickhouse.yaml").read_text())
    (source,) = ds["datasources"]
    assert (source["uid"], source["type"]) == (DATASOURCE_UID, DATASOURCE_TYPE)
    assert source["jsonData"]["username"] == "gridpulse_grafana"
    assert source["secureJsonData"]["password"] == "${GRIDPULSE_GRAFANA_PASSWORD}"
    dash = yaml.safe_load((ROOT / "provisioning/dashboards/gridpulse.yaml").read_text())
    (provider,) = dash["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("gridpulse")
    compose = yaml.safe_load((ROOT.parent / "infra/compose/docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.endswith(":" + provider["options"]["path"] + ":ro") for m in mounts)
    assert any("grafana/provisioning" in m for m in mounts)


def test_read_only_user_sql_is_gated_and_keeps_the_password_out():
    from grafana.users import read_only_user_sql, supports_sql_users

    assert not supports_sql_users("18.16.1")
    assert supports_sql_users("20.4.2.9") and supports_sql_users("26.9.2.1")
    stmts = read_only_user_sql("gridpulse", "pw'x")
    assert stmts[0].startswith("CREATE USER IF NOT EXISTS gridpulse_grafana IDENTIFIED WITH ")
    assert "SETTINGS readonly = 2" in stmts[0] and "pw'x" not in "".join(stmts)
    assert stmts[2] == "REVOKE ALL ON *.* FROM gridpulse_grafana"
    assert "GRANT SELECT ON gridpulse.cases TO gridpulse_grafana" in stmts
    with pytest.raises(ValueError, match="empty password"):
        read_only_user_sql("gridpulse", "")
    with pytest.raises(ValueError, match="identifier"):
        read_only_user_sql("grid; DROP", "pw")
