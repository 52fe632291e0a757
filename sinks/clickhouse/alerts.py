"""The alert stage's tables and read model: names, column layouts and SQL (pure builders).

Times are ``DateTime('UTC')`` written as Unix seconds (0 = none) and read back with
``toUInt32``; row versions are ``UInt64`` microseconds (``version``), because one second is
too coarse to order the versions of a notification (accepted, attempted, delivered) and 18.16
has no ``DateTime64``. Latest versions are read with ``FINAL`` (ReplacingMergeTree by id).
Everything here runs on chdb and on ClickHouse 18.16 (no TTL, Map, CTE, window functions).
"""

from __future__ import annotations

OUTBOX_TABLE = "alert_outbox"
OUTBOX_COLUMNS = (
    "notification_id",
    "receiver",
    "payload",
    "status",
    "attempt",
    "last_error",
    "created_at",
    "updated_at",
    "next_attempt_at",
    "delivered_at",
    "version",
)
"""One row per version of a notification for one receiver (ReplacingMergeTree(version))."""

ATTEMPTS_TABLE = "alert_deliveries"
ATTEMPT_COLUMNS = (
    "notification_id",
    "receiver",
    "attempt",
    "outcome",
    "http_status",
    "error",
    "duration_ms",
    "at",
)
"""One row per finished delivery attempt (``outcome``: delivered, retry, dead)."""

STATE_TABLE = "alert_state"
STATE_COLUMNS = (
    "fingerprint",
    "alertname",
    "status",
    "severity",
    "district",
    "street",
    "community",
    "grid_code",
    "category",
    "kind",
    "unit",
    "case_id",
    "summary",
    "starts_at",
    "ends_at",
    "first_notified_at",
    "acked_by",
    "acked_at",
    "resolved_by",
    "escalation_level",
    "resolution_sent",
    "alert",
    "escalated",
    "updated_at",
    "version",
)
"""One row per version of an alert's dispatcher state; ``alert`` is the exact alert JSON and
``escalated`` the JSON list of ``[route_id, step]`` already paged."""

AUDIT_TABLE = "alert_audit"
AUDIT_COLUMNS = ("at", "who", "action", "target", "detail", "seq")
"""Who did what: ack, resolve, silence_add, silence_expire, escalation, redrive; ``seq``
(microseconds, increasing) orders the entries of one second."""

SILENCE_TABLE = "alert_silences"
SILENCE_COLUMNS = (
    "silence_id",
    "author",
    "reason",
    "matchers",
    "starts_at",
    "ends_at",
    "created_at",
    "expired_by",
    "silence",
    "version",
)
"""One row per version of a silence; ``silence`` is its exact JSON."""

# the on-call board's read model
OPEN_ALERTS_VIEW = "open_alerts"
ACK_TIMES_VIEW = "alert_ack_times"
DELIVERY_FAILURES_VIEW = "delivery_failures"
DEAD_DELIVERIES_VIEW = "dead_deliveries"
RECEIVER_STATUS_VIEW = "receiver_status"
VIEWS = (
    OPEN_ALERTS_VIEW,
    ACK_TIMES_VIEW,
    DELIVERY_FAILURES_VIEW,
    DEAD_DELIVERIES_VIEW,
    RECEIVER_STATUS_VIEW,
)


def _dt(name: str) -> str:
    return f"{name} DateTime('UTC')"


def table_ddl(db: str, lc: str) -> list[str]:
    """The five tables; ``lc`` is the type of low-cardinality strings on this server."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {db}.{OUTBOX_TABLE} (
            notification_id String, receiver {lc}, payload String, status {lc},
            attempt UInt32, last_error String, {_dt("created_at")}, {_dt("updated_at")},
            {_dt("next_attempt_at")}, {_dt("delivered_at")}, version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY notification_id""",
        f"""CREATE TABLE IF NOT EXISTS {db}.{ATTEMPTS_TABLE} (
            notification_id String, receiver {lc}, attempt UInt32, outcome {lc},
            http_status UInt16, error String, duration_ms Float64, {_dt("at")}
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(at) ORDER BY (receiver, at)""",
        f"""CREATE TABLE IF NOT EXISTS {db}.{STATE_TABLE} (
            fingerprint String, alertname {lc}, status {lc}, severity {lc},
            district {lc}, street {lc}, community {lc}, grid_code {lc}, category {lc},
            kind {lc}, unit {lc}, case_id String, summary String,
            {_dt("starts_at")}, {_dt("ends_at")}, {_dt("first_notified_at")},
            acked_by String, {_dt("acked_at")}, resolved_by String, escalation_level UInt8,
            resolution_sent UInt8, alert String, escalated String, {_dt("updated_at")},
            version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY fingerprint""",
        f"""CREATE TABLE IF NOT EXISTS {db}.{AUDIT_TABLE} (
            {_dt("at")}, who String, action {lc}, target String, detail String, seq UInt64
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(at) ORDER BY (at, seq)""",
        f"""CREATE TABLE IF NOT EXISTS {db}.{SILENCE_TABLE} (
            silence_id String, author String, reason String, matchers String,
            {_dt("starts_at")}, {_dt("ends_at")}, {_dt("created_at")}, expired_by String,
            silence String, version UInt64
        ) ENGINE = ReplacingMergeTree(version) ORDER BY silence_id""",
    ]


