"""The alert stage made durable: input, ticks, delivery and the API over one ClickHouse store.

Contract (at least once, nothing re-paged after a restart):

* :meth:`AlertService.start` reads back the stored state (open and recently resolved alerts
  with their first notification, acknowledgement and escalation steps; silences; the audit
  log; the outbox) and rebuilds the dispatcher from it before any input is taken.
* :meth:`AlertService.ingest` + :meth:`AlertService.save_until_stored` is what an input batch
  goes through before its offsets are acknowledged: the alerts it changed are stored, so the
  notifications they lead to are made again after a crash (with the same ids).
* each :meth:`AlertService.step` (every ``tick_every`` seconds) makes the due notifications,
  stores them in the outbox, and only then lets delivery send them; attempts' outcomes are
  stored at the next step. A worker killed mid-delivery leaves the row pending: it is sent
  again by the next worker with the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from alerts.api import Principal, TokenStore
from alerts.stage import AlertStage
from alerts.store import AlertStore, restore
from core.warning import EarlyWarning

log = logging.getLogger("gridpulse.alerts")


class AlertService:
    """One :class:`AlertStage` over an :class:`AlertStore`; use it from one event loop."""

    def __init__(
        self,
        stage: AlertStage,
        store: AlertStore,
        sla_topic: str,
        warnings_topic: str,
        tick_every: float = 1.0,
        retry_initial: float = 0.2,
        retry_max: float = 10.0,
    ) -> None:
        self.stage = stage
        self.store = store
        self.sla_topic = sla_topic
        self.warnings_topic = warnings_topic
        self.tick_every = tick_every
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.ready = asyncio.Event()
        self.ingested: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.last_error = ""

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.stage.clock

    async def _retrying(self, what: str, fn: Callable[[], Any]) -> Any:
        wait = self.retry_initial
        while True:
            try:
                result = await fn()
                self.last_error = ""
                return result
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ClickHouse down or refusing: keep trying, say so
                self.last_error = f"{what}: {type(exc).__name__}: {exc}"[:300]
                log.warning("alerts: %s failed, retrying in %.1fs: %s", what, wait, exc)
                await asyncio.sleep(wait)
                wait = min(self.retry_max, wait * 2)

    async def start(self) -> None:
        """Rebuild the dispatcher and the outbox from the store (retrying until it answers)."""
        now = self.clock()
        keep = self.stage.dispatcher.resolved_retention
        stored = await self._retrying("load", lambda: self.store.load(now, keep))
        restore(self.stage.dispatcher, stored, now)
        log.info(
            "alerts: restored %d alerts, %d silences, %d deliveries to do",
            len(stored.states),
            len(stored.silences),
            sum(1 for r in stored.outbox if r.status == "pending"),
        )
        self.stage.notifier.wake()
        self.ready.set()

    def ingest(self, topic: str, value: bytes | None) -> bool:
        """One input message; False if it changed nothing or breaks its topic's contract
        (counted in ``rejected`` and logged without its content)."""
        try:
            if topic == self.sla_topic:
                changed = self.stage.on_sla_event(json.loads(value or b""))
            elif topic == self.warnings_topic:
                changed = self.stage.on_warning(EarlyWarning.model_validate_json(value or b""))
            else:
                raise ValueError(f"not an input topic: {topic}")
        except (ValueError, TypeError, ValidationError) as exc:
            self.rejected[topic] += 1
            log.warning("alerts: message on %s refused: %s", topic, str(exc).splitlines()[0])
            return False
        self.ingested[topic] += 1
        return changed

    async def save_until_stored(self) -> None:
        """Store every change so far, retrying until ClickHouse takes it."""
        await self._retrying("save", lambda: self.store.save(self.stage.dispatcher, self.clock()))

    async def step(self) -> int:
        """Make the due notifications, store them, then let delivery see them; returns how
        many were accepted."""
        made = self.stage.tick_notifications()
        self.store.notified([n for n, outcome in made if outcome in ("accepted", "duplicate")])
        await self.store.save(self.stage.dispatcher, self.clock())
        self.stage.notifier.wake()
        return sum(1 for _, outcome in made if outcome == "accepted")

    async def run(self, stop: asyncio.Event) -> None:
        """Start, then step every ``tick_every`` seconds and deliver until ``stop`` is set.
        A failing save is retried at the next step (nothing unsaved is sent)."""
        await self.start()
        delivery = asyncio.create_task(self.stage.notifier.run(stop))
        try:
            while not stop.is_set():
                try:
                    await self.step()
                    self.last_error = ""
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.last_error = f"save: {type(exc).__name__}: {exc}"[:300]
                    log.warning("alerts: save failed (retried next tick): %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick_every)
        finally:
            stop.set()
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivery
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.store.save(self.stage.dispatcher, self.clock()), 5)
            await self.stage.aclose()

    async def _changed(self, action: str, who: Principal, result: Any) -> None:
        log.info("alerts: %s by %s", action, who.who)
        await self.store.save(self.stage.dispatcher, self.clock())

    def api(self, tokens: TokenStore) -> web.Application:
        """The HTTP API; every change is stored before it is answered."""
        return self.stage.api(tokens, self._changed)

    def stats(self) -> dict[str, Any]:
        """Counts for the worker's stats view."""
        ob = self.stage.notifier.outbox
        return {
            "ready": self.ready.is_set(),
            "open_alerts": len(self.stage.dispatcher.open_alerts()),
            "pending": len(ob.pending()),
            "dead": len(ob.dead()),
            "disabled": self.stage.notifier.disabled(),
            "ingested": dict(self.ingested),
            "rejected": dict(self.rejected),
            "last_error": self.last_error,
        }
