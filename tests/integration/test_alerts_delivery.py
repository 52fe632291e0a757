"""Delivery over real HTTP to receivers on 127.0.0.1 that are slow, flaky, time out, answer
410, go down for a while, or hang while the notifier dies.

Assertions are on counts and order, never on durations. No broker, no ClickHouse.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from alerts.config import parse_config
from alerts.dispatch import Dispatcher
from alerts.model import Alert, Notification
from alerts.notify import InMemoryOutbox, Notifier
from alerts.notify.webhook import WebhookSecret, sign_headers, webhook_integration
from alerts.receiver import SLOW, Inbox, ReceiverServer, Response

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
FAST_RETRY = {"max_attempts": 60, "base": "20ms", "cap": "200ms", "max_retry_after": "100ms"}


@contextlib.contextmanager
def running(*sites: Site) -> Iterator[None]:
    """Stops the sites' servers however the test ends."""
    try:
        yield
    finally:
        for s in sites:
            s.server.stop()


class Site:
    """One receiver: its secret, inbox (dedup by webhook-id) and HTTP server."""

    def __init__(self, name: str, gate=None, fmt: str = "gridpulse") -> None:
        self.name, self.fmt = name, fmt
        self.secret_text = WebhookSecret.generate()
        self.inbox = Inbox([WebhookSecret(self.secret_text)])
        self.server = ReceiverServer(self.inbox, gate=gate).start()  # port known from here on

    def webhook(self, **over) -> dict:
        return {
            "url": self.server.url,
            "format": self.fmt,
            "secret_env": [self.env],
            "timeout": "2s",
            "retry": FAST_RETRY,
        } | over

    @property
    def env(self) -> str:
        return f"HOOK_{self.name.upper()}"


def environ(*sites: Site) -> dict[str, str]:
    return {s.env: s.secret_text for s in sites}


def flaky_gate(seed: int) -> Callable[[Mapping[str, str], bytes], Response | None]:
    """Fails half of all requests: 500, 503, or 429 with Retry-After in seconds or a date."""
    rng, lock = random.Random(seed), threading.Lock()
    past = "Mon, 30 Nov 2026 08:00:00 GMT"

    def gate(headers, body):
        with lock:
            roll = rng.random()
        if roll >= 0.5:
            return None
        return [
            Response(500, "boom"),
            Response(503, "busy"),
            Response(429, "slow down", {"retry-after": "0"}),
            Response(429, "slow down", {"retry-after": past}),
        ][int(roll * 8)]

    return gate


def hang_first_attempt(seconds: float):
    """The first request of every webhook-id hangs past the sender's timeout (and is then
    processed anyway, as a real overloaded receiver would)."""
    seen, lock = set(), threading.Lock()

    def gate(headers, body):
        with lock:
            first = headers["webhook-id"] not in seen
            seen.add(headers["webhook-id"])
        return Response(SLOW, delay_s=seconds) if first else None

    return gate


def storm(units: list[str], streets: int, per_street: int) -> list[Alert]:
    return [
        Alert(
            labels={
                "alertname": "sla",
                "kind": "breach",
                "severity": "major",
                "unit": u,
                "street": f"S{s}",
                "case": f"H-{u}-{s}-{i}",
            },
            starts_at=T0,
        )
        for u in units
        for s in range(streets)
        for i in range(per_street)
    ]


async def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.02)


