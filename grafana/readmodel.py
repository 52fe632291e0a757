"""The read model the boards query, on a database made by the project's migrations
(migration 4 creates the views of counts, cases and SLA alerts, 5 the warnings', 6 the
on-call ones)."""

from __future__ import annotations

from sinks.clickhouse import alerts, schema
from sinks.clickhouse import warnings as warning_tables

WINDOWS = ("1m", "5m", "1h", "1d")


def schema_settings() -> schema.Settings:
    return schema.Settings(raw_retention_days=30, windows=WINDOWS)


VIEWS: tuple[str, ...] = tuple(schema.read_model_views(schema_settings()))
"""The read-model views: ``counts_<window>``, ``late_counts``, ``cases``, ``sla_alerts``."""
WARNING_VIEWS: tuple[str, ...] = (
    warning_tables.WARNING_LOG_VIEW,
    warning_tables.LATEST_WARNINGS_VIEW,
    warning_tables.ACTIVE_WARNINGS_VIEW,
)
"""The early warnings' views (migration 5)."""
ALERT_VIEWS: tuple[str, ...] = alerts.VIEWS
"""The on-call views (migration 6): open alerts, ack times, delivery failures, dead
deliveries, receivers' outbox counts."""
RAW_TABLES: tuple[str, ...] = (schema.EVENT_TABLE, schema.CASE_TABLE, schema.DEAD_TABLE)
"""The clean raw tables the boards also read."""


def prepare(backend: object) -> None:
    """Migrate ``backend`` (a ``sinks.clickhouse.backend`` backend) to the current schema,
    read-model views included."""
    backend.migrate_sync(schema_settings())  # type: ignore[attr-defined]
