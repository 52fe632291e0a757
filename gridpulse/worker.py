"""``gridpulse worker``: migrate the schema, make sure the topics exist, run Faust."""

from __future__ import annotations

import asyncio
import logging
import sys
from urllib.parse import urlparse

from core.settings import DEV_CALLER_SALT, Settings

log = logging.getLogger("gridpulse.worker")


def is_local_dev(settings: Settings) -> bool:
    """Broker and ClickHouse on this machine (loopback or the embedded engine): the local
    dev stack, where the built-in caller-id key is tolerated."""
    from streams.web import is_loopback

    store = urlparse(settings.clickhouse)
    broker_local = is_loopback(urlparse(settings.broker).hostname or "")
    return broker_local and (store.scheme == "chdb" or is_loopback(store.hostname or ""))


def web_on_loopback(settings: Settings) -> bool:
    """The worker's web server listens on loopback only."""
    from streams.web import is_loopback

    return is_loopback(settings.worker.web_host)


def caller_salt_refusal(settings: Settings) -> str | None:
    """Why the worker must not start with these settings' caller-id key, or None."""
    if settings.caller_salt.get_secret_value() != DEV_CALLER_SALT or is_local_dev(settings):
        return None
    return (
        "GRIDPULSE_CALLER_SALT is the built-in development key, which anyone can use to "
        "re-identify callers from their hashes. Set a secret of your own (e.g. "
        "`python -c 'import secrets; print(secrets.token_hex(32))'`), kept for the life of "
        "the data; see docs/deploy.md."
    )


def run_worker(settings: Settings, loglevel: str = "INFO") -> None:
    from faust.worker import Worker

    from gridpulse.logs import worker_logging_config
    from gridpulse.query import limits_of
    from gridpulse.store import open_store, store_layout, store_schema
    from infra.topics import ensure_topics
    from streams.app import create_app
    from streams.metrics import stat_metrics

    refusal = caller_salt_refusal(settings)
    if refusal:
        raise ValueError(refusal)
    if settings.caller_salt.get_secret_value() == DEV_CALLER_SALT:
        log.warning("caller ids are hashed with the built-in development key (local stack)")
    if settings.worker.web_token is None and not web_on_loopback(settings):
        log.warning(
            "web server on %s without GRIDPULSE_WORKER__WEB_TOKEN: /query/ is refused",
            settings.worker.web_host,
        )
    _ = settings.city  # validate the city file before touching anything
    ensure_topics(
        settings.bootstrap_servers,
        settings.topics.all,
        settings.topics.partitions,
        settings.topics.replication_factor,
    )
    backend = open_store(settings, migrate=False)
    backend.query_limits = limits_of(settings)
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
    app, runtime = create_app(settings, backend, store_layout(settings))
    if settings.alerts.enabled:
        from gridpulse.alerting import wire_alerts

        service = wire_alerts(app, settings, backend)
        runtime.metrics.add_state(lambda: stat_metrics("alerts", service.stats()))
        log.info("alert stage on, API on %s", settings.alerts.api_url)
    worker = Worker(
        app,
        loglevel=loglevel,
        loop=loop,
        redirect_stdouts=False,
        logging_config=worker_logging_config(settings.log_format, loglevel),
    )
    try:
        worker.execute_from_commandline()
    finally:
        backend.close_sync()