def test_every_notification_reaches_faulty_receivers_at_least_once_and_is_processed_once():
    sites = {
        "fast": Site("fast"),
        "flaky": Site("flaky", flaky_gate(seed=7), fmt="alertmanager"),
        "slow": Site("slow", lambda h, b: Response(SLOW, delay_s=0.1)),
        "hangs": Site("hangs", hang_first_attempt(0.6)),
        "down": Site("down"),
        "gone": Site("gone", lambda h, b: Response(410, "this hook was removed")),
    }
    sites["down"].server.stop()  # down from the start; its port is kept for the restart
    timeouts = {"hangs": {"timeout": "250ms"}, "slow": {"concurrency": 2}}
    cfg = parse_config(
        {
            "route": {
                "receiver": "fast",
                "group_by": ["street"],
                "group_wait": "10s",
                "group_interval": "1m",
                "routes": [{"matchers": [f"unit={u}"], "receiver": u} for u in sites],
            },
            "receivers": [
                {"name": u, "webhook": s.webhook(**timeouts.get(u, {}))} for u, s in sites.items()
            ],
        }
    )
    dispatcher = Dispatcher(cfg.dispatch())
    alerts = storm(list(sites), streets=12, per_street=5)
    for a in alerts:
        dispatcher.ingest(a, T0)
    wave1 = dispatcher.tick(T0 + timedelta(seconds=10))
    for a in alerts[::2]:  # half the cases are resolved at the source
        dispatcher.ingest(a.resolved(T0 + timedelta(seconds=20)), T0 + timedelta(seconds=20))
    wave2 = dispatcher.tick(T0 + timedelta(seconds=70))
    notifications = wave1 + wave2
    per_receiver = {u: [n.id for n in notifications if n.receiver == u] for u in sites}
    # grouping: one notification per street and wave, not one per alert
    assert len(alerts) == 360 and {u: len(ids) for u, ids in per_receiver.items()} == {
        u: 24 for u in sites
    }

    async def deliver() -> Notifier:
        integrations = [
            webhook_integration(w, environ=environ(*sites.values())) for w in cfg.webhooks()
        ]
        nt = Notifier(integrations, InMemoryOutbox(), poll_interval=0.01)
        assert {nt.submit(n) for n in notifications} == {"accepted"}
        stop = asyncio.Event()
        runner = asyncio.create_task(nt.run(stop))
        down_rows = per_receiver["down"]
        await wait_for(lambda: all(nt.outbox.get(i).attempt >= 2 for i in down_rows[:4]))
        sites["down"].server.start()  # back, on the same port
        live = [i for u, ids in per_receiver.items() if u != "gone" for i in ids]
        await wait_for(lambda: all(nt.outbox.get(i).status == "delivered" for i in live))
        stop.set()
        await runner
        await nt.aclose()
        return nt

    with running(*sites.values()):
        nt = asyncio.run(deliver())

    for u, site in sites.items():
        order, duplicates, rejected = site.inbox.snapshot()
        assert rejected == {}, u  # every signature verified
        assert len(order) == len(set(order)), u  # each webhook-id processed once
        if u == "gone":
            assert order == []
            continue
        assert sorted(order) == sorted(per_receiver[u]), u  # every one delivered
        # the webhook-id is the notification id; the body is in the receiver's format
        for wid in order:
            body = site.inbox.payloads[wid]
            assert body["receiver"] == u
            if site.fmt == "alertmanager":
                assert body["version"] == "4" and body["groupKey"].startswith("0.")
            else:
                assert body["schema"] == "gridpulse.alerts/v1" and body["id"] == wid
    assert any(nt.outbox.get(i).attempt > 1 for i in per_receiver["flaky"])
    assert all(nt.outbox.get(i).attempt >= 2 for i in per_receiver["hangs"])
    assert "410 Gone" in nt.disabled()["gone"]
    dead = nt.outbox.dead("gone")
    assert sorted(r.notification_id for r in dead) == sorted(per_receiver["gone"])
    assert all(r.last_error.startswith(("HTTP 410", "receiver disabled")) for r in dead)


def test_dead_letters_of_a_receiver_that_was_gone_are_redriven_after_it_returns():
    answer = {"status": 410}
    site = Site("back", lambda h, b: Response(answer["status"]) if answer["status"] else None)
    cfg = parse_config(
        {"route": {"receiver": "back"}, "receivers": [{"name": "back", "webhook": site.webhook()}]}
    )

    async def run() -> tuple[Notifier, list[str]]:
        nt = Notifier(
            [webhook_integration(cfg.webhooks()[0], environ=environ(site))],
            InMemoryOutbox(),
            poll_interval=0.01,
        )
        ids = [f"n{i}" for i in range(6)]
        for nid in ids:
            nt.submit(note(nid, "back"))
        await nt.run_until_idle(10)
        assert sorted(r.notification_id for r in nt.outbox.dead()) == ids
        answer["status"] = 0
        nt.enable("back")
        nt.outbox.redrive(ids, datetime.now(UTC))
        assert await nt.run_until_idle(10)
        await nt.aclose()
        return nt, ids

    with running(site):
        nt, ids = asyncio.run(run())
    assert sorted(site.inbox.snapshot()[0]) == ids
    assert all(nt.outbox.get(i).status == "delivered" for i in ids)


