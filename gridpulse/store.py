"""Composition of the store for a settings object: the ClickHouse backend, its table layout
and its schema settings (what the worker, the CLI and the tests open)."""

from __future__ import annotations

from core.settings import Settings
from sinks.clickhouse import schema
from sinks.clickhouse.backend import ClickHouseBackend, connect
from sinks.clickhouse.tables import ClickHouseLayout, schema_settings
from streams.pipeline import window_names


def store_schema(settings: Settings) -> schema.Settings:
    """What the migrations need: the configured windows and raw retention."""
    return schema_settings(window_names(settings), settings.sink.raw_retention_days)


def store_layout(settings: Settings) -> ClickHouseLayout:
    """The tables the pipeline writes, laid out for the configured windows."""
    return ClickHouseLayout(window_names(settings), settings.sink.route_counts)


def open_store(settings: Settings, migrate: bool = True) -> ClickHouseBackend:
    """The configured backend (``settings.clickhouse``), migrated unless told otherwise."""
    backend = connect(settings.clickhouse)
    if migrate:
        backend.migrate_sync(store_schema(settings))
    return backend
