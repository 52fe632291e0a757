"""Early warnings in ClickHouse: the warning revisions, the ingest progress every worker
reports (the watermark detection waits for), the detection cursor, and their views.

``warnings`` holds one row per (fingerprint, revision), idempotent by that key, so a revision
published twice is stored once. Views: ``warning_log`` (every revision), ``latest_warnings``
(the latest revision per fingerprint) and ``active_warnings`` (those still firing).
"""

from __future__ import annotations

import re

WARNINGS_TABLE = "warnings"
PROGRESS_TABLE = "ingest_progress"
CURSOR_TABLE = "detection_cursor"
WARNING_LOG_VIEW = "warning_log"
LATEST_WARNINGS_VIEW = "latest_warnings"
ACTIVE_WARNINGS_VIEW = "active_warnings"

WARNING_COLUMNS = (
    "fingerprint",
    "revision",
    "status",
    "kind",
    "severity",
    "district",
    "street",
    "community",
    "grid_code",
    "category",
    "sensor_id",
    "unit",
    "window_start",
    "window_end",
    "observed",
    "expected",
    "score",
    "detector",
    "params",
    "evidence",
    "summary",
    "started_at",
    "updated_at",
    "resolved_at",
    "published_at",
)
"""A warning revision's row; ``params`` and ``evidence`` are JSON text, times epoch seconds
(``resolved_at`` 0 while firing)."""

PROGRESS_COLUMNS = ("topic", "part", "progress", "caught_up", "at")
"""How far one ingest partition is stored: event-time ``progress`` (now when caught up)."""

CURSOR_COLUMNS = ("scale", "bucket", "at")
"""The last bucket of ``scale`` the detectors have judged."""


def table_ddl(db: str, lc: str) -> list[str]:
    dt = "DateTime('UTC')"
    return [
        f"""CREATE TABLE IF NOT EXISTS {db}.{WARNINGS_TABLE} (
            fingerprint String, revision UInt32, status {lc}, kind {lc}, severity {lc},
            district {lc}, street {lc}, community {lc}, grid_code {lc}, category {lc},
            sensor_id String, unit String, window_start {dt}, window_end {dt},
            observed Float64, expected Float64, score Float64, detector {lc},
            params String, evidence String, summary String,
            started_at {dt}, updated_at {dt}, resolved_at {dt}, published_at {dt}
        ) ENGINE = ReplacingMergeTree ORDER BY (fingerprint, revision)""",
        f"""CREATE TABLE IF NOT EXISTS {db}.{PROGRESS_TABLE} (
            topic {lc}, part UInt32, progress {dt}, caught_up UInt8, at {dt}
        ) ENGINE = ReplacingMergeTree(at) ORDER BY (topic, part)""",
        f"""CREATE TABLE IF NOT EXISTS {db}.{CURSOR_TABLE} (
            scale {lc}, bucket {dt}, at {dt}
        ) ENGINE = ReplacingMergeTree(at) ORDER BY scale""",
    ]


def view_ddl(db: str) -> list[str]:
    latest = (
        f"(fingerprint, revision) IN "
        f"(SELECT fingerprint, max(revision) FROM {db}.{WARNINGS_TABLE} GROUP BY fingerprint)"
    )
    return [
        f"CREATE VIEW IF NOT EXISTS {db}.{WARNING_LOG_VIEW} AS "
        f"SELECT * FROM {db}.{WARNINGS_TABLE} FINAL",
        f"CREATE VIEW IF NOT EXISTS {db}.{LATEST_WARNINGS_VIEW} AS "
        f"SELECT * FROM {db}.{WARNINGS_TABLE} FINAL WHERE {latest}",
        f"CREATE VIEW IF NOT EXISTS {db}.{ACTIVE_WARNINGS_VIEW} AS "
        f"SELECT * FROM {db}.{WARNINGS_TABLE} FINAL WHERE {latest} AND status = 'firing'",
    ]


def latest_warnings_sql(db: str) -> str:
    """Every fingerprint's latest revision (what rebuilds the warning lifecycle)."""
    return (
        f"SELECT {', '.join(_epoch(c) for c in WARNING_COLUMNS)} FROM {db}.{LATEST_WARNINGS_VIEW}"
    )


