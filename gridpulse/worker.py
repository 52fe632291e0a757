"""``gridpulse worker``: migrate the schema, make sure the topics exist, run Faust."""

from __future__ import annotations

import asyncio
import logging
import sys

from core.settings import Settings

log = logging.getLogger("gridpulse.worker")


def run_worker(settings: Settings, loglevel: str = "INFO") -> None:
    from faust.worker import Worker

    from gridpulse.store import open_store, store_layout, store_schema
    from infra.topics import ensure_topics
    from streams.app import create_app

    _ = settings.city  # validate the city file before touching anything
    ensure_topics(
        settings.bootstrap_servers,
        settings.topics.all,
        settings.topics.partitions,
        settings.topics.replication_factor,
    )
    backend = open_store(settings, migrate=False)
    applied = backend.migrate_sync(store_schema(settings))
    log.info("ClickHouse %s, migrations applied now: %s", backend.version, applied or "none")
    if settings.worker.use_uvloop:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            log.info("uvloop not installed; using the default asyncio loop")
    sys.setswitchinterval(settings.worker.gil_switch_interval_ms / 1000)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app, _runtime = create_app(settings, backend, store_layout(settings))
    worker = Worker(app, loglevel=loglevel, loop=loop, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        backend.close_sync()
