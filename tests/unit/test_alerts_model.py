"""Alert model, topic contracts and the no-personal-data guarantee."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from alerts.model import (
    Alert,
    Notification,
    alert_from_sla,
    alert_from_warning,
    fingerprint_of,
    scrub,
)
from alerts.notify.webhook.payload import render
from core.warning import EarlyWarning, GridPath

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PHONE = "13800138000"
CALLER_HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
REPORTER = "Wang Xiaoming"


def locate(grid: str) -> tuple[str, str, str]:
    return {"G1": ("Xicheng", "Jinrong", "Fengsheng")}.get(grid, ("", "", ""))


def sla_raw(**over) -> dict:
    raw = {
        "alert_id": "A1",
        "kind": "breach",
        "level": 0,
        "fraction": 1.0,
        "case_id": "H-1001",
        "stage": "dispatch",
        "stage_seq": 0,
        "due_at": T0.isoformat(),
        "fired_at": T0.isoformat(),
        "deadline": T0.isoformat(),
        "stage_started_at": (T0 - timedelta(hours=2)).isoformat(),
        "grid": "G1",
        "category": "litter",
        "unit": "sanitation",
        "urgent": False,
        "source": "hotline",
    }
    return raw | over


def warning(**over) -> EarlyWarning:
    fields = dict(
        fingerprint="w1",
        revision=0,
        status="firing",
        kind="repeat_complaint",
        severity="minor",
        where=GridPath(district="Xicheng", street="Jinrong", community="Fengsheng", grid_code="G1"),
        category="noise",
        window_start=T0,
        window_end=T0 + timedelta(minutes=5),
        observed=4,
        expected=0.5,
        score=0.9,
        detector="repeat",
        params={"caller": CALLER_HASH},
        evidence=[f"caller {CALLER_HASH} called 4 times", f"phone {PHONE}", "mail a.b@example.cn"],
        started_at=T0,
        updated_at=T0,
    )
    return EarlyWarning(**(fields | over))


def test_sla_event_becomes_a_labelled_alert():
    a = alert_from_sla(sla_raw(), locate, board_url="https://grafana/d/cases")
    assert a.labels == {
        "alertname": "sla",
        "case": "H-1001",
        "category": "litter",
        "community": "Fengsheng",
        "district": "Xicheng",
        "grid": "G1",
        "kind": "breach",
        "severity": "major",
        "stage": "dispatch",
        "street": "Jinrong",
        "unit": "sanitation",
    }
    assert a.status == "firing" and a.starts_at == T0 and a.ends_at is None
    assert a.annotations["board_url"] == "https://grafana/d/cases?var-case=H-1001&var-grid=G1"
    assert "past its deadline" in a.annotations["summary"]


@pytest.mark.parametrize(
    ("kind", "level", "urgent", "severity"),
    [
        ("warning", 1, False, "minor"),
        ("warning", 2, False, "major"),
        ("breach", 0, True, "critical"),
        ("escalation", 1, False, "critical"),
    ],
)
def test_sla_severity(kind, level, urgent, severity):
    a = alert_from_sla(sla_raw(kind=kind, level=level, urgent=urgent), locate)
    assert a.labels["severity"] == severity


def test_sla_contract_is_validated():
    with pytest.raises(ValidationError):
        alert_from_sla(sla_raw(kind="nonsense"), locate)
    with pytest.raises(ValidationError):
        alert_from_sla({k: v for k, v in sla_raw().items() if k != "case_id"}, locate)
    with pytest.raises(ValidationError):
        alert_from_sla(sla_raw(fired_at="2026-11-30T09:00:00"), locate)  # naive time


def test_fingerprint_is_from_identity_labels_not_severity():
    a = alert_from_sla(sla_raw(kind="warning", level=1), locate)
    b = alert_from_sla(sla_raw(kind="warning", level=2, fired_at=T0.isoformat()), locate)
    assert a.labels["severity"] != b.labels["severity"]
    assert a.fingerprint == b.fingerprint == fingerprint_of(a.labels)
    c = alert_from_sla(sla_raw(case_id="H-1002"), locate)
    assert c.fingerprint != alert_from_sla(sla_raw(), locate).fingerprint


def test_labels_and_annotations_are_allow_listed():
    with pytest.raises(ValidationError, match="labels not allowed"):
        Alert(labels={"caller_hash": "x"}, starts_at=T0)
    with pytest.raises(ValidationError, match="annotations not allowed"):
        Alert(labels={"grid": "G1"}, annotations={"phone": PHONE}, starts_at=T0)
    with pytest.raises(ValidationError):
        Alert(labels={"grid": "G1"}, starts_at=T0, status="resolved")  # no ends_at


def test_scrub_removes_personal_data_but_keeps_dates():
    text = f"call {PHONE} or 010-12345678 or 138 0013 8000, a@b.cn, {CALLER_HASH[:20]}"
    out = scrub(text)
    for secret in (PHONE, "12345678", "0013 8000", "a@b.cn", CALLER_HASH[:20]):
        assert secret not in out
    assert scrub("due 2026-11-30T09:00:00+08:00 level 2") == "due 2026-11-30T09:00:00+08:00 level 2"


def test_warning_becomes_an_alert_and_resolves():
    a = alert_from_warning(warning())
    assert a.labels["alertname"] == "warning" and a.labels["kind"] == "repeat_complaint"
    assert a.labels["street"] == "Jinrong" and a.labels["grid"] == "G1"
    r = alert_from_warning(warning(status="resolved", revision=3, resolved_at=T0 + timedelta(1)))
    assert r.status == "resolved" and r.ends_at == T0 + timedelta(1)
    assert r.fingerprint == a.fingerprint


@pytest.mark.parametrize("fmt", ["gridpulse", "alertmanager"])
def test_no_personal_data_in_any_notification(fmt):
    raw = sla_raw(caller_hash=CALLER_HASH, caller_phone=PHONE, reporter_name=REPORTER)
    alerts = (alert_from_sla(raw, locate), alert_from_warning(warning()))
    n = Notification(
        id="n1",
        receiver="r",
        group_key="g",
        group_labels={},
        reason="group",
        alerts=alerts,
        created_at=T0,
    )
    body = render(n, fmt)
    for personal in (CALLER_HASH, CALLER_HASH[:16], PHONE, REPORTER, "a.b@example.cn"):
        assert personal not in body
    decoded = json.loads(body)
    assert len(decoded["alerts"]) == 2
    assert "called 4 times" in body  # the evidence itself survives, scrubbed
