"""The alert stage's ClickHouse store on chdb and on Debian's clickhouse-server 18.16: what is
saved comes back, a rebuilt stage does not page again, escalation keeps its clock across a
restart, and the on-call board's views answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from alerts.config import parse_config
from alerts.stage import AlertStage
from alerts.store import AlertStore, restore
from sinks.clickhouse import alerts as sql
from sinks.clickhouse.backend import ChdbBackend, ClickHouseBackend, NativeBackend
from sinks.clickhouse.tables import schema_settings

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU="
CONFIG = parse_config(
    {
        "route": {
            "receiver": "team",
            "group_by": ["street"],
            "group_wait": "0s",
            "group_interval": "1m",
            "escalation": {"steps": [{"after": "10m", "receiver": "duty"}]},
        },
        "receivers": [
            {"name": "team", "webhook": {"url": "http://127.0.0.1:9/t", "secret_env": ["S"]}},
            {"name": "duty", "webhook": {"url": "http://127.0.0.1:9/d", "secret_env": ["S"]}},
        ],
    }
)
KEEP = timedelta(days=1)


@pytest.fixture(params=["chdb", "server-18.16"])
def backend(request, tmp_path) -> Iterator[ClickHouseBackend]:
    if request.param == "chdb":
        b: ClickHouseBackend = ChdbBackend(tmp_path / "chdb")
    else:
        server = request.getfixturevalue("clickhouse_server")
        db = "gp_" + "".join(c for c in tmp_path.name if c.isalnum())[-12:]
        b = NativeBackend(server.rsplit("/", 1)[0] + f"/{db}")
    assert 6 in b.migrate_sync(schema_settings(("1m",), 30))
    try:
        yield b
    finally:
        b.close_sync()


def raw(i: int, urgent: bool = False) -> dict:
    t = T0.isoformat()
    return {
        "alert_id": f"A{i}",
        "kind": "breach",
        "level": 0,
        "case_id": f"H-{i}",
        "stage": "dispatch",
        "due_at": t,
        "fired_at": t,
        "deadline": t,
        "grid": "G1",
        "category": "litter",
        "unit": "sanitation",
        "urgent": urgent,
        "source": "hotline",
    }


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t


async def fresh(backend: ClickHouseBackend, clock: Clock) -> tuple[AlertStage, AlertStore]:
    """A stage rebuilt from what ``backend`` holds (as a restarted worker does)."""
    store = AlertStore(backend)
    stage = AlertStage(
        CONFIG, store.outbox, lambda g: ("D1", "S1", "C1"), lambda t: True, {"S": SECRET}, clock
    )
    restore(stage.dispatcher, await store.load(clock(), KEEP), clock())
    return stage, store


def test_saved_state_comes_back_and_a_restart_pages_nobody_again(backend):
    async def run() -> None:
        clock = Clock()
        stage, store = await fresh(backend, clock)
        assert [stage.on_sla_event(raw(i, urgent=i == 0)) for i in range(3)] == [True] * 3
        made = stage.tick_notifications()
        assert [(n.receiver, o) for n, o in made] == [("team", "accepted")]
        group_id = made[0][0].id
        assert store.outbox.due(clock(), 10) == []  # not stored yet: not sent
        await store.save(stage.dispatcher, clock())
        assert [r.notification_id for r in store.outbox.due(clock(), 10)] == [group_id]
        store.outbox.record_attempt(group_id, "delivered", "", clock(), http_status=200)
        clock.t = T0 + timedelta(minutes=2)
        h1 = next(s for s in stage.dispatcher.open_alerts() if s.alert.labels["case"] == "H-1")
        stage.dispatcher.ack(h1.alert.fingerprint, "li.wei", clock(), "on it")
        silence = stage.dispatcher.add_silence(
            ['case="H-2"'], "li.wei", "known", clock(), clock() + timedelta(hours=1), clock()
        )
        await store.save(stage.dispatcher, clock())

        # a restarted stage: same alerts, ack, silence and audit; the group is not sent again
        clock.t = T0 + timedelta(minutes=3)
        stage2, store2 = await fresh(backend, clock)
        d2 = stage2.dispatcher
        assert {s.alert.labels["case"]: s.acked_by for s in d2.open_alerts()} == {
            "H-0": "",
            "H-1": "li.wei",
            "H-2": "",
        }
        assert [s.id for s in d2.silences.all()] == [silence.id]
        assert [e.action for e in d2.audit] == ["ack", "silence_add"]
        assert store2.outbox.get(group_id).status == "delivered"
        made2 = stage2.tick_notifications()
        # H-2 was silenced after the group went out: the new content is a real change
        assert [(n.reason, o) for n, o in made2] == [("group", "accepted")]
        assert made2[0][0].id != group_id
        assert [a.labels["case"] for a in made2[0][0].alerts] == ["H-0", "H-1"]
        await store2.save(d2, clock())

        # escalation keeps the first notification's clock: due 10 min after T0, once
        clock.t = T0 + timedelta(minutes=9)
        stage3, store3 = await fresh(backend, clock)
        assert [o for _, o in stage3.tick_notifications()] == ["duplicate"]
        clock.t = T0 + timedelta(minutes=10, seconds=1)
        made3 = stage3.tick_notifications()
        assert [(n.reason, n.receiver, o) for n, o in made3] == [("escalation", "duty", "accepted")]
        await store3.save(stage3.dispatcher, clock())
        stage4, store4 = await fresh(backend, clock)
        assert [o for _, o in stage4.tick_notifications()] == ["duplicate"]
        pending = {r.notification_id for r in store4.outbox.pending()}
        assert pending == {made2[0][0].id, made3[0][0].id}  # re-driven by the next worker
        assert {r.notification_id for r in store4.outbox.due(clock(), 10)} == pending

        rows = backend.rows_sync(
            f"SELECT case_id, acknowledged, acked_by, escalation_level FROM "
            f"{backend.db}.{sql.OPEN_ALERTS_VIEW} ORDER BY case_id"
        )
        assert [tuple(map(str, r)) for r in rows] == [
            ("H-0", "0", "", "1"),
            ("H-1", "1", "li.wei", "0"),
            ("H-2", "0", "", "0"),
        ]
        board = backend.rows_sync(sql.open_alerts_sql(backend.db))
        assert [(str(r[1]), str(r[6])) for r in board] == [
            ("critical", "H-0"),
            ("major", "H-1"),
            ("major", "H-2"),
        ]
        acks = backend.rows_sync(
            f"SELECT case_id, seconds_to_ack FROM {backend.db}.{sql.ACK_TIMES_VIEW}"
        )
        assert [(str(c), int(s)) for c, s in acks] == [("H-1", 120)]
        status = backend.rows_sync(
            f"SELECT receiver, pending, delivered FROM {backend.db}.{sql.RECEIVER_STATUS_VIEW} "
            "ORDER BY receiver"
        )
        assert [tuple(map(str, r)) for r in status] == [("duty", "1", "0"), ("team", "1", "1")]
        audit = backend.rows_sync(
            f"SELECT who, action FROM {backend.db}.{sql.AUDIT_TABLE} ORDER BY seq"
        )
        assert [tuple(map(str, r)) for r in audit] == [
            ("li.wei", "ack"),
            ("li.wei", "silence_add"),
            ("gridpulse", "escalation"),
        ]

    asyncio.run(run())


def test_failures_dead_letters_and_a_resolution_survive_a_restart(backend):
    async def run() -> None:
        clock = Clock()
        stage, store = await fresh(backend, clock)
        stage.on_sla_event(raw(7))
        ((n, _),) = stage.tick_notifications()
        await store.save(stage.dispatcher, clock())
        ob = store.outbox
        ob.record_attempt(n.id, "retry", "HTTP 503", clock(), clock(), http_status=503)
        later = clock() + timedelta(minutes=1)
        ob.record_attempt(n.id, "dead", "HTTP 404", later, http_status=404, duration_s=0.01)
        fp = stage.dispatcher.open_alerts()[0].alert.fingerprint
        clock.t = T0 + timedelta(minutes=5)
        stage.dispatcher.resolve(fp, "li.wei", clock())
        await store.save(stage.dispatcher, clock())

        stage2, store2 = await fresh(backend, clock)
        assert [r.notification_id for r in store2.outbox.dead()] == [n.id]
        assert store2.outbox.get(n.id).last_error == "HTTP 404"
        # the resolved alert is remembered: its redelivered firing message changes nothing
        assert stage2.on_sla_event(raw(7)) is False
        assert stage2.dispatcher.open_alerts() == []
        # its resolution was never announced and it was notified firing: announced now, once
        ((res, outcome),) = stage2.tick_notifications()
        assert (res.status, outcome) == ("resolved", "accepted")
        store2.notified([res])
        await store2.save(stage2.dispatcher, clock())
        stage3, _ = await fresh(backend, clock)
        clock.t = T0 + timedelta(minutes=7)
        assert stage3.tick_notifications() == []
        assert store2.outbox.redrive([n.id], clock())[0].status == "pending"
        await store2.save(stage2.dispatcher, clock())

        failures = backend.rows_sync(
            f"SELECT receiver, attempts, failures, dead, last_error FROM "
            f"{backend.db}.{sql.DELIVERY_FAILURES_VIEW}"
        )
        assert [tuple(map(str, r)) for r in failures] == [("team", "2", "2", "1", "HTTP 404")]
        since = int((T0 - timedelta(hours=1)).timestamp())
        failing = backend.rows_sync(sql.failing_receivers_sql(backend.db, since))
        assert [(str(r[0]), int(r[1]), int(r[2]), str(r[4])) for r in failing] == [
            ("team", 2, 1, "HTTP 404")
        ]
        dead = backend.rows_sync(
            f"SELECT notification_id FROM {backend.db}.{sql.DEAD_DELIVERIES_VIEW}"
        )
        assert dead == []  # re-driven
        state = backend.rows_sync(
            f"SELECT status, resolved_by, resolution_sent FROM {backend.db}.{sql.STATE_TABLE} FINAL"
        )
        assert [tuple(map(str, r)) for r in state] == [("resolved", "li.wei", "1")]

    asyncio.run(run())