def note(nid: str, receiver: str, n_alerts: int = 1) -> Notification:
    alerts = tuple(
        Alert(labels={"alertname": "sla", "case": f"{nid}-{i}"}, starts_at=T0)
        for i in range(n_alerts)
    )
    return Notification(
        id=nid,
        receiver=receiver,
        group_key=f"g-{nid}",
        group_labels={},
        reason="group",
        alerts=alerts,
        created_at=T0,
    )


def test_a_blocked_receiver_does_not_stall_another():
    release = threading.Event()
    blocked = Site("blocked", lambda h, b: (release.wait(20), Response(SLOW))[1])
    fast = Site("fast")
    cfg = parse_config(
        {
            "route": {"receiver": "fast"},
            "receivers": [
                {"name": "blocked", "webhook": blocked.webhook(timeout="30s", concurrency=2)},
                {"name": "fast", "webhook": fast.webhook(concurrency=2, rate_per_s=1000, burst=50)},
            ],
        }
    )

    async def run() -> None:
        nt = Notifier(
            [webhook_integration(w, environ=environ(blocked, fast)) for w in cfg.webhooks()],
            InMemoryOutbox(),
            poll_interval=0.01,
        )
        for i in range(20):
            nt.submit(note(f"b{i}", "blocked"))
        for i in range(100):
            nt.submit(note(f"f{i}", "fast"))
        stop = asyncio.Event()
        runner = asyncio.create_task(nt.run(stop))
        await wait_for(lambda: len(fast.inbox.snapshot()[0]) == 100)
        assert blocked.inbox.snapshot()[0] == []  # still held, yet the fast one got all
        release.set()
        await wait_for(lambda: len(blocked.inbox.snapshot()[0]) == 20)
        stop.set()
        await runner
        await nt.aclose()

    with running(blocked, fast):
        asyncio.run(run())


def test_worker_dying_mid_delivery_loses_nothing_and_receiver_dedups():
    hold = threading.Event()
    arrived: list[str] = []  # webhook-ids held at the receiver (list.append is thread-safe)

    def gate(headers, body):
        if not hold.is_set():
            arrived.append(headers["webhook-id"])
            hold.wait(10)  # the worker dies while these requests are in flight
            return Response(SLOW)
        return None

    site = Site("r", gate)
    cfg = parse_config(
        {"route": {"receiver": "r"}, "receivers": [{"name": "r", "webhook": site.webhook()}]}
    )
    outbox = InMemoryOutbox()  # survives the worker, as the ClickHouse outbox would
    ids = sorted(f"n{i:02d}" for i in range(12))

    async def first_worker() -> None:
        nt = Notifier(
            [webhook_integration(cfg.webhooks()[0], environ=environ(site))],
            outbox,
            poll_interval=0.01,
        )
        for nid in ids:
            nt.submit(note(nid, "r"))
        runner = asyncio.create_task(nt.run(asyncio.Event()))
        await wait_for(lambda: len(arrived) >= 4)  # four requests in flight (concurrency 4)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        await nt.aclose()

    async def second_worker() -> None:
        nt = Notifier(
            [webhook_integration(cfg.webhooks()[0], environ=environ(site))],
            outbox,
            poll_interval=0.01,
        )
        assert await nt.run_until_idle(15)
        await nt.aclose()

    with running(site):
        asyncio.run(first_worker())
        assert sorted(r.notification_id for r in outbox.pending()) == ids  # nothing recorded
        hold.set()  # the held requests complete at the receiver after the worker died
        asyncio.run(second_worker())
        deadline = time.monotonic() + 10
        while site.inbox.snapshot()[1] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    order, duplicates, rejected = site.inbox.snapshot()
    assert sorted(order) == ids and len(order) == len(set(order))
    assert duplicates == 4 and rejected == {}
    assert all(outbox.get(i).status == "delivered" for i in ids)


