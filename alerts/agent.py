"""The alert stage on a Faust app: an agent over ``sla.events`` and the warnings topic, the
service task (ticks, delivery) with the HTTP API on its own port, and ``/alerts/stats/``.

The agent takes batches with ``noack_take`` and acknowledges a batch only after the alerts
it changed are stored (:meth:`AlertService.save_until_stored`), so Faust never commits an
offset whose alerts a restart could not rebuild. It waits for the service to have rebuilt
its state from the store before taking any input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import cast

import faust
from aiohttp import web
from faust.web import Request, Response, View

from alerts.api import TokenStore
from alerts.service import AlertService

log = logging.getLogger("gridpulse.alerts")


@dataclass(frozen=True)
class AgentOptions:
    """Where the stage reads and serves."""

    topics: tuple[str, ...]
    api_host: str = "127.0.0.1"
    api_port: int = 0
    batch_max: int = 1_000
    batch_seconds: float = 0.25


def register_alerts(
    app: faust.App, service: AlertService, tokens: TokenStore, options: AgentOptions
) -> None:
    """Register the alerts agent, the service task and the stats page on ``app``."""
    source = app.topic(*options.topics, key_type=bytes, value_type=bytes)

    @app.agent(source, concurrency=1)
    async def alerts(stream: faust.StreamT) -> None:
        """SLA events and early warnings → alerts, stored before their offsets are acked."""
        await service.ready.wait()
        batches = cast(faust.Stream, stream).noack_take(
            options.batch_max, within=options.batch_seconds
        )
        async for events in batches:
            batch = list(events)
            for e in batch:
                service.ingest(e.message.topic, e.message.value)
            await service.save_until_stored()
            for e in batch:
                await stream.ack(e)

    @app.task
    async def alerts_service() -> None:
        """Rebuild, then tick and deliver; serve the API while the worker runs."""
        stop = asyncio.Event()
        runner = web.AppRunner(service.api(tokens), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, options.api_host, options.api_port)
        await site.start()
        log.info("alerts API on http://%s:%s/api/v1", options.api_host, options.api_port)
        try:
            await service.run(stop)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await runner.cleanup()

    @app.page("/alerts/stats/")
    class AlertStats(View):
        async def get(self, request: Request) -> Response:
            return self.json(service.stats())
