"""The worker's agents: ingest (the three ingest streams), lifecycle (case events), the SLA
clock, and the rebalance hooks that keep their state in step with partition ownership.

Offsets: each agent reads with ``noack_take`` and acks a batch only once it is stored, so
Faust never commits an offset whose data is not in the store (see ``streams.batching``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import faust

from core.settings import Settings
from sinks.base import SinkStopped
from streams.batching import pipelined, to_messages
from streams.case_agent import CaseRuntime
from streams.pipeline import Message
from streams.runtime import Runtime
from streams.warnings import WarningRuntime

log = logging.getLogger("gridpulse.worker")


def _acker(
    runtime: Runtime, stream: faust.StreamT, step: str
) -> Callable[[list[Any]], Awaitable[None]]:
    """Acks a stored batch's events (Faust then commits their offsets)."""

    async def ack(events: list[Any]) -> None:
        t = time.perf_counter()
        for event in events:
            await stream.ack(event)
        runtime.spent(step, t)

    return ack


def register_ingest(app: faust.App, settings: Settings, runtime: Runtime) -> None:
    t = settings.topics

    @app.agent(
        app.topic(t.inspector, t.hotline, t.sensor, key_type=bytes, value_type=bytes), concurrency=1
    )
    async def ingest(stream: faust.StreamT) -> None:
        """Inspectors' reports, hotline requests, sensor readings and gateway envelopes: one
        checkpoint per batch for all three streams, so each table gets one insert per batch
        (about one per second at live rates) whatever the mix."""
        try:
            await pipelined(
                stream,
                settings.sink.ingest_batch_max,
                settings.sink.batch_seconds,
                runtime.prepare,
                runtime.store,
                _acker(runtime, stream, "ack"),
            )
        except SinkStopped as exc:
            log.warning("ingest stopped before its batch was stored (will be redelivered): %s", exc)


def register_lifecycle(
    app: faust.App, settings: Settings, runtime: Runtime, cases: CaseRuntime
) -> None:
    case_topic = app.topic(settings.topics.case, key_type=bytes, value_type=bytes)

    @app.agent(case_topic, concurrency=1)
    async def lifecycle(stream: faust.StreamT) -> None:
        """Case events (and the accepts the ingest agent derives) -> case state."""

        async def whole(events: list[Any]) -> AsyncIterator[list[Message]]:
            yield to_messages(events)  # one checkpoint per batch: applying is the store

        async def apply(msgs: list[Message]) -> None:
            t = time.perf_counter()
            dead = await cases.handle(msgs)
            await runtime.dead_letter(dead)
            runtime.spent("cases", t)
            runtime.metrics.observe_messages(m.topic for m in msgs)
            for m in msgs:
                runtime.processed[(m.topic, m.partition)] = max(
                    runtime.processed.get((m.topic, m.partition), -1), m.offset
                )

        try:
            await pipelined(
                stream,
                settings.sink.batch_max,
                settings.sink.batch_seconds,
                whole,
                apply,
                _acker(runtime, stream, "cases_ack"),
            )
        except SinkStopped as exc:
            log.warning(
                "case agent stopped before its batch was stored (will be redelivered): %s", exc
            )

    @app.timer(interval=settings.sla.tick_seconds)
    async def sla_clock() -> None:
        """Fire due warnings, breaches and escalations without waiting for new input."""
        t = time.perf_counter()
        try:
            await cases.tick()
        except SinkStopped as exc:
            log.warning("SLA clock stopped while storing alerts (they fire again): %s", exc)
        runtime.spent("sla_tick", t)


def register_warnings(
    app: faust.App, settings: Settings, runtime: Runtime, warnings: WarningRuntime
) -> None:
    @app.timer(interval=settings.detect.tick_seconds)
    async def detect_clock() -> None:
        """Report ingest progress; judge newly closed hours (on the judging worker)."""
        t = time.perf_counter()
        try:
            await warnings.tick()
            if runtime.sensors is not None:
                await runtime.sensors.tick(time.time())
            if runtime.reports is not None:
                await runtime.reports.tick(time.time(), runtime.faust.assignment())
        except SinkStopped as exc:
            log.warning("detection stopped while storing (it resumes from the cursor): %s", exc)
        runtime.spent("detect", t)


def register_rebalance(app: faust.App, runtime: Runtime, cases: CaseRuntime) -> None:
    @app.on_partitions_revoked.connect
    async def _revoked(app: faust.App, revoked: Any, **kw: Any) -> None:
        runtime.invalidate()
        if runtime.sensors is not None:
            sensor_topic = runtime.settings.topics.sensor
            runtime.sensors.revoke({tp.partition for tp in revoked if tp.topic == sensor_topic})
        cases.revoke({(tp.topic, tp.partition) for tp in revoked})

    @app.on_partitions_assigned.connect
    async def _assigned(app: faust.App, assigned: Any, **kw: Any) -> None:
        runtime.invalidate()
