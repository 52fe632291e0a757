"""The Faust app: one ingest agent over the three ingest topics, the case lifecycle agent,
the SLA clock, and the web views (/stats/, /query/).

Layering follows Faust's own: app -> agent -> stream (``noack_take`` batches) -> sink.
Faust tables are deliberately not used for counts: state lives in ClickHouse behind
per-table ledgers (see ``sinks.base``), which survives restarts on any Kafka-protocol broker.

Offsets: the agent reads with ``noack_take`` and acks a batch's events itself, only once the
batch is in ClickHouse, so Faust never commits an offset whose data is not stored (a batch
abandoned by a crash or shutdown stays unacked and is redelivered). While ClickHouse is down
the body keeps retrying, the agent stops pulling, Faust's bounded stream buffer fills, and
fetching pauses: backpressure with bounded memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import faust
import numpy as np
from faust.types import TP
from faust.web import Request, Response, View

from core.settings import Settings
from sinks.base import BatchSink, SinkStopped
from sinks.base.sink import RetryPolicy
from sinks.clickhouse.backend import QueryRefused, _Blocking
from streams.case_agent import CaseRuntime
from streams.pipeline import Batch, Message, Normalizer, build_tables, case_envelopes
from streams.transport import App, consumer_options

log = logging.getLogger("gridpulse.worker")

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Prepared:
    """One normalized checkpoint on its way to the store."""

    messages: list[Message]
    batch: Batch
    started: float  # perf_counter() when its normalizing began


DEAD_LETTER_HEADERS = ("reason_code", "reason", "src_topic", "src_partition", "src_offset",
                       "src_index")  # fmt: skip


def rss_mb() -> float:
    """Resident memory of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def _tp_names(tps: Any) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)


def to_messages(events: list[Any]) -> list[Message]:
    """What the pipeline needs of Faust events: source position, record time, bytes."""
    return [
        Message(e.message.topic, e.message.partition, e.message.offset,
                e.message.timestamp, e.message.value)
        for e in events
    ]  # fmt: skip


def chunk_by_bytes(msgs: list[Message], max_bytes: int) -> list[list[Message]]:
    """Consecutive chunks of at most ``max_bytes`` of payload (at least one message each):
    a batch of large sensor envelopes becomes several checkpoints written in order, so the
    rows held in memory at once stay bounded while small messages keep large batches."""
    chunks: list[list[Message]] = [[]]
    size = 0
    for m in msgs:
        n = len(m.value or b"")
        if chunks[-1] and size + n > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(m)
        size += n
    return chunks if chunks[0] else []


async def pipelined(
    stream: faust.StreamT, batch_max: int, within: float,
    prepare: Callable[[list[Any]], AsyncIterator[P]],
    store: Callable[[P], Awaitable[None]],
    ack: Callable[[list[Any]], Awaitable[None]],
) -> None:  # fmt: skip
    """Two stages over ``noack_take`` batches: ``prepare`` turns a batch into checkpoints
    (CPU work), ``store`` writes one checkpoint (I/O), ``ack`` releases a batch's offsets.

    Done in line, each cycle would add up take window, CPU work and every ClickHouse round
    trip, and Faust's take buffer does not fill while the agent holds a batch. Here a
    checkpoint is prepared while the previous one is being stored, and the agent goes back
    to taking as soon as the last checkpoint of a batch is handed to the store. Stores run
    one at a time in checkpoint order and a batch is acked only after its last store, so the
    sinks' ledgers see checkpoints in sequence and no offset is committed ahead of its data;
    at most one checkpoint is being stored while the next is prepared. A failing store
    (e.g. ``SinkStopped``) surfaces at the next checkpoint or at the end; its events stay
    unacked and are redelivered. Backpressure is unchanged: while a store retries, the agent
    waits for it before preparing more, so Faust's buffer fills and pauses fetching."""
    pending: asyncio.Future[None] | None = None
    try:
        async for events in stream.noack_take(batch_max, within=within):
            batch = list(events)
            async for part in prepare(batch):
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(store(part))
            pending = asyncio.ensure_future(_then(pending, ack, batch))
        if pending is not None:
            await pending
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


async def _then(first: Awaitable[None] | None, then: Callable[[list[Any]], Awaitable[None]],
                batch: list[Any]) -> None:  # fmt: skip
    if first is not None:
        await first
    await then(batch)


