"""The alert stage assembled: topic messages in, signed webhooks out.

The worker calls :meth:`AlertStage.on_sla_event` / :meth:`AlertStage.on_warning` for each
message of the two input topics, and runs :meth:`AlertStage.run` (ticks the dispatcher and
drives delivery) on its event loop; :meth:`AlertStage.api` is the HTTP API over the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from alerts.api import OnChange, TokenStore, make_app
from alerts.config import AlertsConfig
from alerts.dispatch import Dispatcher
from alerts.dispatch.roster import IsWorkingTime
from alerts.model import Locate, Notification, alert_from_sla, alert_from_warning
from alerts.notify import Notifier, Outbox
from alerts.notify.pipeline import SubmitOutcome
from alerts.notify.webhook import webhook_integration
from core.warning import EarlyWarning


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AlertStage:
    """Dispatcher + notifier over one outbox. Not thread-safe: use it from one event loop."""

    def __init__(
        self,
        config: AlertsConfig,
        outbox: Outbox,
        locate: Locate,
        is_working_time: IsWorkingTime,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        poll_interval: float = 0.25,
    ) -> None:
        self.config = config
        self.locate = locate
        self.clock = clock
        self.dispatcher = Dispatcher(config.dispatch(), is_working_time)
        integrations = [
            webhook_integration(w, config.external_url, environ) for w in config.webhooks()
        ]
        self.notifier = Notifier(
            integrations,
            outbox,
            muter=self.dispatcher.mute_reason,
            clock=clock,
            poll_interval=poll_interval,
        )

    def on_sla_event(self, raw: Mapping[str, Any]) -> bool:
        """One decoded ``sla.events`` message; False if it changed nothing (a redelivery).
        Raises ``pydantic.ValidationError`` for a message breaking the contract."""
        alert = alert_from_sla(raw, self.locate, self.config.board_url)
        return self.dispatcher.ingest(alert, self.clock())

    def on_warning(self, warning: EarlyWarning) -> bool:
        """One early-warning revision; False if it changed nothing."""
        return self.dispatcher.ingest(
            alert_from_warning(warning, self.config.board_url), self.clock()
        )

    def tick(self) -> list[SubmitOutcome]:
        """Flush due groups and escalations now, and accept the notifications for delivery."""
        return [outcome for _, outcome in self.tick_notifications()]

    def tick_notifications(self) -> list[tuple[Notification, SubmitOutcome]]:
        """:meth:`tick`, with each notification made and what acceptance did with it."""
        return [(n, self.notifier.submit(n)) for n in self.dispatcher.tick(self.clock())]

    async def run(self, stop: asyncio.Event, tick_every: float = 1.0) -> None:
        """Tick every ``tick_every`` seconds and deliver, until ``stop`` is set."""
        delivery = asyncio.create_task(self.notifier.run(stop))
        try:
            while not stop.is_set():
                self.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), tick_every)
        finally:
            stop.set()
            await delivery

    def api(self, tokens: TokenStore, on_change: OnChange | None = None) -> web.Application:
        """The HTTP API over this stage (deliveries and re-drive included); ``on_change`` is
        awaited after every change, before the answer."""
        return make_app(self.dispatcher, tokens, self.clock, on_change, self.notifier)

    async def aclose(self) -> None:
        await self.notifier.aclose()