def view_ddl(db: str) -> list[str]:
    """The on-call board's views: open alerts with ack and escalation, time to ack, delivery
    failures per receiver and hour, dead deliveries, and each receiver's outbox counts."""
    state = f"{db}.{STATE_TABLE} FINAL"
    outbox = f"{db}.{OUTBOX_TABLE} FINAL"
    return [
        f"""CREATE VIEW IF NOT EXISTS {db}.{OPEN_ALERTS_VIEW} AS SELECT
            fingerprint, alertname, severity, district, street, community, grid_code,
            category, kind, unit, case_id, summary, starts_at, first_notified_at,
            toUInt8(toUInt32(acked_at) > 0) AS acknowledged, acked_by, acked_at,
            escalation_level
            FROM {state} WHERE status = 'firing'""",
        f"""CREATE VIEW IF NOT EXISTS {db}.{ACK_TIMES_VIEW} AS SELECT
            fingerprint, alertname, severity, district, street, category, kind, case_id,
            first_notified_at, acked_at, acked_by, escalation_level,
            toInt64(toUInt32(acked_at)) - toInt64(toUInt32(first_notified_at)) AS seconds_to_ack
            FROM {state}
            WHERE toUInt32(acked_at) > 0 AND toUInt32(first_notified_at) > 0""",
        f"""CREATE VIEW IF NOT EXISTS {db}.{DELIVERY_FAILURES_VIEW} AS SELECT
            receiver, toStartOfHour(at) AS hour, count() AS attempts,
            countIf(outcome != 'delivered') AS failures, countIf(outcome = 'dead') AS dead,
            max(at) AS last_at, argMaxIf(error, at, outcome != 'delivered') AS last_error
            FROM {db}.{ATTEMPTS_TABLE} GROUP BY receiver, hour""",
        f"""CREATE VIEW IF NOT EXISTS {db}.{DEAD_DELIVERIES_VIEW} AS SELECT
            notification_id, receiver, attempt, last_error, created_at, updated_at
            FROM {outbox} WHERE status = 'dead'""",
        f"""CREATE VIEW IF NOT EXISTS {db}.{RECEIVER_STATUS_VIEW} AS SELECT
            receiver, countIf(status = 'pending') AS pending,
            countIf(status = 'pending' AND attempt > 0) AS retrying,
            countIf(status = 'delivered') AS delivered, countIf(status = 'dead') AS dead,
            countIf(status = 'muted') AS muted, max(updated_at) AS last_change
            FROM {outbox} GROUP BY receiver""",
    ]


# -- what the alert stage reads back on start ----------------------------------------------


def outbox_rows_sql(db: str, since: int) -> str:
    """The latest version of every notification still to do or re-drivable (pending, dead,
    muted), and of those delivered since Unix time ``since`` (their ids only matter: the
    payload is left out)."""
    cols = (
        "notification_id, receiver, if(status = 'delivered', '', payload), status, attempt, "
        "last_error, toUInt32(created_at), toUInt32(updated_at), toUInt32(next_attempt_at), "
        "toUInt32(delivered_at)"
    )
    return (
        f"SELECT {cols} FROM {db}.{OUTBOX_TABLE} FINAL "
        f"WHERE status != 'delivered' OR toUInt32(created_at) >= {int(since)}"
    )


def alert_states_sql(db: str, since: int) -> str:
    """The latest state of every firing alert, and of those resolved since ``since``."""
    return (
        "SELECT alert, toUInt32(first_notified_at), acked_by, toUInt32(acked_at), resolved_by, "
        f"escalated, resolution_sent FROM {db}.{STATE_TABLE} FINAL "
        f"WHERE status = 'firing' OR toUInt32(ends_at) >= {int(since)}"
    )


def silences_sql(db: str, since: int) -> str:
    """Every silence still running, or ended since ``since`` (kept for the record)."""
    return (
        f"SELECT silence FROM {db}.{SILENCE_TABLE} FINAL "
        f"WHERE toUInt32(ends_at) >= {int(since)} ORDER BY created_at, silence_id"
    )


def audit_sql(db: str, since: int, limit: int = 10_000) -> str:
    """The audit log since ``since``, oldest first, at most the latest ``limit`` entries."""
    return (
        f"SELECT t, who, action, target, detail FROM (SELECT toUInt32(at) AS t, who, action, "
        f"target, detail, seq FROM {db}.{AUDIT_TABLE} WHERE toUInt32(at) >= {int(since)} "
        f"ORDER BY seq DESC LIMIT {int(limit)}) ORDER BY seq"
    )


# -- what people read (CLI, live view) -----------------------------------------------------


def open_alerts_sql(db: str, limit: int = 50) -> str:
    """Open alerts, most severe and oldest first."""
    return (
        "SELECT fingerprint, severity, district, street, category, kind, case_id, summary, "
        "toUInt32(starts_at), acknowledged, acked_by, escalation_level "
        f"FROM {db}.{OPEN_ALERTS_VIEW} ORDER BY multiIf(severity = 'critical', 0, "
        "severity = 'major', 1, severity = 'minor', 2, 3), starts_at, case_id, fingerprint "
        f"LIMIT {int(limit)}"
    )


def failing_receivers_sql(db: str, since: int) -> str:
    """Receivers with failed attempts since ``since`` (by the hour), or dead deliveries."""
    return (
        "SELECT receiver, sum(failures), sum(dead), max(last_at), argMax(last_error, last_at) "
        f"FROM {db}.{DELIVERY_FAILURES_VIEW} WHERE hour >= toStartOfHour(toDateTime({int(since)}))"
        " GROUP BY receiver HAVING sum(failures) > 0 ORDER BY receiver"
    )