class Runtime:
    """The agent's state: normalizer, sink, dead-letter producer and live counters."""

    def __init__(self, app: faust.App, settings: Settings, backend: _Blocking) -> None:
        self.app = app
        self.settings = settings
        self.backend = backend
        city = settings.city
        self.normalizer = Normalizer(settings, city)
        retry = RetryPolicy(settings.sink.retry_initial_seconds, settings.sink.retry_max_seconds)
        self.sink = BatchSink(backend, build_tables(settings, city), retry)
        # normalizing is pure Python: one thread of its own, off the event loop
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="normalize")
        self.cases: CaseRuntime | None = None
        self.started = time.time()
        self.messages = 0
        self.events = 0
        self.dead = 0
        self.opened = 0  # cases opened (accepts sent to the case topic)
        self.late = 0
        self.batches = 0
        self.processed: dict[tuple[str, int], int] = {}
        self.history: deque[tuple[float, int, int]] = deque(maxlen=120)
        self.last_batch_ms = 0.0
        # cumulative seconds per step of the agents: where a worker's time goes (/stats/)
        self.busy: dict[str, float] = {}
        # publish -> stored latency of recent messages (record timestamp to insert acked)
        self.latencies: deque[float] = deque(maxlen=200_000)

    async def prepare(self, events: list[Any]) -> AsyncIterator[Prepared]:
        """A batch's checkpoints (at most ``max_batch_bytes`` of payload each), normalized in
        the CPU thread so the event loop keeps taking messages and driving the store."""
        loop = asyncio.get_running_loop()
        for chunk in chunk_by_bytes(to_messages(events), self.settings.sink.max_batch_bytes):
            t = time.perf_counter()
            batch = await loop.run_in_executor(self._cpu, self.normalizer.batch, chunk)
            self.spent("normalize", t)
            yield Prepared(chunk, batch, t)

    def spent(self, step: str, since: float) -> float:
        """Add the time since ``since`` to ``step``'s busy total; returns now."""
        now = time.perf_counter()
        self.busy[step] = self.busy.get(step, 0.0) + now - since
        return now

    async def store(self, part: Prepared) -> None:
        """One checkpoint: open its cases, dead-letter its rejects, store it in every table."""
        batch = part.batch
        t = time.perf_counter()
        await self._open_cases(batch.opened)
        t = self.spent("open_cases", t)
        await self._dead_letter(batch.dead)
        t = self.spent("dead_letter", t)
        await self.sink.write(batch.checkpoint, batch.frames)
        self.spent("store", t)
        ev = batch.frames["events"]
        self.messages += batch.messages
        self.events += len(ev)
        self.dead += len(batch.dead)
        self.batches += 1
        for tp, off in batch.checkpoint.last_offsets.items():
            self.processed[tp] = off
        stored = time.time()
        self.last_batch_ms = (time.perf_counter() - part.started) * 1000
        self.latencies.extend(stored - m.timestamp_s for m in part.messages)
        self.history.append((stored, self.messages, self.events))

    async def _open_cases(self, opened: list[Any]) -> None:
        """Each report/request needing handling opens a case: its ``accept`` goes to the case
        topic in one envelope per partition (the partition its case id hashes to, so the
        case agent that owns the case sees all its events)."""
        if not opened:
            return
        self.opened += len(opened)
        topic = self.settings.topics.case
        futures = [
            await self.app.producer.send(topic, None, payload, part, record_s, None)
            for part, payload, record_s in case_envelopes(opened, self.settings.topics.partitions)
        ]
        await asyncio.gather(*futures)

    async def _dead_letter(self, dead: list[tuple]) -> None:
        """Original bytes plus source and reason (as headers) to the dead-letter topic."""
        if not dead:
            return
        producer = self.app.producer
        topic = self.settings.topics.dead_letter
        futures = []
        for record_s, src_topic, part, offset, index, code, reason, payload in dead:
            values = (code, reason, src_topic, part, offset, index)
            headers = [(k, str(v).encode()) for k, v in zip(DEAD_LETTER_HEADERS, values,
                                                              strict=True)]  # fmt: skip
            futures.append(
                await producer.send(topic, None, payload, None, record_s, headers)
            )
        await asyncio.gather(*futures)

    def rates(self, window_s: float = 10.0) -> tuple[float, float]:
        if len(self.history) < 2:
            return 0.0, 0.0
        now = self.history[-1]
        old = next((h for h in self.history if now[0] - h[0] <= window_s), self.history[0])
        dt = max(now[0] - old[0], 1e-6)
        return (now[1] - old[1]) / dt, (now[2] - old[2]) / dt

    def latency_summary(self) -> dict[str, float]:
        if not self.latencies:
            return {}
        arr = np.fromiter(self.latencies, dtype=np.float64)
        p50, p99, pmax = np.percentile(arr, [50, 99, 100])
        return {"p50": round(float(p50), 4), "p99": round(float(p99), 4),
                "max": round(float(pmax), 4), "n": int(arr.size)}  # fmt: skip

    def reset_latency(self) -> None:
        self.latencies.clear()

    def committed(self) -> dict[tuple[str, int], int]:
        """Per assigned partition, the group's committed offset (the next one to read): what
        any worker of the group stored before, including a predecessor killed mid-run."""
        consumer = getattr(self.app, "_consumer", None)
        if consumer is None:
            return {}
        offsets = getattr(consumer, "_committed_offset", {})
        return {(tp.topic, tp.partition): int(offsets[tp]) for tp in consumer.assignment()
                if offsets.get(tp) is not None}  # fmt: skip

    def lag(self) -> dict[str, int]:
        """Messages not yet stored per assigned partition: high water minus the later of this
        worker's last stored offset and the group's committed offset (so a partition another
        worker already finished shows no lag after a restart)."""
        out: dict[str, int] = {}
        consumer = getattr(self.app, "_consumer", None)
        if consumer is None:
            return out
        committed = self.committed()
        for tp in consumer.assignment():
            try:
                hw = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not fetched yet
                continue
            if hw is None:
                continue
            key = (tp.topic, tp.partition)
            done = max(self.processed.get(key, -1) + 1, committed.get(key, 0))
            out[f"{tp.topic}[{tp.partition}]"] = max(0, int(hw) - done)
        return out

    def fetch_state(self) -> dict[str, list[str]]:
        """Assigned partitions Faust is not fetching, and why (paused by a rebalance, or its
        stream buffer full): the first thing to look at when lag stops falling."""
        consumer = getattr(self.app, "_consumer", None)
        if consumer is None:
            return {}
        return {"paused": _tp_names(consumer._paused_partitions),
                "buffer_full": _tp_names(consumer._buffered_partitions)}  # fmt: skip

    def invalidate(self) -> None:
        self.sink.invalidate()

    def snapshot(self) -> dict[str, Any]:
        msg_rate, ev_rate = self.rates()
        s = self.sink.stats
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "messages": self.messages,
            "events": self.events,
            "dead_lettered": self.dead + (self.cases.stats["dead"] if self.cases else 0),
            "cases_opened": self.opened,
            "batches": self.batches,
            "messages_per_s": round(msg_rate, 1),
            "events_per_s": round(ev_rate, 1),
            "last_batch_ms": round(self.last_batch_ms, 1),
            "latency_s": self.latency_summary(),
            "lag": self.lag(),
            "fetch": self.fetch_state(),
            "processed": {f"{t}[{p}]": o for (t, p), o in sorted(self.processed.items())},
            "committed": {f"{t}[{p}]": o for (t, p), o in sorted(self.committed().items())},
            "sink": {
                "inserts": s.inserts,
                "rows": s.rows,
                "dropped_redelivered": s.dropped_redelivered,
                "failures": s.failures,
                "last_error": s.last_error,
                "waiting_for_store_s": (
                    round(time.time() - s.waiting_since, 1) if s.waiting_since else 0
                ),
            },
            "clickhouse": {
                "version": self.backend.version,
                "insert_s": {k: round(v, 3)
                             for k, v in sorted(self.backend.insert_seconds.items())},
            },
            "cases": {**self.cases.stats, "owned": len(self.cases.book.states),
                      "timers": len(self.cases.book.queue)} if self.cases else {},
            "busy_s": {k: round(v, 3) for k, v in sorted(self.busy.items())},
            "rss_mb": rss_mb(),
        }


