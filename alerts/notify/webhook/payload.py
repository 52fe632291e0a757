"""The two JSON bodies a webhook receiver can choose (``format`` in its config).

* ``gridpulse``: gridpulse's own schema ``gridpulse.alerts/v1`` (documented in
  ``docs/alerts.md``; fields are only ever added within v1).
* ``alertmanager``: Prometheus Alertmanager's webhook payload, version ``"4"``, so existing
  Alertmanager receivers accept gridpulse notifications unchanged.

Only an alert's allow-listed labels and annotations are rendered; nothing else of the input
reaches a body. Bodies are compact JSON in UTF-8, rendered once and stored in the outbox, so
every attempt sends (and signs) the same bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from alerts.model import ANNOTATION_NAMES, LABEL_NAMES, Alert, Notification

PayloadFormat = Literal["gridpulse", "alertmanager"]
GRIDPULSE_SCHEMA = "gridpulse.alerts/v1"
ALERTMANAGER_ZERO_TIME = "0001-01-01T00:00:00Z"


def _rfc3339(t: datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _safe(alert: Alert) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations, re-checked against the allow-lists."""
    labels = {k: v for k, v in alert.labels.items() if k in LABEL_NAMES}
    annotations = {k: v for k, v in alert.annotations.items() if k in ANNOTATION_NAMES}
    return labels, annotations


def gridpulse_v1(n: Notification, external_url: str = "") -> dict[str, Any]:
    """The ``gridpulse.alerts/v1`` body of a notification."""
    acked = set(n.acknowledged)
    alerts = []
    for a in n.alerts:
        labels, annotations = _safe(a)
        alerts.append(
            {
                "fingerprint": a.fingerprint,
                "status": a.status,
                "labels": labels,
                "annotations": annotations,
                "starts_at": _rfc3339(a.starts_at),
                "ends_at": _rfc3339(a.ends_at),
                "acknowledged": a.fingerprint in acked,
            }
        )
    return {
        "schema": GRIDPULSE_SCHEMA,
        "id": n.id,
        "receiver": n.receiver,
        "status": n.status,
        "reason": n.reason,
        "escalation_step": n.escalation_step,
        "group_key": n.group_key,
        "group_labels": n.group_labels,
        "common_labels": n.common_labels(),
        "common_annotations": n.common_annotations(),
        "created_at": _rfc3339(n.created_at),
        "external_url": external_url,
        "alerts": alerts,
    }


def alertmanager_v4(n: Notification, external_url: str = "", max_alerts: int = 0) -> dict[str, Any]:
    """The Alertmanager webhook (version 4) body; ``max_alerts`` > 0 truncates the list and
    reports the rest in ``truncatedAlerts``, as Alertmanager does."""
    shown = n.alerts[:max_alerts] if max_alerts > 0 else n.alerts
    alerts = []
    for a in shown:
        labels, annotations = _safe(a)
        alerts.append(
            {
                "status": a.status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": _rfc3339(a.starts_at),
                "endsAt": _rfc3339(a.ends_at) or ALERTMANAGER_ZERO_TIME,
                "generatorURL": annotations.get("board_url", external_url),
                "fingerprint": a.fingerprint,
            }
        )
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": len(n.alerts) - len(shown),
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels(),
        "commonAnnotations": n.common_annotations(),
        "externalURL": external_url,
        "alerts": alerts,
    }


def render(n: Notification, fmt: PayloadFormat, external_url: str = "", max_alerts: int = 0) -> str:
    """The body to send, as compact JSON text."""
    body = (
        gridpulse_v1(n, external_url)
        if fmt == "gridpulse"
        else alertmanager_v4(n, external_url, max_alerts)
    )
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
