"""The read model the boards query, on a database made by the project's migrations
(migration 4 creates the views)."""

from __future__ import annotations

from sinks.clickhouse import schema

WINDOWS = ("1m", "5m", "1h", "1d")


def schema_settings() -> schema.Settings:
    return schema.Settings(raw_retention_days=30, windows=WINDOWS)


VIEWS: tuple[str, ...] = tuple(schema.read_model_views(schema_settings()))
"""The read-model views: ``counts_<window>``, ``late_counts``, ``cases``, ``sla_alerts``."""
RAW_TABLES: tuple[str, ...] = (schema.EVENT_TABLE, schema.CASE_TABLE, schema.DEAD_TABLE)
"""The clean raw tables the boards also read."""


def prepare(backend: object) -> None:
    """Migrate ``backend`` (a ``sinks.clickhouse.backend`` backend) to the current schema,
    read-model views included."""
    backend.migrate_sync(schema_settings())  # type: ignore[attr-defined]