def create_app(settings: Settings, backend: _Blocking) -> tuple[faust.App, Runtime]:
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
    runtime = Runtime(app, settings, backend)

    def acker(stream: faust.StreamT, step: str) -> Callable[[list[Any]], Awaitable[None]]:
        """Acks a stored batch's events (Faust then commits their offsets)."""

        async def ack(events: list[Any]) -> None:
            t = time.perf_counter()
            for event in events:
                await stream.ack(event)
            runtime.spent(step, t)

        return ack

    t = settings.topics

    @app.agent(app.topic(t.inspector, t.hotline, t.sensor, key_type=bytes, value_type=bytes),
               concurrency=1)  # fmt: skip
    async def ingest(stream: faust.StreamT) -> None:
        """Inspectors' reports, hotline requests, sensor readings and gateway envelopes: one
        checkpoint per batch for all three streams, so each table gets one insert per batch
        (about one per second at live rates) whatever the mix."""

        try:
            await pipelined(stream, settings.sink.ingest_batch_max, settings.sink.batch_seconds,
                            runtime.prepare, runtime.store, acker(stream, "ack"))  # fmt: skip
        except SinkStopped as exc:
            log.warning("ingest stopped before its batch was stored (will be redelivered): %s",
                        exc)  # fmt: skip

    async def send(topic: str, key: bytes | None, value: bytes, ts: float | None,
                   headers: list) -> Any:  # fmt: skip
        return await app.producer.send(topic, key, value, None, ts, headers or None)

    cases = CaseRuntime(settings, settings.city, backend, send)

    def highwater(topic: str, partition: int) -> int | None:
        consumer = getattr(app, "_consumer", None)
        if consumer is None:
            return None
        try:
            return consumer.highwater(TP(topic, partition))
        except Exception:  # noqa: BLE001 - not fetched yet
            return None

    def assigned() -> set[tuple[str, int]]:
        consumer = getattr(app, "_consumer", None)
        if consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in consumer.assignment()
                if tp.topic == settings.topics.case}  # fmt: skip

    cases.highwater = highwater
    cases.assigned = assigned
    runtime.cases = cases
    case_topic = app.topic(settings.topics.case, key_type=bytes, value_type=bytes)

    @app.agent(case_topic, concurrency=1)
    async def lifecycle(stream: faust.StreamT) -> None:
        """Case events (and the accepts the ingest agent derives) -> case state."""

        async def whole(events: list[Any]) -> AsyncIterator[list[Message]]:
            yield to_messages(events)  # one checkpoint per batch: applying is the store

        async def apply(msgs: list[Message]) -> None:
            t = time.perf_counter()
            dead = await cases.handle(msgs)
            await runtime._dead_letter(dead)
            runtime.spent("cases", t)
            for m in msgs:
                runtime.processed[(m.topic, m.partition)] = max(
                    runtime.processed.get((m.topic, m.partition), -1), m.offset)

        try:
            await pipelined(stream, settings.sink.batch_max, settings.sink.batch_seconds,
                            whole, apply, acker(stream, "cases_ack"))  # fmt: skip
        except SinkStopped as exc:
            log.warning("case agent stopped before its batch was stored (will be redelivered): "
                        "%s", exc)  # fmt: skip

    @app.timer(interval=settings.sla.tick_seconds)
    async def sla_clock() -> None:
        """Fire due warnings, breaches and escalations without waiting for new input."""
        t = time.perf_counter()
        await cases.tick()
        runtime.spent("sla_tick", t)

    @app.on_partitions_revoked.connect
    async def _revoked(app: faust.App, revoked: Any, **kw: Any) -> None:
        runtime.invalidate()
        cases.revoke({(tp.topic, tp.partition) for tp in revoked})

    @app.on_partitions_assigned.connect
    async def _assigned(app: faust.App, assigned: Any, **kw: Any) -> None:
        runtime.invalidate()

    @app.page("/stats/")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json(runtime.snapshot())

    @app.page("/stats/reset-latency/")
    class ResetLatency(View):
        async def post(self, request: Request) -> Response:
            runtime.reset_latency()
            return self.json({"ok": True})

    @app.page("/query/")
    class Query(View):
        """Read-only SQL for `gridpulse query` and the live view while this worker holds
        the embedded engine (one process per chdb folder)."""

        async def post(self, request: Request) -> Response:
            return await self._run((await request.read()).decode())

        async def get(self, request: Request) -> Response:
            return await self._run(request.query.get("sql", ""))

        async def _run(self, sql: str) -> Response:
            try:
                return self.text(await backend.query_tsv(sql))
            except QueryRefused as exc:
                return self.text(f"refused: {exc}\n", status=403)
            except Exception as exc:  # noqa: BLE001 - report query errors to the caller
                return self.text(f"error: {exc}\n", status=400)

    return app, runtime
