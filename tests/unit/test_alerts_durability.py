"""The alert stage's durability pieces without a database: the outbox sends only stored rows
and loses nothing when an insert fails; a dispatcher rebuilt from stored states neither
re-escalates nor forgets resolutions; the service refuses broken messages; the re-drive API;
the schema's migration list; the worker's calendar and locator closures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from aiohttp.test_utils import TestClient, TestServer

from alerts.api import TokenStore, hash_token, make_app
from alerts.config import parse_config
from alerts.dispatch import DispatchConfig, Dispatcher
from alerts.model import Alert
from alerts.service import AlertService
from alerts.stage import AlertStage
from alerts.store import AlertStore, ClickHouseOutbox
from core.settings import Settings
from core.warning import EarlyWarning
from gridpulse.alerting import locator, working_time
from sinks.clickhouse import alerts as sql
from sinks.clickhouse import schema

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU="


class FakeBackend:
    """Records inserts; fails the next ``fail`` inserts."""

    db = "gp"

    def __init__(self) -> None:
        self.inserted: dict[str, list[pd.DataFrame]] = {}
        self.fail = 0

    async def insert(self, table: str, frame: pd.DataFrame) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("ClickHouse is down")
        self.inserted.setdefault(table, []).append(frame)

    async def rows(self, sql_text: str) -> list[tuple]:
        return []

    def count(self, table: str) -> int:
        return sum(len(f) for f in self.inserted.get(table, []))


def dispatcher(**route) -> Dispatcher:
    cfg = DispatchConfig.model_validate(
        {
            "route": {
                "receiver": "duty",
                "group_wait": "0s",
                "escalation": {"steps": [{"after": "10m", "receiver": "city"}]},
                **route,
            },
            "receivers": ["duty", "city"],
        }
    )
    return Dispatcher(cfg)


def alert(case: str, severity: str = "critical") -> Alert:
    return Alert(labels={"alertname": "sla", "case": case, "severity": severity}, starts_at=T0)


def test_only_stored_rows_are_due_and_a_failed_insert_keeps_them_queued():
    backend = FakeBackend()
    store = AlertStore(backend)
    d = dispatcher()
    ob = store.outbox
    assert ob.accept("n1", "duty", "{}", T0) and not ob.accept("n1", "duty", "{}", T0)
    assert ob.due(T0, 10) == []
    backend.fail = 1
    with pytest.raises(ConnectionError):
        asyncio.run(store.save(d, T0))
    assert ob.due(T0, 10) == [] and len(ob.queued) == 1
    asyncio.run(store.save(d, T0))
    assert [r.notification_id for r in ob.due(T0, 10)] == ["n1"] and ob.queued == []
    ob.record_attempt("n1", "retry", "HTTP 503", T0, T0 + timedelta(seconds=5), http_status=503)
    ob.record_attempt("n1", "delivered", "", T0 + timedelta(seconds=6), http_status=200)
    asyncio.run(store.save(d, T0))
    assert backend.count(sql.OUTBOX_TABLE) == 3 and backend.count(sql.ATTEMPTS_TABLE) == 2
    attempts = pd.concat(backend.inserted[sql.ATTEMPTS_TABLE])
    assert list(attempts["http_status"]) == [503, 200]
    assert list(attempts["outcome"]) == ["retry", "delivered"]
    assert ob.get("n1").status == "delivered" and ob.get("n1").payload == ""
    assert not ob.accept("n1", "duty", "{}", T0)  # a delivered id is still refused


def test_versions_increase_within_one_second():
    backend = FakeBackend()
    store = AlertStore(backend)
    for i in range(3):
        store.outbox.accept(f"n{i}", "duty", "{}", T0)
    asyncio.run(store.save(dispatcher(), T0))
    versions = list(backend.inserted[sql.OUTBOX_TABLE][0]["version"])
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_only_changed_alert_states_are_saved_again():
    backend = FakeBackend()
    store = AlertStore(backend)
    d = dispatcher()
    d.ingest(alert("H-1"), T0)
    d.ingest(alert("H-2"), T0)
    asyncio.run(store.save(d, T0))
    assert backend.count(sql.STATE_TABLE) == 2
    asyncio.run(store.save(d, T0))
    assert backend.count(sql.STATE_TABLE) == 2
    d.ack(alert("H-1").fingerprint, "li.wei", T0)
    asyncio.run(store.save(d, T0))
    assert backend.count(sql.STATE_TABLE) == 3
    last = backend.inserted[sql.STATE_TABLE][-1]
    assert list(last["acked_by"]) == ["li.wei"] and list(last["case_id"]) == ["H-1"]
    assert backend.count(sql.AUDIT_TABLE) == 1


def test_a_restored_acknowledged_alert_does_not_escalate_and_an_unacked_one_keeps_its_clock():
    d = dispatcher()
    d.restore(alert("H-1"), T0, first_notified_at=T0, acked_by="li.wei", acked_at=T0)
    d.restore(alert("H-2"), T0, first_notified_at=T0 - timedelta(minutes=9))
    d.restore(alert("H-3"), T0, first_notified_at=T0, escalated=[("0", 0)])
    notes = d.tick(T0 + timedelta(minutes=1))
    escalations = [n for n in notes if n.reason == "escalation"]
    assert [n.alerts[0].labels["case"] for n in escalations] == ["H-2"]
    assert [(e.who, e.action) for e in d.audit] == [("gridpulse", "escalation")]


def test_a_restored_resolution_is_announced_once_and_only_if_it_was_notified_firing():
    d = dispatcher()
    done = alert("H-1").resolved(T0)
    d.restore(alert("H-2").resolved(T0), T0, first_notified_at=T0)  # to announce
    d.restore(done, T0, first_notified_at=T0, resolution_sent=True)
    d.restore(alert("H-3").resolved(T0), T0)  # never notified
    (note,) = d.tick(T0)
    assert [(a.labels["case"], a.status) for a in note.alerts] == [("H-2", "resolved")]
    # a redelivered firing copy of a resolved alert is old news
    assert d.ingest(alert("H-1"), T0 + timedelta(minutes=1)) is False
    assert d.tick(T0 + timedelta(hours=1)) == []


def service() -> AlertService:
    cfg = parse_config(
        {
            "route": {"receiver": "duty", "group_wait": "0s"},
            "receivers": [
                {"name": "duty", "webhook": {"url": "http://127.0.0.1:9/", "secret_env": ["S"]}}
            ],
        }
    )
    store = AlertStore(FakeBackend())
    stage = AlertStage(
        cfg, store.outbox, lambda g: ("D", "S", "C"), lambda t: True, {"S": SECRET}, lambda: T0
    )
    return AlertService(stage, store, "p.sla.events", "p.warnings")


def test_the_service_takes_both_topics_and_refuses_broken_messages():
    svc = service()
    sla = (
        b'{"alert_id": "a", "kind": "breach", "level": 0, "case_id": "H-1", "stage": "dispatch",'
        b' "due_at": "2026-11-30T09:00:00Z", "fired_at": "2026-11-30T09:00:00Z",'
        b' "deadline": "2026-11-30T09:00:00Z", "grid": "G1", "category": "litter",'
        b' "unit": "sanitation", "urgent": false, "source": "hotline"}'
    )
    assert svc.ingest("p.sla.events", sla) is True
    assert svc.ingest("p.sla.events", sla) is False  # a redelivery
    assert svc.ingest("p.sla.events", b"{not json") is False
    assert svc.ingest("p.sla.events", b'{"kind": "breach"}') is False
    warning = EarlyWarning(
        fingerprint="w1",
        revision=0,
        status="firing",
        kind="count_spike",
        severity="major",
        where={"district": "D", "street": "S"},
        category="litter",
        window_start=T0,
        window_end=T0 + timedelta(minutes=5),
        observed=12,
        expected=3,
        score=0.9,
        detector="seasonal",
        started_at=T0,
        updated_at=T0,
    )
    assert svc.ingest("p.warnings", warning.model_dump_json().encode()) is True
    assert svc.rejected == {"p.sla.events": 2}
    assert svc.ingested == {"p.sla.events": 2, "p.warnings": 1}
    made = asyncio.run(svc.step())
    # one group per alertname (the default group_by): sla and warning
    assert made == 2 and svc.stats()["pending"] == 2 and svc.stats()["open_alerts"] == 2


def test_deliveries_are_listed_and_redriven_only_by_operators():
    svc = service()
    ob: ClickHouseOutbox = svc.store.outbox
    ob.accept("n1", "duty", "{}", T0)
    ob.stored(["n1"])
    ob.record_attempt("n1", "dead", "HTTP 404", T0, http_status=404)
    op, viewer = "gpat_op", "gpat_view"
    tokens = TokenStore.from_env(
        {
            "GRIDPULSE_ALERTS_API_TOKENS": f"li:operator:{hash_token(op)},"
            f"board:viewer:{hash_token(viewer)}"
        }
    )
    saved: list[str] = []

    async def run():
        app = make_app(
            svc.stage.dispatcher,
            tokens,
            lambda: T0,
            on_change=lambda a, p, r: saved.append(a),
            notifier=svc.stage.notifier,
        )
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as c:
            h = {"Authorization": f"Bearer {viewer}"}
            listed = await (await c.get("/api/v1/deliveries", headers=h)).json()
            refused = await c.post("/api/v1/deliveries/redrive", json={"ids": ["n1"]}, headers=h)
            h = {"Authorization": f"Bearer {op}"}
            empty = await c.post("/api/v1/deliveries/redrive", json={}, headers=h)
            ok = await c.post("/api/v1/deliveries/redrive", json={"receiver": "duty"}, headers=h)
            return listed, refused.status, empty.status, ok.status, await ok.json()

    listed, refused, empty, status, body = asyncio.run(run())
    assert [(d["id"], d["last_error"]) for d in listed["deliveries"]] == [("n1", "HTTP 404")]
    assert (refused, empty, status) == (403, 400, 200)
    assert body == {"redriven": ["n1"]} and ob.get("n1").status == "pending"
    assert saved == ["redrive"]
    assert [(e.who, e.action) for e in svc.stage.dispatcher.audit] == [("li", "redrive")]


def test_migrations_are_unique_and_pending_skips_a_gap():
    versions = [m.version for m in schema.MIGRATIONS]
    assert len(versions) == len(set(versions)) and 6 in versions
    assert 6 in [m.version for m in schema.pending({1, 2, 3, 4})]
    assert 6 not in [m.version for m in schema.pending({1, 2, 3, 4, 6})]
    ddl = schema.v6_alerts("gp", schema.Features.from_version("18.16.1"), schema.Settings(30, ()))
    assert not any("TTL" in s or "LowCardinality" in s or "DateTime64" in s for s in ddl)
    for view in sql.VIEWS:
        assert any(f"VIEW IF NOT EXISTS gp.{view} " in s for s in ddl)


def test_the_city_calendar_and_grid_paths_feed_the_roster_and_labels():
    city = Settings().city
    is_working = working_time(city.calendar)
    tz = city.calendar.timezone
    from zoneinfo import ZoneInfo

    monday = datetime(2026, 11, 30, 10, 0, tzinfo=ZoneInfo(tz))
    assert is_working(monday) and not is_working(monday.replace(hour=22))
    assert not is_working(monday - timedelta(days=1))  # Sunday
    locate = locator(city)
    grid = next(city.iter_grids()).code
    path = city.grid_paths[grid]
    assert locate(grid) == (path.district, path.street, path.community)
    assert locate("nowhere") == ("", "", "")


def test_suppression_follows_silences_starting_and_ending_without_other_changes():
    d = dispatcher(group_interval="1s")  # the group is due at every tick below
    d.ingest(alert("H-1", "major"), T0)
    fp = alert("H-1").fingerprint
    later = T0 + timedelta(minutes=10)
    d.add_silence(['case="H-1"'], "li.wei", "works", later, later + timedelta(minutes=10), T0)
    assert len(d.tick(T0)) == 1 and d.alerts[fp].silenced_by == ()
    d.tick(later - timedelta(seconds=1))
    assert d.alerts[fp].silenced_by == ()
    d.tick(later)
    assert d.alerts[fp].silenced_by != ()
    d.tick(later + timedelta(minutes=10))
    assert d.alerts[fp].silenced_by == ()
