"""The alert model and the converters from the two input topics.

An :class:`Alert` is what routing, grouping and delivery work on: allow-listed ``labels`` (who
and what), allow-listed ``annotations`` (human text), a ``fingerprint`` from the identity labels
(all labels but ``severity``, so a warning whose severity rises stays one alert), a status and
start / end times. Nothing outside the allow-lists can reach a notification; free text
(evidence) is additionally scrubbed of phone numbers, e-mail addresses and long hex digests
(caller hashes).

Input contracts (see ``docs/alerts.md``):

* ``<prefix>.sla.events``: one JSON object per SLA warning / breach / escalation, validated by
  :class:`SlaEventIn`; converted by :func:`alert_from_sla`.
* ``<prefix>.warnings``: :class:`core.warning.EarlyWarning` revisions; converted by
  :func:`alert_from_warning`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from core.warning import EarlyWarning

AlertStatus = Literal["firing", "resolved"]
Severity = Literal["info", "minor", "major", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "minor": 1, "major": 2, "critical": 3}

LABEL_NAMES: frozenset[str] = frozenset(
    {
        "alertname",  # sla | warning
        "district",
        "street",
        "community",
        "grid",
        "category",
        "kind",  # warning | breach | escalation, or an early-warning kind
        "severity",
        "unit",  # handling unit
        "case",  # case id (H-<request> / I-<report>): an id, never a person
        "stage",
        "sensor",
    }
)
"""The only labels an alert may carry."""

ANNOTATION_NAMES: frozenset[str] = frozenset({"summary", "evidence", "board_url"})
"""The only annotations an alert may carry."""

IDENTITY_EXCLUDED: frozenset[str] = frozenset({"severity"})

# Personal data that free text might carry: phone numbers (7+ digits, optionally grouped),
# e-mail addresses and long hex digests such as caller hashes.
_PHONE = re.compile(
    r"\+?\d{7,}|\b\d{3,4}[-\s]\d{3,4}[-\s]\d{4}\b|\b\d{3,4}-\d{7,8}\b|\+\d{1,3}[-\s]\d[\d\s-]{6,}\d"
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_DIGEST = re.compile(r"\b[0-9a-fA-F]{16,}\b")
REDACTED = "[redacted]"


def scrub(text: str) -> str:
    """``text`` with phone numbers, e-mail addresses and hex digests replaced by ``[redacted]``."""
    text = _EMAIL.sub(REDACTED, text)
    text = _DIGEST.sub(REDACTED, text)
    return _PHONE.sub(REDACTED, text)


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """16 hex digits identifying an alert: sha256 over the sorted identity labels."""
    items = sorted((k, v) for k, v in labels.items() if k not in IDENTITY_EXCLUDED and v)
    text = "\x1f".join(f"{k}={v}" for k, v in items)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Alert(BaseModel):
    """One alert, firing or resolved. Labels and annotations are allow-listed; empty values
    are dropped; ``fingerprint`` is derived, never supplied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    status: AlertStatus = "firing"
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    fingerprint: str = ""

    @field_validator("labels")
    @classmethod
    def _labels_allowed(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = set(v) - LABEL_NAMES
        if unknown:
            raise ValueError(f"labels not allowed: {sorted(unknown)}")
        return {k: s for k, s in sorted(v.items()) if s}

    @field_validator("annotations")
    @classmethod
    def _annotations_allowed(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = set(v) - ANNOTATION_NAMES
        if unknown:
            raise ValueError(f"annotations not allowed: {sorted(unknown)}")
        return {k: scrub(s) for k, s in sorted(v.items()) if s}

    @model_validator(mode="after")
    def _derive(self) -> Alert:
        if self.status == "resolved" and self.ends_at is None:
            raise ValueError("a resolved alert needs ends_at")
        object.__setattr__(self, "fingerprint", fingerprint_of(self.labels))
        return self

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "info")

    def resolved(self, at: datetime) -> Alert:
        """This alert, resolved at ``at``."""
        return self.model_copy(update={"status": "resolved", "ends_at": at})


class SlaEventIn(BaseModel):
    """The ``sla.events`` topic contract (version 1): one SLA warning, breach or escalation.

    Unknown fields are ignored (and never forwarded); ``alert_id`` is deterministic per case,
    stage, kind and level, so a redelivered event is recognisably the same.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    alert_id: str
    kind: Literal["warning", "breach", "escalation"]
    level: int
    case_id: str
    stage: str
    due_at: AwareDatetime
    fired_at: AwareDatetime
    deadline: AwareDatetime
    grid: str
    category: str
    unit: str
    urgent: bool
    source: str


Locate = Callable[[str], tuple[str, str, str]]
"""``locate(grid_code) -> (district, street, community)``; empty strings when unknown."""


def sla_severity(event: SlaEventIn) -> Severity:
    """warning → minor (major from level 2 or urgent); breach → major (critical if urgent);
    escalation → critical."""
    if event.kind == "escalation":
        return "critical"
    if event.kind == "breach":
        return "critical" if event.urgent else "major"
    return "major" if event.urgent or event.level >= 2 else "minor"


def board_link(board_url: str, **params: str) -> str:
    """``board_url`` with ``var-<name>=<value>`` query parameters (Grafana's convention)."""
    if not board_url:
        return ""
    query = "&".join(f"var-{k}={v}" for k, v in params.items() if v)
    return f"{board_url}?{query}" if query else board_url


def alert_from_sla(raw: Mapping[str, Any], locate: Locate, board_url: str = "") -> Alert:
    """The firing alert for one ``sla.events`` message (a decoded JSON object).

    Raises ``pydantic.ValidationError`` when the message breaks the contract.
    """
    event = SlaEventIn.model_validate(raw)
    district, street, community = locate(event.grid)
    what = {
        "warning": "approaching its deadline",
        "breach": "past its deadline",
        "escalation": "escalated",
    }[event.kind]
    summary = f"Case {event.case_id} ({event.category}, stage {event.stage}) is {what}"
    evidence = (
        f"level {event.level}; due {event.due_at.isoformat()}; deadline "
        f"{event.deadline.isoformat()}; fired {event.fired_at.isoformat()}; unit {event.unit}"
        + ("; urgent" if event.urgent else "")
    )
    return Alert(
        labels={
            "alertname": "sla",
            "district": district,
            "street": street,
            "community": community,
            "grid": event.grid,
            "category": event.category,
            "kind": event.kind,
            "severity": sla_severity(event),
            "unit": event.unit,
            "case": event.case_id,
            "stage": event.stage,
        },
        annotations={
            "summary": summary,
            "evidence": evidence,
            "board_url": board_link(board_url, case=event.case_id, grid=event.grid),
        },
        starts_at=event.fired_at,
    )


def alert_from_warning(warning: EarlyWarning, board_url: str = "") -> Alert:
    """The alert for one early-warning revision (firing or resolved).

    Only the first ten evidence lines are kept, each scrubbed; ``params`` never leave.
    """
    where = warning.where
    labels = {
        "alertname": "warning",
        "district": where.district,
        "street": where.street,
        "community": where.community,
        "grid": where.grid_code,
        "category": warning.category,
        "kind": warning.kind,
        "severity": warning.severity,
        "unit": warning.unit,
        "sensor": warning.sensor_id,
    }
    summary = warning.summary or (
        f"{warning.kind} {warning.category or warning.sensor_id} at "
        f"{where.grid_code or where.community or where.street or where.district or 'city'}: "
        f"observed {warning.observed:g}, expected {warning.expected:g}"
    )
    resolved = warning.status == "resolved"
    return Alert(
        labels=labels,
        annotations={
            "summary": summary,
            "evidence": "\n".join(warning.evidence[:10]),
            "board_url": board_link(
                board_url, district=where.district, street=where.street, grid=where.grid_code
            ),
        },
        status=warning.status,
        starts_at=warning.started_at,
        ends_at=(warning.resolved_at or warning.updated_at) if resolved else None,
    )


NotificationReason = Literal["group", "repeat", "escalation"]


class Notification(BaseModel):
    """What the dispatcher asks delivery to send: one group's alerts for one receiver.

    ``id`` is deterministic (receiver, group, content, repeat number; or alert and escalation
    step), so a notification produced twice is recognisably the same one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    reason: NotificationReason
    alerts: tuple[Alert, ...]
    acknowledged: tuple[str, ...] = ()  # fingerprints of acknowledged alerts
    escalation_step: int | None = None
    created_at: AwareDatetime

    @property
    def status(self) -> AlertStatus:
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first, rest = maps[0], maps[1:]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}
