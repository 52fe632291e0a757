"""Versioned schema migrations, gated on what the detected server supports.

Each migration is a pure function ``(db, features) -> [DDL]`` so the same schema runs on the
embedded engine (chdb, ClickHouse 26.x) and on old servers (Debian's 18.16 in tests): newer
features such as TTL and LowCardinality are used only where the server has them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from core.records import COUNT_KEY
from sinks.clickhouse import alerts as alert_tables
from sinks.clickhouse import warnings as warning_tables

# a count table's columns: the key, then its ledger entry's partition and span (see sinks.base)
COUNT_COLUMNS = ("bucket", *COUNT_KEY, "ledger_topic", "ledger_partition", "n", "offset_span")
LATE_COLUMNS = ("granularity", *COUNT_COLUMNS)

EVENT_TABLE = "events"
CASE_TABLE = "case_events"
DEAD_TABLE = "dead_letters"
LATE_TABLE = "late_event_counts"
CASE_STATE_TABLE = "case_state"
SLA_TABLE = "sla_events"
COUNTS_INPUT = "counts_input"  # Null table: one insert, routed to every count table
ROUTE_COLUMN = "target"  # names the count table an input row belongs to


def counts_table(window: str) -> str:
    return f"event_counts_{window}"


# the read model: views for people and boards (migration 4); see docs/architecture.md
CASES_VIEW = "cases"
SLA_ALERTS_VIEW = "sla_alerts"
LATE_VIEW = "late_counts"
COUNT_VIEW_COLUMNS = ("bucket", *COUNT_KEY, "n")


def counts_view(window: str) -> str:
    """The read-model view of ``window``'s counts (data rows only), e.g. ``counts_1h``."""
    return f"counts_{window}"


@dataclass(frozen=True, slots=True)
class Features:
    """What the server can do, from its version."""

    version: tuple[int, ...]
    ttl: bool
    low_cardinality: bool

    @classmethod
    def from_version(cls, version: str) -> Features:
        parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
        return cls(version=parts, ttl=parts >= (19, 6), low_cardinality=parts >= (19, 9))


@dataclass(frozen=True, slots=True)
class Settings:
    raw_retention_days: int
    windows: tuple[str, ...]


def _lc(f: Features) -> str:
    return "LowCardinality(String)" if f.low_cardinality else "String"


def _ttl(f: Features, column: str, days: int) -> str:
    return f" TTL {column} + INTERVAL {days} DAY" if f.ttl else ""


def v1_core(db: str, f: Features, s: Settings) -> list[str]:
    lc = _lc(f)
    dt = "DateTime('UTC')"
    src = f"src_topic {lc}, src_partition UInt32, src_offset UInt64, src_index Int32"
    stmts = [
        f"""CREATE TABLE IF NOT EXISTS {db}.{EVENT_TABLE} (
            event_time {dt}, record_time {dt}, ingested_at {dt},
            source {lc}, event_id String, ref_id String,
            district {lc}, street {lc}, community {lc}, grid_code {lc}, located_by {lc},
            category {lc}, subcategory {lc}, sensor_id String, value Float64, unit {lc},
            reporter_id String, caller_hash String, channel {lc},
            lon Float64, lat Float64, text String, late UInt8, {src}
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(ingested_at)
        ORDER BY (source, grid_code, event_time){_ttl(f, "ingested_at", s.raw_retention_days)}""",
        f"""CREATE TABLE IF NOT EXISTS {db}.{CASE_TABLE} (
            event_time {dt}, record_time {dt}, ingested_at {dt}, event_id String,
            case_id String, action {lc}, grid_code {lc}, category {lc}, unit String,
            actor String, deadline {dt}, rating {lc}, note String, {src}
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(ingested_at)
        ORDER BY (case_id, event_time, src_offset)""",
        f"""CREATE TABLE IF NOT EXISTS {db}.{DEAD_TABLE} (
            record_time {dt}, ingested_at {dt}, {src},
            reason_code {lc}, reason String, payload String
        ) ENGINE = MergeTree PARTITION BY toYYYYMM(ingested_at)
        ORDER BY (src_topic, src_partition, src_offset, src_index)""",
    ]
    key_cols = ", ".join(f"{c} {lc}" for c in COUNT_KEY)
    ledger_cols = f"ledger_topic {lc}, ledger_partition Int32, n UInt64, offset_span UInt64"
    for w in s.windows:
        stmts.append(
            f"""CREATE TABLE IF NOT EXISTS {db}.{counts_table(w)} (
                bucket {dt}, {key_cols}, {ledger_cols}
            ) ENGINE = SummingMergeTree((n, offset_span))
            ORDER BY (bucket, {", ".join(COUNT_KEY)}, ledger_topic, ledger_partition)"""
        )
    stmts.append(
        f"""CREATE TABLE IF NOT EXISTS {db}.{LATE_TABLE} (
            granularity {lc}, bucket {dt}, {key_cols}, {ledger_cols}
        ) ENGINE = SummingMergeTree((n, offset_span))
        ORDER BY (granularity, bucket, {", ".join(COUNT_KEY)}, ledger_topic, ledger_partition)"""
    )
    return stmts