def progress_sql(db: str) -> str:
    """Per ingest topic-partition, the latest reported progress (epoch s) and caught-up flag."""
    return (
        f"SELECT topic, part, toUInt32(argMax(progress, at)), argMax(caught_up, at) "
        f"FROM {db}.{PROGRESS_TABLE} GROUP BY topic, part"
    )


def cursor_sql(db: str, scale: str) -> str:
    """The detection cursor of ``scale`` (no row when detection never ran)."""
    _name(scale)
    return (
        f"SELECT toUInt32(argMax(bucket, at)) FROM {db}.{CURSOR_TABLE} "
        f"WHERE scale = '{scale}' GROUP BY scale"
    )


def window_counts_sql(
    db: str, window: str, since_s: int, until_s: int, sources: tuple[str, ...]
) -> str:
    """Non-zero counts per grid and subcategory of ``sources`` in the ``window`` buckets
    (``counts_<window>``) starting in ``[since, until)``."""
    _name(window)
    for s in sources:
        _name(s)
    listed = ", ".join(f"'{s}'" for s in sources)
    return (
        "SELECT toUInt32(bucket), district, street, community, grid_code, subcategory, source, "
        f"sum(n) FROM {db}.counts_{window} WHERE source IN ({listed}) "
        f"AND bucket >= toDateTime({int(since_s)}, 'UTC') "
        f"AND bucket < toDateTime({int(until_s)}, 'UTC') "
        "GROUP BY bucket, district, street, community, grid_code, subcategory, source "
        "HAVING sum(n) > 0 ORDER BY bucket"
    )


def sensor_readings_sql(db: str, topic: str, partition: int, since_s: int) -> str:
    """The sensor readings read from ``topic[partition]`` with event time from ``since_s``,
    in consumption order: sensor, event time (epoch s), value, event id, source offset."""
    _name(topic)
    return (
        "SELECT sensor_id, toUInt32(event_time), value, event_id, src_offset FROM "
        f"{db}.events WHERE source = 'sensor' AND src_topic = '{topic}' "
        f"AND src_partition = {int(partition)} "
        f"AND event_time >= toDateTime({int(since_s)}, 'UTC') "
        "ORDER BY src_offset, src_index"
    )


def located_reports_sql(db: str, topic: str, partition: int, since_s: int) -> str:
    """Inspector reports and hotline requests read from ``topic[partition]`` with event time
    from ``since_s``, in consumption order: event id, subcategory, event time (epoch s),
    lon, lat (nan when unlocated), grid, caller hash, source offset."""
    _name(topic)
    return (
        "SELECT event_id, subcategory, toUInt32(event_time), lon, lat, grid_code, caller_hash, "
        f"src_offset FROM {db}.events WHERE source IN ('inspector', 'hotline') "
        f"AND src_topic = '{topic}' AND src_partition = {int(partition)} "
        f"AND event_time >= toDateTime({int(since_s)}, 'UTC') ORDER BY src_offset, src_index"
    )


_CASE_END = (
    "multiIf(voided = 1, toUInt32(updated_at), toUInt32(closed_at) > 0, toUInt32(closed_at), "
    "toUInt32(rejected_at) > 0, toUInt32(rejected_at), 0)"
)
"""When a case stopped being open (epoch s; 0 while open): closed, rejected or voided."""


def case_lifetimes_sql(db: str, since_s: int) -> str:
    """Per case with a handling unit that was open at some point from ``since_s``: unit,
    opened (epoch s), ended (epoch s, 0 while open)."""
    return (
        f"SELECT unit, toUInt32(opened_at), {_CASE_END} AS ended FROM {db}.cases "
        f"WHERE unit != '' AND (ended = 0 OR ended >= {int(since_s)})"
    )


def open_cases_sql(db: str, at_s: int) -> str:
    """Open cases per handling unit at ``at_s`` (opened by then and not ended)."""
    t = int(at_s)
    return (
        f"SELECT unit, count() FROM (SELECT unit, toUInt32(opened_at) AS opened, "
        f"{_CASE_END} AS ended FROM {db}.cases WHERE unit != '') "
        f"WHERE opened <= {t} AND (ended = 0 OR ended > {t}) GROUP BY unit"
    )


_TIMES = frozenset({"window_start", "window_end", "started_at", "updated_at", "resolved_at"})


def _epoch(column: str) -> str:
    return f"toUInt32({column})" if column in _TIMES or column == "published_at" else column


def _name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", text):
        raise ValueError(f"not a name: {text!r}")
    return text