def test_receiver_refuses_tampered_stale_and_wrongly_signed_requests_over_http():
    site = Site("r")
    secret = WebhookSecret(site.secret_text)
    body = '{"schema":"gridpulse.alerts/v1","alerts":[]}'

    def post(headers: dict[str, str], content: str) -> httpx.Response:
        return httpx.post(site.server.url, content=content.encode(), headers=headers, timeout=5)

    now = int(time.time())
    with running(site):
        good = sign_headers("msg_1", now, body, [secret])
        assert post(good, body).status_code == 200
        assert post(good, body).text == "duplicate"
        assert post(good, body.replace("[]", "[1]")).status_code == 401
        stale = sign_headers("msg_2", now - 600, body, [secret])
        assert post(stale, body).status_code == 401
        wrong = sign_headers("msg_3", now, body, [WebhookSecret(WebhookSecret.generate())])
        assert post(wrong, body).status_code == 401
        rotated = sign_headers(
            "msg_4", now, body, [WebhookSecret(WebhookSecret.generate()), secret]
        )
        assert post(rotated, body).status_code == 200
        assert post({}, body).status_code == 401
    order, duplicates, rejected = site.inbox.snapshot()
    assert order == ["msg_1", "msg_4"] and duplicates == 1
    assert sum(rejected.values()) == 4
    assert rejected["webhook-timestamp outside the tolerance"] == 1
    assert rejected["no matching signature"] == 2


def test_stage_end_to_end_sla_breach_to_signed_webhook_and_escalation_without_input():
    """Raw sla.events messages → grouped webhook to the street team; nobody acks, so on
    ticks alone the district duty officer is paged; an ack via the dispatcher stops the rest."""
    from alerts.stage import AlertStage

    team, duty = Site("team"), Site("duty", fmt="alertmanager")
    cfg = parse_config(
        {
            "board_url": "https://grafana.example/d/cases",
            "route": {
                "receiver": "team",
                "group_by": ["street"],
                "group_wait": "30s",
                "group_interval": "5m",
                "escalation": {
                    "steps": [
                        {"after": "15m", "receiver": "duty"},
                        {"after": "30m", "receiver": "duty"},
                    ]
                },
            },
            "receivers": [
                {"name": "team", "webhook": team.webhook()},
                {"name": "duty", "webhook": duty.webhook()},
            ],
        }
    )
    now = {"t": T0}
    stage = AlertStage(
        cfg,
        InMemoryOutbox(),
        lambda g: ("Xicheng", "Jinrong", "Fengsheng"),
        is_working_time=lambda t: True,
        environ=environ(team, duty),
        clock=lambda: now["t"],
        poll_interval=0.01,
    )

    def raw(i: int, urgent: bool) -> dict:
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
            "caller_hash": "f" * 64,
        }

    async def run() -> None:
        stop = asyncio.Event()
        delivery = asyncio.create_task(stage.notifier.run(stop))
        assert [stage.on_sla_event(raw(i, urgent=i == 0)) for i in range(3)] == [True] * 3
        assert stage.on_sla_event(raw(1, urgent=False)) is False  # redelivered message
        for minute in range(0, 40):  # a tick a minute, no new input
            now["t"] = T0 + timedelta(minutes=minute, seconds=30)
            stage.tick()
            if minute == 20:
                critical = next(iter(stage.dispatcher.open_alerts()))
                stage.dispatcher.ack(critical.alert.fingerprint, "li.wei", now["t"])
        await wait_for(lambda: not stage.notifier.outbox.pending())
        stop.set()
        await delivery
        await stage.aclose()

    with running(team, duty):
        asyncio.run(run())
    (team_id,) = team.inbox.snapshot()[0]
    body = team.inbox.payloads[team_id]
    assert body["reason"] == "group" and len(body["alerts"]) == 3
    assert "f" * 64 not in str(body) and body["alerts"][0]["annotations"]["board_url"]
    (duty_id,) = duty.inbox.snapshot()[0]  # step 1 at 15 min; acked before step 2 at 30 min
    page = duty.inbox.payloads[duty_id]
    assert page["version"] == "4" and [a["labels"]["case"] for a in page["alerts"]] == ["H-0"]
    assert page["alerts"][0]["labels"]["severity"] == "critical"