def v2_cases(db: str, f: Features, s: Settings) -> list[str]:
    """Case lifecycle: outcome of every case event, state snapshots, SLA warnings/breaches."""
    lc = _lc(f)
    dt = "DateTime('UTC')"
    stmts = [
        f"ALTER TABLE {db}.{CASE_TABLE} ADD COLUMN outcome {lc} DEFAULT 'applied'",
        f"ALTER TABLE {db}.{CASE_TABLE} ADD COLUMN reason_code {lc} DEFAULT ''",
        f"ALTER TABLE {db}.{CASE_TABLE} ADD COLUMN reason String DEFAULT ''",
        f"ALTER TABLE {db}.{CASE_TABLE} ADD COLUMN stage_after {lc} DEFAULT ''",
        f"ALTER TABLE {db}.{CASE_TABLE} ADD COLUMN source {lc} DEFAULT ''",
        f"ALTER TABLE {db}.{CASE_TABLE} ADD COLUMN event_ms UInt64 DEFAULT 0",
        f"""CREATE TABLE IF NOT EXISTS {db}.{CASE_STATE_TABLE} (
            case_id String, version UInt32, updated_at {dt}, source {lc},
            district {lc}, street {lc}, community {lc}, grid_code {lc},
            category {lc}, subcategory {lc}, unit {lc}, urgent UInt8, stage {lc},
            opened_at {dt}, registered_at {dt}, rejected_at {dt}, dispatched_at {dt},
            acknowledged_at {dt}, handled_at {dt}, verified_at {dt}, closed_at {dt},
            voided UInt8, forced UInt8, rework_count UInt16, extension_count UInt16,
            pause_count UInt16, paused UInt8, stage_started_at {dt}, stage_deadline {dt},
            stage_limit_unit {lc}, rating {lc}, follow_up_at {dt},
            late_stages String
        ) ENGINE = ReplacingMergeTree(version) ORDER BY case_id""",
        f"""CREATE TABLE IF NOT EXISTS {db}.{SLA_TABLE} (
            alert_id String, fired_at {dt}, due_at {dt}, case_id String, kind {lc},
            level UInt16, fraction Float64, stage {lc}, stage_seq UInt16, deadline {dt},
            stage_started_at {dt}, district {lc}, street {lc}, community {lc},
            grid_code {lc}, category {lc}, subcategory {lc}, unit {lc}, urgent UInt8,
            source {lc}
        ) ENGINE = ReplacingMergeTree ORDER BY alert_id""",
    ]
    return stmts


def count_tables(s: Settings) -> list[str]:
    """The summing count tables: one per window, and the late counts."""
    return [*(counts_table(w) for w in s.windows), LATE_TABLE]


