"""The shapes of the records that flow between stages: named fields, in a fixed order.

Streams build rows in these orders (tuples, for speed); the store's tables are laid out from
them (``sinks.clickhouse.tables``), adding only what storage itself needs (ingest time,
ledger columns). One definition each, so a field added here reaches every stage.
"""

from __future__ import annotations

GRID_PATH = ("district", "street", "community", "grid_code")
"""Where something is: a grid and its parents (city → district → street → community → grid)."""

CASE_SUBJECT = (*GRID_PATH, "category", "subcategory", "unit")
"""Where a case is, what it is about, and who handles it."""

EVENT_COLUMNS = (
    "event_time",
    "record_time",
    "source",
    "event_id",
    "ref_id",
    "district",
    "street",
    "community",
    "grid_code",
    "located_by",
    "category",
    "subcategory",
    "sensor_id",
    "value",
    "unit",
    "reporter_id",
    "caller_hash",
    "channel",
    "lon",
    "lat",
    "text",
    "src_topic",
    "src_partition",
    "src_offset",
    "src_index",
)
"""A normalized event (report, reading or request) with its source position."""

CASE_COLUMNS = (
    "event_time",
    "record_time",
    "event_id",
    "case_id",
    "action",
    "grid_code",
    "category",
    "unit",
    "actor",
    "deadline",
    "rating",
    "note",
    "source",
    "event_ms",
    "src_topic",
    "src_partition",
    "src_offset",
    "src_index",
)
"""A validated case lifecycle event with its source position."""

OUTCOME_COLUMNS = ("outcome", "reason_code", "reason", "stage_after")
"""What admitting a case event did: applied | illegal | duplicate, why, and the stage after."""

DEAD_LETTER_COLUMNS = (
    "record_time",
    "src_topic",
    "src_partition",
    "src_offset",
    "src_index",
    "reason_code",
    "reason",
    "payload",
)
"""A rejected message: where it came from, why, and its original bytes."""

COUNT_KEY = (
    *GRID_PATH,
    "category",
    "subcategory",
    "source",
)
"""What an event count is kept per (with the window's bucket)."""

CASE_STATE_COLUMNS = (
    "case_id",
    "version",
    "updated_at",
    "source",
    *CASE_SUBJECT,
    "urgent",
    "stage",
    "opened_at",
    "registered_at",
    "rejected_at",
    "dispatched_at",
    "acknowledged_at",
    "handled_at",
    "verified_at",
    "closed_at",
    "voided",
    "forced",
    "rework_count",
    "extension_count",
    "pause_count",
    "paused",
    "stage_started_at",
    "stage_deadline",
    "stage_limit_unit",
    "rating",
    "follow_up_at",
    "late_stages",
)
"""A snapshot of one case (a new ``version`` each time it changes)."""

SLA_ALERT_COLUMNS = (
    "alert_id",
    "fired_at",
    "due_at",
    "case_id",
    "kind",
    "level",
    "fraction",
    "stage",
    "stage_seq",
    "deadline",
    "stage_started_at",
    *CASE_SUBJECT,
    "urgent",
    "source",
)
"""A fired SLA warning, breach or escalation, with the case's grid path."""
