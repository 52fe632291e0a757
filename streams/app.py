"""The Faust app: builds the app, the agents' runtimes, and registers the agents and views.

Layering follows Faust's own: app -> agents (``streams.agents``) -> streams (``noack_take``
batches, ``streams.batching``) -> sink (``sinks.base``). Faust tables are deliberately not
used: state lives in the store behind per-table ledgers, which survives restarts on any
Kafka-protocol broker. Every access to Faust internals goes through ``streams.faust_adapter``.
"""

from __future__ import annotations

import faust

from core.settings import Settings
from sinks.base import Store, StoreLayout
from streams.agents import (
    register_ingest,
    register_lifecycle,
    register_rebalance,
    register_warnings,
)
from streams.case_agent import CaseRuntime
from streams.faust_adapter import FaustView
from streams.report_warnings import ReportWatch
from streams.runtime import Runtime
from streams.sensor_warnings import SensorWatch
from streams.transport import App, consumer_options
from streams.warnings import WarningRuntime
from streams.web import register_views


def create_app(settings: Settings, store: Store, layout: StoreLayout) -> tuple[faust.App, Runtime]:
    """A worker app writing to ``store`` (tables laid out by ``layout``)."""
    w = settings.worker
    app = App(
        w.app_id,
        broker=settings.broker,
        web_enabled=True,
        web_host=w.web_host,
        web_port=w.web_port,
        web_bind=w.web_host,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        producer_linger=0.005,
        producer_max_request_size=16 * 1024 * 1024,
        **consumer_options(w, settings.data_dir / "faust" / w.app_id),
    )
    view = FaustView(app)
    runtime = Runtime(view, settings, store, layout)
    cases = CaseRuntime(
        settings,
        settings.city,
        store,
        layout,
        lambda topic, key, value, ts, headers: view.send(topic, key, value, None, ts, headers),
    )
    cases.highwater = view.highwater
    cases.assigned = lambda: {tp for tp in view.assignment() if tp[0] == settings.topics.case}
    runtime.cases = cases
    if settings.detect.enabled:
        warnings = WarningRuntime(
            settings,
            store,
            layout,
            lambda topic, key, value, ts, headers: view.send(topic, key, value, None, ts, headers),
            runtime.ingest_progress,
            view.assignment,
        )
        runtime.warnings = warnings
        if settings.detect.sensor_rules:
            runtime.sensors = SensorWatch(settings, store, warnings.outlet, runtime.ingest_progress)
        if settings.detect.report_rules:
            runtime.reports = ReportWatch(settings, store, warnings.outlet, runtime.ingest_progress)
        register_warnings(app, settings, runtime, warnings)
    register_ingest(app, settings, runtime)
    register_lifecycle(app, settings, runtime, cases)
    register_rebalance(app, runtime, cases)
    register_views(app, runtime, store)
    return app, runtime