def v3_counts_input(db: str, f: Features, s: Settings) -> list[str]:
    """One insert for every count table of a checkpoint: rows go into a Null table and one
    materialized view per count table keeps the rows addressed to it (``target``). The rows
    are computed by the worker as before; ClickHouse only routes them, so each table's rows
    and ledger entries arrive as one block, as with a direct insert."""
    lc = _lc(f)
    key_cols = ", ".join(f"{c} {lc}" for c in COUNT_KEY)
    stmts = [
        f"""CREATE TABLE IF NOT EXISTS {db}.{COUNTS_INPUT} (
            {ROUTE_COLUMN} String, granularity {lc}, bucket DateTime('UTC'), {key_cols},
            ledger_topic {lc}, ledger_partition Int32, n UInt64, offset_span UInt64
        ) ENGINE = Null"""
    ]
    for table in count_tables(s):
        cols = ", ".join(LATE_COLUMNS if table == LATE_TABLE else COUNT_COLUMNS)
        stmts.append(
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table}_route TO {db}.{table}
            AS SELECT {cols} FROM {db}.{COUNTS_INPUT} WHERE {ROUTE_COLUMN} = '{table}'"""
        )
    return stmts


def v4_read_model(db: str, f: Features, s: Settings) -> list[str]:
    """The public SQL surface: each count table's data rows without its ledger rows
    (``counts_<window>``, ``late_counts``: always ``sum(n)``, parts may not be merged yet),
    one row per case (``cases``) and per fired SLA alert (``sla_alerts``)."""
    cols = ", ".join(COUNT_VIEW_COLUMNS)
    stmts = [
        f"""CREATE VIEW IF NOT EXISTS {db}.{counts_view(w)} AS SELECT {cols}
            FROM {db}.{counts_table(w)} WHERE ledger_partition < 0"""
        for w in s.windows
    ]
    stmts += [
        f"""CREATE VIEW IF NOT EXISTS {db}.{LATE_VIEW} AS SELECT granularity, {cols}
            FROM {db}.{LATE_TABLE} WHERE ledger_partition < 0""",
        f"CREATE VIEW IF NOT EXISTS {db}.{CASES_VIEW} AS "
        f"SELECT * FROM {db}.{CASE_STATE_TABLE} FINAL",
        f"CREATE VIEW IF NOT EXISTS {db}.{SLA_ALERTS_VIEW} AS SELECT * FROM {db}.{SLA_TABLE} FINAL",
    ]
    return stmts


def read_model_views(s: Settings) -> list[str]:
    """Names of the read-model views: what boards and users query."""
    return [*(counts_view(w) for w in s.windows), LATE_VIEW, CASES_VIEW, SLA_ALERTS_VIEW]


def v5_warnings(db: str, f: Features, s: Settings) -> list[str]:
    """Early warnings: revisions by (fingerprint, revision), ingest progress, the detection
    cursor, and the warning views (layouts in ``sinks.clickhouse.warnings``)."""
    return warning_tables.table_ddl(db, _lc(f)) + warning_tables.view_ddl(db)


def v6_alerts(db: str, f: Features, s: Settings) -> list[str]:
    """The alert stage: outbox, delivery attempts, alert states, audit log and silences, and
    the on-call board's views (layouts in ``sinks.clickhouse.alerts``)."""
    return alert_tables.table_ddl(db, _lc(f)) + alert_tables.view_ddl(db)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: Callable[[str, Features, Settings], list[str]]


MIGRATIONS: list[Migration] = [
    Migration(1, "raw events, case events, dead letters, windowed counts with ledgers", v1_core),
    Migration(
        2, "case lifecycle outcomes, case state snapshots, SLA warnings and breaches", v2_cases
    ),
    Migration(
        3, "one routed insert for all count tables (Null input, a view per table)", v3_counts_input
    ),
    Migration(
        4, "read model: counts_<window>, late_counts, cases, sla_alerts views", v4_read_model
    ),
    Migration(5, "early warnings: revisions, ingest progress, cursor, views", v5_warnings),
    Migration(6, "alerts: outbox, deliveries, states, audit, silences, views", v6_alerts),
]


def case_log_sql(db: str, topic: str, partition: int) -> str:
    """The stored, non-duplicate case events of one case-topic partition, in offset order
    (``sinks.base.store.CaseLogEntry``'s fields)."""
    return (
        "SELECT case_id, action, event_ms, grid_code, category, unit, toUInt32(deadline), "
        f"rating, source, event_id FROM {db}.{CASE_TABLE} WHERE {_from(topic, partition)} "
        "AND outcome NOT IN ('duplicate', 'held') ORDER BY src_offset"
    )


def held_case_events_sql(db: str, topic: str, partition: int) -> str:
    """Case events of one partition still held for a case that has not opened: a ``held``
    row with no later row for the same event (applied on opening, or expired as illegal).
    Columns: ``core.records.CASE_COLUMNS`` (times as epoch seconds), then ``ingested_at``."""
    where = _from(topic, partition)
    return (
        "SELECT toFloat64(event_ms) / 1000, toUInt32(record_time), event_id, case_id, action, "
        "grid_code, category, unit, actor, toUInt32(deadline), rating, note, source, event_ms, "
        "src_topic, src_partition, src_offset, src_index, toUInt32(ingested_at) "
        f"FROM {db}.{CASE_TABLE} WHERE {where} AND outcome = 'held' AND event_id NOT IN "
        f"(SELECT event_id FROM {db}.{CASE_TABLE} WHERE {where} AND outcome != 'held') "
        "ORDER BY src_offset, src_index"
    )


def fired_alerts_sql(db: str, topic: str, partition: int) -> str:
    """Ids of the SLA alerts fired for the cases of one case-topic partition."""
    return (
        f"SELECT alert_id FROM {db}.{SLA_TABLE} WHERE case_id IN "
        f"(SELECT case_id FROM {db}.{CASE_TABLE} WHERE {_from(topic, partition)})"
    )


def _from(topic: str, partition: int) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._\-]+", topic):
        raise ValueError(f"not a topic name: {topic!r}")
    return f"src_topic = '{topic}' AND src_partition = {int(partition)}"


def migrations_table(db: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
        version UInt32, description String, applied_at DateTime('UTC')
    ) ENGINE = MergeTree ORDER BY version"""


def pending(applied: set[int]) -> list[Migration]:
    return [m for m in MIGRATIONS if m.version not in applied]
