"""The alerts HTTP API: token auth (hashed at rest), roles, silences, ack, resolve, audit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from alerts.api import TokenStore, hash_token, make_app, new_token
from alerts.dispatch import DispatchConfig, Dispatcher
from alerts.model import Alert

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
OPERATOR, VIEWER = new_token(), new_token()


def tokens_file(tmp_path) -> TokenStore:
    f = tmp_path / "tokens.yaml"
    f.write_text(
        "tokens:\n"
        f"  - {{who: li.wei, role: operator, sha256: {hash_token(OPERATOR)}}}\n"
        f"  - {{who: team-xicheng, role: viewer, sha256: {hash_token(VIEWER)}}}\n"
    )
    return TokenStore.from_file(f)


def dispatcher() -> Dispatcher:
    cfg = DispatchConfig.model_validate(
        {"route": {"receiver": "duty", "group_wait": "0s"}, "receivers": ["duty"]}
    )
    d = Dispatcher(cfg)
    d.ingest(
        Alert(labels={"alertname": "sla", "case": "H-1", "severity": "critical"}, starts_at=T0), T0
    )
    return d


def call(store: TokenStore, d: Dispatcher, script, changes: list | None = None):
    changes = [] if changes is None else changes

    async def run():
        app = make_app(
            d,
            store,
            clock=lambda: T0 + timedelta(minutes=5),
            on_change=lambda a, p, r: changes.append((a, p.who)),
        )
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            return await script(client)

    return asyncio.run(run())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_are_stored_hashed_and_env_format_parses(tmp_path):
    store = tokens_file(tmp_path)
    text = (tmp_path / "tokens.yaml").read_text()
    assert OPERATOR not in text and VIEWER not in text
    assert store.authenticate(OPERATOR).who == "li.wei"
    assert store.authenticate(OPERATOR + "x") is None
    token = new_token()
    env = TokenStore.from_env({"GRIDPULSE_ALERTS_API_TOKENS": f"ops:operator:{hash_token(token)}"})
    assert env.authenticate(token).role == "operator" and token not in repr(env)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"Authorization": "Basic x"}, 401),
        (bearer(VIEWER), 403),
    ],
)
def test_changes_refuse_missing_unknown_and_underprivileged_tokens(tmp_path, headers, status):
    d = dispatcher()
    fp = next(iter(d.alerts))

    async def script(client):
        r = await client.post(f"/api/v1/alerts/{fp}/ack", json={}, headers=headers)
        s = await client.post(
            "/api/v1/silences",
            headers=headers,
            json={"matchers": ["case=H-1"], "reason": "x", "duration": "1h"},
        )
        return r.status, s.status, r.headers.get("WWW-Authenticate")

    ack_status, silence_status, challenge = call(tokens_file(tmp_path), d, script)
    assert ack_status == silence_status == status
    assert (challenge == "Bearer") is (status == 401)
    assert d.audit == [] and d.silences.all() == []


def test_reads_need_a_token_and_viewers_may_read(tmp_path):
    async def script(client):
        anon = await client.get("/api/v1/alerts")
        seen = await client.get("/api/v1/alerts", headers=bearer(VIEWER))
        return anon.status, seen.status, await seen.json()

    anon, ok, alerts = call(tokens_file(tmp_path), dispatcher(), script)
    assert (anon, ok) == (401, 200)
    assert [a["labels"]["case"] for a in alerts] == ["H-1"]


def test_operator_silences_acks_and_resolves_in_their_own_name(tmp_path):
    d = dispatcher()
    fp = next(iter(d.alerts))
    changes: list = []

    async def script(client):
        h = bearer(OPERATOR)
        s = await client.post(
            "/api/v1/silences",
            headers=h,
            json={
                "matchers": ['case="H-1"'],
                "reason": "road works",
                "duration": "2h",
                "author": "someone-else",
            },
        )
        assert s.status == 400  # the author is the token's owner, never given
        s = await client.post(
            "/api/v1/silences",
            headers=h,
            json={"matchers": ['case="H-1"'], "reason": "road works", "duration": "2h"},
        )
        sid = (await s.json())["id"]
        bad = await client.post(
            "/api/v1/silences",
            headers=h,
            json={"matchers": ["case=~("], "reason": "x", "duration": "1h"},
        )
        ack = await client.post(f"/api/v1/alerts/{fp}/ack", headers=h, json={"note": "going"})
        missing = await client.post("/api/v1/alerts/0000/ack", headers=h, json={})
        exp = await client.delete(f"/api/v1/silences/{sid}", headers=h)
        res = await client.post(f"/api/v1/alerts/{fp}/resolve", headers=h)
        audit = await (await client.get("/api/v1/audit", headers=bearer(VIEWER))).json()
        return [s.status, bad.status, ack.status, missing.status, exp.status, res.status], audit

    statuses, audit = call(tokens_file(tmp_path), d, script, changes)
    assert statuses == [200, 400, 200, 404, 200, 200]
    assert [(e["who"], e["action"]) for e in audit] == [
        ("li.wei", "silence_add"),
        ("li.wei", "ack"),
        ("li.wei", "silence_expire"),
        ("li.wei", "resolve"),
    ]
    assert [c[0] for c in changes] == ["silence_add", "ack", "silence_expire", "resolve"]
    state = d.alerts[fp]
    assert state.acked_by == "li.wei" and state.alert.status == "resolved"
    (silence,) = d.silences.all()
    assert silence.author == "li.wei" and silence.ends_at == T0 + timedelta(minutes=5)
