"""Early warnings and the alert stage's rows for the simulated day (``grafana.sample``), built
on the day's own events and SLA alerts, in the tables' real column layouts
(``sinks.clickhouse.warnings``, ``sinks.clickhouse.alerts``).

Warnings: episodes of one fingerprint (``core.warning.fingerprint``) of one to four firing
revisions with rising severity, about half resolved by a last revision; their evidence is the
ids of the events behind them. A few started the day before, one fired again after resolving,
a few revisions are published twice. Alerts: one per warning and per SLA alert of the last
36 h, with first notification, ack, escalation (critical alerts, after 15 and 45 min unacked)
and resolution, stored as an older and a latest version; their webhook notifications as
outbox versions and delivery attempts, one receiver flaky and one broken, so retries, failures
and dead deliveries all show.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from core.warning import fingerprint
from sinks.clickhouse import alerts as alert_sql
from sinks.clickhouse import warnings as warning_sql

HOUR = 3600
SEVERITIES = ("info", "minor", "major", "critical")
KINDS_BY_SOURCE = {
    "inspector": ("count_spike", "level_shift", "duplicate_cluster"),
    "hotline": ("count_spike", "count_drop", "repeat_complaint"),
    "sensor": ("sensor_threshold", "sensor_rate", "sensor_stuck"),
}
DETECTORS = {
    "count_spike": "seasonal_poisson",
    "count_drop": "seasonal_poisson",
    "level_shift": "cusum",
    "duplicate_cluster": "duplicate_radius",
    "repeat_complaint": "repeat_caller",
    "sensor_threshold": "sensor_rules",
    "sensor_rate": "sensor_rules",
    "sensor_stuck": "sensor_rules",
    "patrol_gap": "patrol_gap",
    "hotspot": "hotspot_adjacent",
}
RECEIVER_FAILS = {
    "street-team": 0.04,
    "night-shift": 0.3,
    "district-duty": 0.1,
    "city-duty": 0.85,
}
"""Chance that one delivery attempt to the receiver fails: night-shift flaky, city-duty broken."""
MAX_ATTEMPTS = 6
ESCALATION_AFTER = ((15 * 60, "district-duty"), (45 * 60, "city-duty"))
PEOPLE = ("wang.li", "zhang.wei", "chen.jie", "liu.yang", "zhao.min")


def _revisions(
    rng: np.random.Generator,
    base: dict[str, Any],
    started: int,
    t1: int,
    first_revision: int = 0,
    resolve: bool | None = None,
) -> list[dict[str, Any]]:
    """One episode: firing revisions of rising severity from ``started``, maybe a resolved
    one; revisions after ``t1`` (the end of the day) are not published yet."""
    severity = int(rng.choice(4, p=(0.15, 0.35, 0.3, 0.2)))
    resolve = bool(rng.random() < 0.5) if resolve is None else resolve
    n = int(rng.integers(1, 5))
    times = started + np.concatenate([[0], np.cumsum(rng.exponential(40 * 60, n - 1) + 60)])
    out = []
    for k, t in enumerate(times.astype(int)):
        if t >= t1:
            break
        if k:
            severity = min(3, severity + int(rng.random() < 0.3))
        out.append(_revision(base, first_revision + k, "firing", severity, started, int(t), rng))
    if resolve and out:
        t = out[-1]["updated_at"] + int(rng.exponential(HOUR)) + 120
        if t < t1:
            last = SEVERITIES.index(out[-1]["severity"])
            out.append(
                _revision(base, first_revision + len(out), "resolved", last, started, t, rng)
            )
    return out


def _revision(
    base: dict[str, Any],
    revision: int,
    status: str,
    severity: int,
    started: int,
    at: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    score = round(float(0.4 + 0.15 * severity + rng.uniform(0, 0.14)), 3)
    return {
        **base,
        "revision": revision,
        "status": status,
        "severity": SEVERITIES[severity],
        "score": score,
        "params": json.dumps({"min_score": 0.4, "z": round(score * 6, 2)}, sort_keys=True),
        "started_at": started,
        "updated_at": at,
        "resolved_at": at if status == "resolved" else 0,
        "published_at": at + int(rng.integers(1, 5)),
    }


def _base(kind: str, key: dict[str, str], where: dict[str, str], **kw: Any) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint(kind, key),
        "kind": kind,
        "detector": DETECTORS[kind],
        "category": "",
        "sensor_id": "",
        "unit": "",
        **where,
        **kw,
    }


def _where(row: Any, grid: bool = True) -> dict[str, str]:
    return {
        "district": row.district,
        "street": row.street,
        "community": row.community if grid else "",
        "grid_code": row.grid_code if grid else "",
    }


def warnings(rng: np.random.Generator, events: pd.DataFrame, t0: int, t1: int) -> pd.DataFrame:
    """Warning revisions (``WARNING_COLUMNS``; a few rows twice, as re-published)."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    ev = events[events["late"] == 0]
    hour = ev["event_time"] // HOUR * HOUR
    for i in np.sort(rng.choice(len(ev), size=40, replace=False)):
        a = ev.iloc[i]
        kind = str(rng.choice(KINDS_BY_SOURCE[a.source]))
        ws = int(a.event_time) // HOUR * HOUR
        if kind.startswith("sensor_"):
            sensor = f"S-{a.grid_code}-01"
            key, evidence = {"sensor": sensor}, [a.event_id]
            observed, expected = round(float(rng.uniform(60, 95)), 1), 50.0
            extra = {"sensor_id": sensor, "category": a.category}
        else:
            key = {"grid": a.grid_code, "category": a.category}
            same = ev[(ev["grid_code"] == a.grid_code) & (ev["category"] == a.category)]
            ids = same[hour[same.index] == ws]["event_id"].tolist()
            evidence, observed = ids[:20], float(len(ids))
            expected = round(observed / float(rng.uniform(2, 5)), 2)
            if kind == "count_drop":
                observed, expected = expected, observed
            extra = {"category": a.category}
        base = _base(kind, key, _where(a), **extra)
        if base["fingerprint"] in seen:
            continue
        seen.add(base["fingerprint"])
        base.update(
            window_start=ws,
            window_end=ws + HOUR,
            observed=observed,
            expected=expected,
            evidence=json.dumps(evidence),
            summary=f"{kind} {a.category} at {a.grid_code}: observed {observed:g}, "
            f"expected {expected:g}",
        )
        rows += _revisions(rng, base, ws + HOUR + int(rng.integers(60, 600)), t1)
    rows += _carried_over(rng, ev, t0, t1)
    rows += _hotspot(rng, ev, t1)
    rows += _fired_again(rng, rows, t1)
    frame = pd.DataFrame(rows)[list(warning_sql.WARNING_COLUMNS)]
    again = frame.iloc[rng.choice(len(frame), size=max(1, len(frame) // 10), replace=False)]
    return pd.concat([frame, again], ignore_index=True)


def _carried_over(rng: np.random.Generator, ev: pd.DataFrame, t0: int, t1: int) -> list[dict]:
    """Patrol gaps opened the day before, still firing (one with no report at all)."""
    out = []
    inspected = ev[ev["source"] == "inspector"]
    for k, i in enumerate(rng.choice(len(inspected), size=3, replace=False)):
        a = inspected.iloc[i]
        started = t0 - int(rng.integers(2, 9)) * HOUR
        evidence = [] if k == 0 else [a.event_id]
        gap = (t0 - started) / HOUR + 12
        base = _base(
            "patrol_gap",
            {"grid": a.grid_code},
            _where(a),
            window_start=started - 12 * HOUR,
            window_end=started,
            observed=round(gap, 1),
            expected=12.0,
            evidence=json.dumps(evidence),
            summary=f"grid {a.grid_code}: no inspector report for {gap:.1f} h",
        )
        out += _revisions(rng, base, started, t1, resolve=False)
    return out


def _hotspot(rng: np.random.Generator, ev: pd.DataFrame, t1: int) -> list[dict]:
    """A street-level hotspot (no grid): its evidence names the grids."""
    a = ev.iloc[int(rng.integers(len(ev) // 2, len(ev)))]
    grids = sorted(ev[ev["street"] == a.street]["grid_code"].unique())[:4]
    ws = int(a.event_time) // HOUR * HOUR
    base = _base(
        "hotspot",
        {"street": a.street, "category": a.category},
        _where(a, grid=False),
        category=a.category,
        window_start=ws,
        window_end=ws + HOUR,
        observed=float(len(grids)),
        expected=1.0,
        evidence=json.dumps([f"grid:{g}" for g in grids]),
        summary=f"{a.category} rising in {len(grids)} adjacent grids around {grids[0]}",
    )
    return _revisions(rng, base, ws + HOUR + 300, t1, resolve=False)


def _fired_again(rng: np.random.Generator, rows: list[dict], t1: int) -> list[dict]:
    """The first warning resolved early enough fires again: same fingerprint, a new episode
    (new ``started_at``), revisions counting on."""
    for r in rows:
        if r["status"] == "resolved" and r["updated_at"] < t1 - 4 * HOUR:
            base = {k: v for k, v in r.items() if k in warning_sql.WARNING_COLUMNS}
            again = r["updated_at"] + HOUR
            return _revisions(rng, base, again, t1, r["revision"] + 1, resolve=False)
    return []


# -- the alert stage -----------------------------------------------------------------------


def _sla_severity(kind: str, level: int, urgent: int) -> str:
    """As ``alerts.model.alert.sla_severity``."""
    if kind == "escalation":
        return "critical"
    if kind == "breach":
        return "critical" if urgent else "major"
    return "major" if urgent or level >= 2 else "minor"


def _fp(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]


def _alerts(
    warning_rows: pd.DataFrame, sla: pd.DataFrame, t1: int
) -> list[tuple[str, dict[str, Any], str, int, int]]:
    """(fingerprint, labels, summary, starts_at, ends_at) of every alert: each warning's latest
    episode (resolved by its source), each SLA alert fired in the last 36 h (resolved by
    hand, later)."""
    out = []
    latest = warning_rows.drop_duplicates().sort_values("revision")
    for fp, revs in latest.groupby("fingerprint", sort=True):
        last = revs.iloc[-1]
        episode = revs[revs["started_at"] == last.started_at]
        labels = {
            "alertname": "warning",
            "severity": last.severity,
            **{c: last[c] for c in ("district", "street", "community", "grid_code", "category")},
            "kind": last.kind,
            "unit": last.unit,
            "case_id": "",
        }
        ends = int(last.resolved_at) if last.status == "resolved" else 0
        out.append((_fp("warning", fp), labels, last.summary, int(episode.started_at.min()), ends))
    recent = sla[sla["fired_at"] >= t1 - 36 * HOUR].sort_values(["fired_at", "alert_id"])
    for a in recent.itertuples():
        labels = {
            "alertname": "sla",
            "severity": _sla_severity(a.kind, a.level, a.urgent),
            **{c: getattr(a, c) for c in ("district", "street", "community", "grid_code")},
            "category": a.category,
            "kind": a.kind,
            "unit": a.unit,
            "case_id": a.case_id,
        }
        summary = f"Case {a.case_id} ({a.category}, stage {a.stage}): {a.kind}"
        out.append((_fp("sla", a.alert_id), labels, summary, int(a.fired_at), 0))
    return out


class _Versions:
    """Row versions: increasing microseconds of the change's second (as the stage stores)."""

    def __init__(self) -> None:
        self.n = 0

    def at(self, t: int) -> int:
        self.n += 1
        return t * 1_000_000 + self.n


def alert_tables(
    rng: np.random.Generator,
    warning_rows: pd.DataFrame,
    sla: pd.DataFrame,
    t1: int,
    tz_offset_s: int,
) -> dict[str, pd.DataFrame]:
    """``alert_state``, ``alert_outbox`` and ``alert_deliveries`` rows (older versions too).
    Most acked SLA alerts are resolved by the person who acked them."""
    versions = _Versions()
    states: list[dict[str, Any]] = []
    notes: list[tuple[str, str, int, str]] = []  # notification id, receiver, created, alert
    for fp, labels, summary, starts, ends in _alerts(warning_rows, sla, t1):
        wait = 10 if labels["alertname"] == "sla" else 30
        notified = starts + wait if starts + wait < t1 and (not ends or starts + wait < ends) else 0
        stop = min(t1, ends or t1)
        acked, acked_by = 0, ""
        if notified and rng.random() < 0.75:
            t = notified + 60 + int(rng.exponential(15 * 60))
            if t < stop:
                acked, acked_by = t, str(rng.choice(PEOPLE))
        resolved_by = ""
        if acked and labels["alertname"] == "sla" and rng.random() < 0.8:
            t = acked + 60 + int(rng.exponential(45 * 60))
            if t < t1:
                ends, resolved_by = t, acked_by
        level = 0
        if notified and labels["severity"] == "critical":
            level = sum(
                notified + after < min(stop, acked or stop) for after, _ in ESCALATION_AFTER
            )
        local_hour = (starts + tz_offset_s) // HOUR % 24
        receiver = "street-team" if 8 <= local_hour < 18 else "night-shift"
        if notified:
            notes.append((f"n-{fp}-0", receiver, notified, fp))
            for k, (after, escalate_to) in enumerate(ESCALATION_AFTER[:level], start=1):
                notes.append((f"n-{fp}-e{k}", escalate_to, notified + after, fp))
            if ends:
                notes.append((f"n-{fp}-r", receiver, ends, fp))
        row = {
            "fingerprint": fp,
            **{k: labels[k] for k in ("alertname", "severity", "district", "street")},
            **{k: labels[k] for k in ("community", "grid_code", "category", "kind", "unit")},
            "case_id": labels["case_id"],
            "summary": summary,
            "starts_at": starts,
            "ends_at": 0,
            "first_notified_at": notified,
            "acked_by": "",
            "acked_at": 0,
            "resolved_by": "",
            "escalation_level": 0,
            "resolution_sent": 0,
            "status": "firing",
            "escalated": "[]",
        }
        first = {
            **row,
            "updated_at": notified or starts,
            "version": versions.at(notified or starts),
        }
        states.append(first)
        changes = [t for t in (acked, ends) if t] + [
            notified + after for after, _ in ESCALATION_AFTER[:level]
        ]
        if changes:
            at = max(changes)
            states.append(
                {
                    **row,
                    "status": "resolved" if ends else "firing",
                    "ends_at": ends,
                    "acked_by": acked_by,
                    "acked_at": acked,
                    "resolved_by": resolved_by,
                    "escalation_level": level,
                    "resolution_sent": int(bool(ends and notified)),
                    "escalated": json.dumps([["escalate", k] for k in range(1, level + 1)]),
                    "updated_at": at,
                    "version": versions.at(at),
                }
            )
    state = pd.DataFrame(states)
    state["alert"] = [
        json.dumps(
            {"fingerprint": s["fingerprint"], "status": s["status"], "severity": s["severity"]}
        )
        for s in states
    ]
    outbox, attempts = _deliveries(rng, notes, t1, versions)
    return {
        alert_sql.STATE_TABLE: state[list(alert_sql.STATE_COLUMNS)],
        alert_sql.OUTBOX_TABLE: outbox,
        alert_sql.ATTEMPTS_TABLE: attempts,
    }


def _deliveries(
    rng: np.random.Generator, notes: list[tuple[str, str, int, str]], t1: int, versions: _Versions
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each notification's outbox versions (created, then its outcome) and its attempts:
    backing off 30 s × 2^k, dead after ``MAX_ATTEMPTS``, still pending at ``t1``; a few muted
    (silenced) with no attempt."""
    boxes: list[dict[str, Any]] = []
    tries: list[tuple[Any, ...]] = []
    muted = set(rng.choice(len(notes), size=3, replace=False).tolist())
    for i, (nid, receiver, created, fp) in enumerate(sorted(notes, key=lambda n: (n[2], n[0]))):
        box: dict[str, Any] = {
            "notification_id": nid,
            "receiver": receiver,
            "payload": json.dumps({"receiver": receiver, "alerts": [fp]}),
            "status": "pending",
            "attempt": 0,
            "last_error": "",
            "created_at": created,
            "updated_at": created,
            "next_attempt_at": created,
            "delivered_at": 0,
        }
        boxes.append({**box, "version": versions.at(created)})
        if i in muted:
            boxes.append({**box, "status": "muted", "version": versions.at(created)})
            continue
        at, final = created + int(rng.integers(0, 3)), dict(box)
        for k in range(1, MAX_ATTEMPTS + 1):
            if at >= t1:
                final.update(next_attempt_at=at)
                break
            fail = rng.random() < RECEIVER_FAILS[receiver]
            status = int(rng.choice([500, 502, 503, 0])) if fail else 200
            error = ("timeout after 10 s" if status == 0 else f"HTTP {status}") if fail else ""
            outcome = "delivered" if not fail else ("dead" if k == MAX_ATTEMPTS else "retry")
            ms = 10_000.0 if status == 0 else round(float(rng.lognormal(4.8, 0.4)), 1)
            tries.append((nid, receiver, k, outcome, status, error, ms, at))
            final.update(attempt=k, last_error=error, updated_at=at)
            if outcome == "delivered":
                final.update(status="delivered", delivered_at=at)
                break
            if outcome == "dead":
                final.update(status="dead")
                break
            at += 30 * 2 ** (k - 1)
            final.update(next_attempt_at=at)
        if final["attempt"]:
            boxes.append({**final, "version": versions.at(final["updated_at"])})
    outbox = pd.DataFrame(boxes)[list(alert_sql.OUTBOX_COLUMNS)]
    attempts = pd.DataFrame(tries, columns=list(alert_sql.ATTEMPT_COLUMNS))
    return outbox, attempts
