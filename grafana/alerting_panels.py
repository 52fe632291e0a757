"""SQL of the warning panels (Operations) and the on-call panels (SLA & on-call), on the views
of migration 5 (``active_warnings``, ``warning_log``) and migration 6 (``open_alerts``,
``alert_ack_times``, ``delivery_failures``, ``dead_deliveries``, ``receiver_status``).

Everything runs on ClickHouse 18.16 too: no JSON functions (a warning's ``evidence``, a JSON
array of ids, is shown as text: brackets and quotes dropped; ids hold no quote), severities
ranked with ``indexOf``, quantiles with ``quantileExact`` (the element at ``floor(q · n)``).
``filters`` are the board's ``$__conditionalAll`` variable filters.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana.query import DB, Select, sql_string
from sinks.clickhouse import alerts as alert_sql
from sinks.clickhouse import warnings as warning_sql

SEVERITIES = ("critical", "major", "minor", "info")
"""Most severe first (``core.warning.SEVERITY_RANK`` reversed)."""
SEVERITY_COLORS = {"critical": "red", "major": "orange", "minor": "yellow", "info": "blue"}


def severity_rank(column: str = "severity") -> str:
    """1 for critical … 4 for info (0 for anything else)."""
    return f"indexOf([{', '.join(sql_string(s) for s in SEVERITIES)}], {column})"


def _by_severity() -> list[str]:
    return [f"countIf(severity = '{s}') AS {s}" for s in SEVERITIES]


# --- warnings (Operations) ------------------------------------------------------------------

ACTIVE = f"{DB}.{warning_sql.ACTIVE_WARNINGS_VIEW}"
WARNING_LOG = f"{DB}.{warning_sql.WARNING_LOG_VIEW}"

ACTIVE_BY_SEVERITY_COLUMNS = SEVERITIES
ACTIVE_COLUMNS = (
    "severity",
    "kind",
    "street",
    "grid_code",
    "category",
    "summary",
    "observed",
    "expected",
    "started_at",
    "updated_at",
    "evidence_n",
    "evidence_ids",
)
BY_KIND_COLUMNS = ("time", "kind", "warnings")


def active_by_severity(filters: Sequence[str]) -> Select:
    """Warnings firing now (latest revision), per severity."""
    return Select(_by_severity(), ACTIVE, where=filters)


def active_warnings(filters: Sequence[str], limit: int = 200) -> Select:
    """Warnings firing now with their evidence, most severe first, then highest score."""
    return Select(
        [
            *ACTIVE_COLUMNS[:-2],
            "intDiv(length(evidence) - length(replaceAll(evidence, '\"', '')), 2) AS evidence_n",
            "replaceRegexpAll(evidence, '[\\\\[\\\\]\"]', '') AS evidence_ids",
        ],
        ACTIVE,
        where=filters,
        order_by=[severity_rank(), "score DESC", "started_at", "fingerprint"],
        limit=limit,
    )


def warnings_by_kind(filters: Sequence[str], bucket: str) -> Select:
    """Warnings raised per interval, by kind: episodes (fingerprint, ``started_at``) whose
    start lies in the range, counted once however many revisions they had."""
    return Select(
        [f"{bucket} AS time", "kind", "uniqExact(fingerprint, started_at) AS warnings"],
        WARNING_LOG,
        where=["$__timeFilter(started_at)", *filters],
        group_by=["time", "kind"],
        order_by=["time", "kind"],
    )


# --- alerts (SLA & on-call) -----------------------------------------------------------------

OPEN = f"{DB}.{alert_sql.OPEN_ALERTS_VIEW}"
ACKS = f"{DB}.{alert_sql.ACK_TIMES_VIEW}"
FAILURES = f"{DB}.{alert_sql.DELIVERY_FAILURES_VIEW}"
DEAD = f"{DB}.{alert_sql.DEAD_DELIVERIES_VIEW}"
RECEIVERS = f"{DB}.{alert_sql.RECEIVER_STATUS_VIEW}"

ONCALL_COLUMNS = ("open_alerts", "unacknowledged", "escalated")
OPEN_COLUMNS = (
    "severity",
    "acknowledged",
    "escalation_level",
    "alertname",
    "kind",
    "summary",
    "street",
    "category",
    "case_id",
    "starts_at",
    "open_s",
    "acked_by",
)
ACK_COLUMNS = ("severity", "acked", "escalated", "p50_s", "p90_s", "max_s")
FAILURE_TS_COLUMNS = ("time", "receiver", "failed")
RECEIVER_COLUMNS = ("receiver", "attempted", "failed", "gave_up", "failed_pct", "last_error")
RECEIVER_STATUS_COLUMNS = (
    "receiver",
    "pending",
    "retrying",
    "delivered",
    "dead",
    "muted",
    "last_change",
)
DEAD_COLUMNS = ("receiver", "notification_id", "attempt", "last_error", "created_at", "updated_at")

_HOURS_IN_RANGE = ["hour >= toStartOfHour($__fromTime)", "hour <= $__toTime"]


def oncall_totals(filters: Sequence[str]) -> Select:
    """Open alerts, those nobody acknowledged, those escalated at least once."""
    return Select(
        [
            "count() AS open_alerts",
            "countIf(acknowledged = 0) AS unacknowledged",
            "countIf(escalation_level > 0) AS escalated",
        ],
        OPEN,
        where=filters,
    )


def open_alerts(filters: Sequence[str], limit: int = 200) -> Select:
    """Open alerts, most severe first, unacknowledged before acknowledged, then the most
    escalated and the oldest; ``open_s`` counts from the start to the range's end."""
    return Select(
        [
            *OPEN_COLUMNS[:-2],
            "toInt64(toUInt32($__toTime)) - toInt64(toUInt32(starts_at)) AS open_s",
            "acked_by",
        ],
        OPEN,
        where=filters,
        order_by=[
            severity_rank(),
            "acknowledged",
            "escalation_level DESC",
            "starts_at",
            "fingerprint",
        ],
        limit=limit,
    )


