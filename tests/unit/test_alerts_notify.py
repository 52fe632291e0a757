"""Signatures (spec vectors), payload shapes, retry policy, the outbox and the notifier."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from alerts.model import Alert, Notification
from alerts.notify import AttemptResult, InMemoryOutbox, Integration, Notifier, RetryPolicy
from alerts.notify.retry import classify, parse_retry_after
from alerts.notify.webhook import SignatureError, WebhookSecret, sign_headers, verify
from alerts.notify.webhook.config import WebhookConfig
from alerts.notify.webhook.payload import render
from alerts.notify.webhook.signing import load_secrets

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
# The Standard Webhooks specification's test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


# -- signatures ---------------------------------------------------------------------------


def test_spec_vector_signs_and_verifies():
    s = WebhookSecret(SPEC_SECRET)
    assert s.sign(SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIG
    assert WebhookSecret(SPEC_SECRET.removeprefix("whsec_")).sign(SPEC_ID, SPEC_TS, SPEC_BODY) == (
        SPEC_SIG
    )
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TS),
        "webhook-signature": SPEC_SIG,
    }
    assert verify(headers, SPEC_BODY.encode(), [s], now=SPEC_TS + 5) == SPEC_ID


def spec_headers(**over) -> dict[str, str]:
    h = sign_headers(SPEC_ID, SPEC_TS, SPEC_BODY, [WebhookSecret(SPEC_SECRET)])
    return h | over


@pytest.mark.parametrize(
    ("headers", "body", "now", "reason"),
    [
        (spec_headers(), b'{"test": 2432232315}', SPEC_TS, "no matching signature"),
        (spec_headers(), SPEC_BODY.encode(), SPEC_TS + 301, "outside the tolerance"),
        (spec_headers(), SPEC_BODY.encode(), SPEC_TS - 301, "outside the tolerance"),
        (spec_headers(**{"webhook-id": "msg_other"}), SPEC_BODY.encode(), SPEC_TS, "no matching"),
        (
            spec_headers(**{"webhook-signature": "v2," + SPEC_SIG[3:]}),
            SPEC_BODY.encode(),
            SPEC_TS,
            "no matching",
        ),
        (spec_headers(**{"webhook-timestamp": "soon"}), SPEC_BODY.encode(), SPEC_TS, "integer"),
        ({"webhook-id": SPEC_ID}, SPEC_BODY.encode(), SPEC_TS, "missing"),
    ],
)
def test_tampered_stale_or_malformed_requests_are_refused(headers, body, now, reason):
    with pytest.raises(SignatureError, match=reason):
        verify(headers, body, [WebhookSecret(SPEC_SECRET)], now=now)


def test_wrong_secret_is_refused_and_rotation_accepts_either_secret():
    old, new = WebhookSecret(WebhookSecret.generate()), WebhookSecret(WebhookSecret.generate())
    h = sign_headers("n1", SPEC_TS, "{}", [old, new])
    assert len(h["webhook-signature"].split()) == 2
    assert verify(h, b"{}", [old], now=SPEC_TS) == "n1"
    assert verify(h, b"{}", [new], now=SPEC_TS) == "n1"
    with pytest.raises(SignatureError):
        verify(h, b"{}", [WebhookSecret(SPEC_SECRET)], now=SPEC_TS)


def test_secrets_come_from_env_or_files_and_never_show(tmp_path):
    text = WebhookSecret.generate()
    f = tmp_path / "hook.secret"
    f.write_text(text + "\n")
    (a,) = load_secrets(files=[f])
    (b,) = load_secrets(env=["HOOK"], environ={"HOOK": text})
    assert a.sign("x", 1, "{}") == b.sign("x", 1, "{}")
    body = text.removeprefix("whsec_")
    for shown in (repr(a), str(b), repr([a, b])):
        assert body not in shown and "***" in shown
    with pytest.raises(ValueError, match="not set"):
        load_secrets(env=["MISSING"], environ={})
    with pytest.raises(ValueError, match="one or two"):
        load_secrets()
    with pytest.raises(ValueError, match="whsec_"):
        WebhookSecret("whsec_***not-base64***")


# -- payloads -----------------------------------------------------------------------------


def notification(n_alerts: int = 2, **over) -> Notification:
    alerts = tuple(
        Alert(
            labels={"alertname": "sla", "case": f"H-{i}", "street": "Jinrong", "severity": "major"},
            annotations={"summary": f"case {i}", "board_url": f"https://g/d?var-case=H-{i}"},
            starts_at=T0,
        )
        for i in range(n_alerts)
    )
    fields = dict(
        id="n-1",
        receiver="duty",
        group_key='0:{street="Jinrong"}',
        group_labels={"street": "Jinrong"},
        reason="group",
        alerts=alerts,
        acknowledged=(alerts[0].fingerprint,),
        created_at=T0,
    )
    return Notification(**(fields | over))


def test_alertmanager_v4_shape():
    body = json.loads(render(notification(), "alertmanager", "https://gp/alerts"))
    assert set(body) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "duty"
    assert body["groupLabels"] == {"street": "Jinrong"}
    assert body["commonLabels"] == {"alertname": "sla", "severity": "major", "street": "Jinrong"}
    a = body["alerts"][0]
    assert set(a) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert a["startsAt"] == "2026-11-30T09:00:00Z" and a["endsAt"] == "0001-01-01T00:00:00Z"
    assert a["generatorURL"] == "https://g/d?var-case=H-0"
    truncated = json.loads(render(notification(5), "alertmanager", max_alerts=2))
    assert len(truncated["alerts"]) == 2 and truncated["truncatedAlerts"] == 3


def test_gridpulse_v1_shape():
    n = notification()
    body = json.loads(render(n, "gridpulse", "https://gp/alerts"))
    assert body["schema"] == "gridpulse.alerts/v1" and body["id"] == "n-1"
    assert body["reason"] == "group" and body["escalation_step"] is None
    assert [a["acknowledged"] for a in body["alerts"]] == [True, False]
    assert body["alerts"][0]["fingerprint"] == n.alerts[0].fingerprint
    resolved = n.model_copy(
        update={"alerts": tuple(a.resolved(T0 + timedelta(hours=1)) for a in n.alerts)}
    )
    body = json.loads(render(resolved, "gridpulse"))
    assert body["status"] == "resolved" and body["alerts"][0]["ends_at"] == "2026-11-30T10:00:00Z"


def test_webhook_config_requires_one_or_two_secrets():
    with pytest.raises(ValueError, match="one or two secrets"):
        WebhookConfig(name="x", url="http://127.0.0.1/hook")
    with pytest.raises(ValueError):
        WebhookConfig(name="x", url="http://h/", secret_env=["A", "B", "C"])


# -- retry policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (None, "retry"),
        (500, "retry"),
        (503, "retry"),
        (429, "retry"),
        (400, "fail"),
        (401, "fail"),
        (404, "fail"),
        (410, "gone"),
    ],
)
def test_classify(status, verdict):
    assert classify(status) == verdict


def test_backoff_is_exponential_with_full_jitter_and_capped():
    p = RetryPolicy(base=timedelta(seconds=1), cap=timedelta(seconds=30))
    assert [p.backoff(k, lambda: 1.0).total_seconds() for k in range(1, 8)] == [
        1,
        2,
        4,
        8,
        16,
        30,
        30,
    ]
    assert p.backoff(5, lambda: 0.0) == timedelta(0)
    assert p.backoff(3, lambda: 0.5) == timedelta(seconds=2)


def test_retry_after_seconds_or_http_date():
    assert parse_retry_after("7", T0) == timedelta(seconds=7)
    assert parse_retry_after("Mon, 30 Nov 2026 09:02:00 GMT", T0) == timedelta(minutes=2)
    assert parse_retry_after("Mon, 30 Nov 2026 08:00:00 GMT", T0) == timedelta(0)
    assert parse_retry_after("tomorrow", T0) is None and parse_retry_after(None, T0) is None
    p = RetryPolicy(max_retry_after=timedelta(minutes=5))
    assert p.wait(1, timedelta(hours=2), lambda: 1.0) == timedelta(minutes=5)
    assert p.wait(1, timedelta(seconds=3), lambda: 1.0) == timedelta(seconds=3)


# -- outbox -------------------------------------------------------------------------------


def test_outbox_contract():
    ob = InMemoryOutbox()
    assert ob.accept("n1", "r", "{}", T0) is True
    assert ob.accept("n1", "r", "{changed}", T0) is False  # dedup by id, first body kept
    assert ob.accept("n2", "r", "{}", T0 + timedelta(seconds=1)) is True
    assert [r.notification_id for r in ob.due(T0 + timedelta(seconds=1), 10)] == ["n1", "n2"]
    assert [r.notification_id for r in ob.due(T0, 10)] == ["n1"]
    ob.record_attempt("n1", "retry", "HTTP 503", T0, T0 + timedelta(seconds=5))
    assert [r.notification_id for r in ob.due(T0 + timedelta(seconds=2), 10)] == ["n2"]
    ob.record_attempt("n1", "dead", "HTTP 503", T0 + timedelta(seconds=5))
    row = ob.get("n1")
    assert row.status == "dead" and row.attempt == 2 and row.last_error == "HTTP 503"
    assert row.payload == "{}" and [r.notification_id for r in ob.dead()] == ["n1"]
    (redriven,) = ob.redrive(["n1", "n2", "nope"], T0 + timedelta(minutes=1))
    assert redriven.status == "pending" and redriven.attempt == 2
    ob.record_attempt("n1", "delivered", "", T0 + timedelta(minutes=1))
    assert ob.get("n1").delivered_at == T0 + timedelta(minutes=1)
    with pytest.raises(ValueError):
        ob.record_attempt("n2", "retry", "x", T0)


# -- notifier with a scripted sender ------------------------------------------------------


class ScriptedSender:
    """Answers from a script of statuses (the last one repeats); records every attempt."""

    def __init__(self, name: str, script: list[int | None], retry_after: str | None = None):
        self.name, self.script, self.retry_after = name, script, retry_after
        self.attempts: list[tuple[str, str]] = []

    async def send(self, notification_id: str, payload: str) -> AttemptResult:
        status = self.script[min(len(self.attempts), len(self.script) - 1)]
        self.attempts.append((notification_id, payload))
        ok = status is not None and 200 <= status < 300
        return AttemptResult(status, "" if ok else f"status {status}", self.retry_after)

    async def aclose(self) -> None:
        return None


def notifier_with(*senders: ScriptedSender, max_attempts: int = 4, muter=None) -> Notifier:
    policy = RetryPolicy(
        max_attempts=max_attempts, base=timedelta(milliseconds=1), cap=timedelta(milliseconds=4)
    )
    integrations = [
        Integration(
            s.name, lambda n: render(n, "gridpulse"), s, retry=policy, rate_per_s=1000, burst=100
        )
        for s in senders
    ]
    return Notifier(integrations, InMemoryOutbox(), muter=muter, poll_interval=0.005)


def submit_for(nt: Notifier, receiver: str, count: int) -> list[str]:
    ids = [f"{receiver}-{i}" for i in range(count)]
    for nid in ids:
        assert nt.submit(notification(id=nid, receiver=receiver)) == "accepted"
    return ids


def test_retries_until_delivered_with_the_same_body():
    s = ScriptedSender("r", [503, None, 429, 200])
    nt = notifier_with(s)
    submit_for(nt, "r", 1)
    assert asyncio.run(nt.run_until_idle(5))
    assert [nid for nid, _ in s.attempts] == ["r-0"] * 4
    assert len({body for _, body in s.attempts}) == 1
    row = nt.outbox.get("r-0")
    assert row.status == "delivered" and row.attempt == 4


def test_other_4xx_is_final_and_exhausted_retries_become_dead_letters():
    bad, down = ScriptedSender("bad", [400]), ScriptedSender("down", [500])
    nt = notifier_with(bad, down, max_attempts=3)
    submit_for(nt, "bad", 1)
    submit_for(nt, "down", 1)
    asyncio.run(nt.run_until_idle(5))
    assert len(bad.attempts) == 1 and len(down.attempts) == 3
    assert {(r.notification_id, r.attempt, r.last_error) for r in nt.outbox.dead()} == {
        ("bad-0", 1, "status 400"),
        ("down-0", 3, "status 500"),
    }
    down.script = [200]
    nt.outbox.redrive(["down-0"], datetime.now(UTC))
    asyncio.run(nt.run_until_idle(5))
    assert nt.outbox.get("down-0").status == "delivered"


def test_410_disables_the_receiver_with_a_reason_and_dead_letters_its_rows():
    gone, fine = ScriptedSender("gone", [410]), ScriptedSender("fine", [200])
    gone_ids = submit_for(nt := notifier_with(gone, fine), "gone", 5)
    submit_for(nt, "fine", 5)
    asyncio.run(nt.run_until_idle(5))
    assert "410 Gone" in nt.disabled()["gone"]
    assert len(gone.attempts) < 5  # the receiver stopped being called
    assert sorted(r.notification_id for r in nt.outbox.dead("gone")) == gone_ids
    assert all(nt.outbox.get(f"fine-{i}").status == "delivered" for i in range(5))


def test_duplicates_unknown_receivers_and_muted_notifications_are_not_sent():
    s = ScriptedSender("r", [200])
    nt = notifier_with(s, muter=lambda n, now: "silenced by s1" if n.id == "quiet" else None)
    assert nt.submit(notification(id="a", receiver="r")) == "accepted"
    assert nt.submit(notification(id="a", receiver="r")) == "duplicate"
    assert nt.submit(notification(id="b", receiver="nobody")) == "unknown_receiver"
    assert nt.submit(notification(id="quiet", receiver="r")) == "muted"
    asyncio.run(nt.run_until_idle(5))
    assert [nid for nid, _ in s.attempts] == ["a"]
    assert nt.outbox.get("quiet").status == "muted"
    assert nt.outbox.get("quiet").last_error == "silenced by s1"


def test_reference_receiver_refuses_to_start_without_a_usable_secret(tmp_path, capsys):
    from alerts.receiver import main

    assert main(["--secret-file", str(tmp_path / "missing"), "--port", "0"]) == 2
    bad = tmp_path / "bad.secret"
    bad.write_text("not a secret\n")
    assert main(["--secret-file", str(bad), "--port", "0"]) == 2
    assert "whsec_" in capsys.readouterr().err