def ack_times(filters: Sequence[str]) -> Select:
    """Alerts acknowledged in the range, per severity: how many, how many were escalated
    first, and the seconds from first notification to ack (p50, p90, max)."""
    return Select(
        [
            "severity",
            "count() AS acked",
            "countIf(escalation_level > 0) AS escalated",
            "quantileExact(0.5)(seconds_to_ack) AS p50_s",
            "quantileExact(0.9)(seconds_to_ack) AS p90_s",
            "max(seconds_to_ack) AS max_s",
        ],
        ACKS,
        where=["$__timeFilter(acked_at)", *filters],
        group_by=["severity"],
        order_by=[severity_rank()],
    )


def failures_over_time() -> Select:
    """Failed webhook attempts (retried or dead) per hour and receiver."""
    return Select(
        ["hour AS time", "receiver", "sum(failures) AS failed"],
        FAILURES,
        where=_HOURS_IN_RANGE,
        group_by=["time", "receiver"],
        order_by=["time", "receiver"],
    )


def deliveries_by_receiver() -> Select:
    """Webhook attempts in the range per receiver: failed (retried or dead), given up (dead),
    the share failed (%) and the latest error. Output names differ from the view's columns,
    so no alias shadows a column inside an aggregate."""
    return Select(
        [
            "receiver",
            "sum(attempts) AS attempted",
            "sum(failures) AS failed",
            "sum(dead) AS gave_up",
            "round(100 * failed / attempted, 1) AS failed_pct",
            "argMaxIf(last_error, last_at, failures > 0) AS last_error",
        ],
        FAILURES,
        where=_HOURS_IN_RANGE,
        group_by=["receiver"],
        order_by=["failed DESC", "receiver"],
    )


def receiver_status() -> Select:
    """Each receiver's outbox now: pending (retrying among them), delivered, dead, muted."""
    return Select(list(RECEIVER_STATUS_COLUMNS), RECEIVERS, order_by=["dead DESC", "receiver"])


def dead_deliveries(limit: int = 100) -> Select:
    """Notifications given up after their last attempt (re-drivable), latest first."""
    return Select(
        list(DEAD_COLUMNS),
        DEAD,
        order_by=["updated_at DESC", "notification_id"],
        limit=limit,
    )
