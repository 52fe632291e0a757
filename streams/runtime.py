"""The ingest agent's state: normalizer, sink, dead-letter and case-opening sends, and the
live counters the worker's /stats/ view and the live view show."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.settings import Settings
from sinks.base import BatchSink, RetryPolicy, StoreBackend, StoreLayout
from streams.batching import chunk_by_bytes, to_messages
from streams.case_agent import CaseRuntime
from streams.faust_adapter import FaustView
from streams.metrics import WorkerMetrics, state_metrics
from streams.pipeline import Batch, Message, Normalizer, build_tables, case_envelopes
from streams.report_warnings import ReportWatch
from streams.sensor_warnings import SensorWatch
from streams.warnings import WarningRuntime


@dataclass(frozen=True, slots=True)
class Prepared:
    """One normalized checkpoint on its way to the store."""

    messages: list[Message]
    batch: Batch
    started: float  # perf_counter() when its normalizing began


log = logging.getLogger("gridpulse.worker")

DEAD_LETTER_HEADERS = (
    "reason_code",
    "reason",
    "src_topic",
    "src_partition",
    "src_offset",
    "src_index",
)


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


class Runtime:
    """The agent's state: normalizer, sink, dead-letter producer and live counters."""

    def __init__(
        self, faust_view: FaustView, settings: Settings, store: StoreBackend, layout: StoreLayout
    ) -> None:
        self.faust = faust_view
        self.settings = settings
        self.backend = store
        city = settings.city
        self.normalizer = Normalizer(settings, city)
        retry = RetryPolicy(settings.sink.retry_initial_seconds, settings.sink.retry_max_seconds)
        self.sink = BatchSink(store, build_tables(settings, city, layout), retry)
        # normalizing is pure Python: one thread of its own, off the event loop
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="normalize")
        self.cases: CaseRuntime | None = None
        self.warnings: WarningRuntime | None = None
        self.sensors: SensorWatch | None = None
        self.reports: ReportWatch | None = None
        self.started = time.time()
        self.messages = 0
        self.events = 0
        self.dead = 0
        self.opened = 0  # cases opened (accepts sent to the case topic)
        self.late = 0
        self.batches = 0
        self.processed: dict[tuple[str, int], int] = {}
        # per ingest partition, the newest record time stored (what detection waits for)
        self.stored_until: dict[tuple[str, int], float] = {}
        self.history: deque[tuple[float, int, int]] = deque(maxlen=120)
        self.last_batch_ms = 0.0
        # cumulative seconds per step of the agents: where a worker's time goes (/stats/)
        self.busy: dict[str, float] = {}
        # publish -> stored latency of recent messages (record timestamp to insert acked)
        self.latencies: deque[float] = deque(maxlen=200_000)
        self.metrics = WorkerMetrics()
        self.metrics.add_state(lambda: state_metrics(self.snapshot(), self.open_cases()))

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
        await self.dead_letter(batch.dead)
        t = self.spent("dead_letter", t)
        await self.sink.write(batch.checkpoint, batch.frames)
        stored_at = self.spent("store", t)
        self.metrics.store_seconds.observe(stored_at - t)
        ev = batch.frames["events"]
        if self.sensors is not None:
            await self.sensors.on_stored(ev)
            stored_at = self.spent("sensor_rules", stored_at)
        if self.reports is not None:
            await self.reports.on_stored(ev, self.faust.assignment())
            self.spent("report_rules", stored_at)
        self.metrics.observe_events(ev)
        self.messages += batch.messages
        self.events += len(ev)
        self.dead += len(batch.dead)
        self.batches += 1
        for tp, off in batch.checkpoint.last_offsets.items():
            self.processed[tp] = off
        for m in part.messages:
            tp = (m.topic, m.partition)
            if m.timestamp_s > self.stored_until.get(tp, 0.0):
                self.stored_until[tp] = m.timestamp_s
        self.metrics.observe_messages(m.topic for m in part.messages)
        stored = time.time()
        self.last_batch_ms = (time.perf_counter() - part.started) * 1000
        self.metrics.batch_seconds.observe(self.last_batch_ms / 1000)
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
            await self.faust.send(topic, None, payload, part, record_s, None)
            for part, payload, record_s in case_envelopes(opened, self.settings.topics.partitions)
        ]
        await asyncio.gather(*futures)

    async def dead_letter(self, dead: list[tuple]) -> None:
        """Original bytes plus source and reason (as headers) to the dead-letter topic."""
        if not dead:
            return
        self.metrics.observe_dead(dead)
        topic = self.settings.topics.dead_letter
        futures = []
        logged = log.isEnabledFor(logging.INFO)
        for record_s, src_topic, part, offset, index, code, reason, payload in dead:
            if logged:
                log.info(
                    "dead letter %s[%s]@%s: %s (%s)",
                    src_topic,
                    part,
                    offset,
                    code,
                    reason,
                    extra={
                        "topic": src_topic,
                        "partition": part,
                        "offset": offset,
                        "index": index,
                        "reason_code": code,
                        "reason": reason,
                    },
                )
            values = (code, reason, src_topic, part, offset, index)
            headers = [
                (k, str(v).encode()) for k, v in zip(DEAD_LETTER_HEADERS, values, strict=True)
            ]
            futures.append(await self.faust.send(topic, None, payload, None, record_s, headers))
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
        return {
            "p50": round(float(p50), 4),
            "p99": round(float(p99), 4),
            "max": round(float(pmax), 4),
            "n": int(arr.size),
        }

    def reset_latency(self) -> None:
        self.latencies.clear()

    def ingest_progress(self, now: float) -> list[tuple[str, int, int, bool]]:
        """Per assigned ingest partition whose progress is known: (topic, partition,
        progress, caught up). Progress is ``now`` when everything up to the high water is
        stored (by this worker or a predecessor), else the newest record time this worker
        stored. A partition not fetched yet, or with a backlog and nothing stored by this
        worker, is left out: its last report stands."""
        committed = self.faust.committed()
        ingest = set(self.settings.topics.ingest)
        out = []
        for key in sorted(self.faust.assignment()):
            hw = self.faust.highwater(*key) if key[0] in ingest else None
            if hw is None:
                continue
            done = max(self.processed.get(key, -1) + 1, committed.get(key, 0))
            if done >= hw:
                out.append((key[0], key[1], int(now), True))
            elif key in self.stored_until:
                out.append((key[0], key[1], int(self.stored_until[key]), False))
        return out

    def lag(self) -> dict[str, int]:
        """Messages not yet stored per assigned partition: high water minus the later of this
        worker's last stored offset and the group's committed offset (so a partition another
        worker already finished shows no lag after a restart)."""
        out: dict[str, int] = {}
        committed = self.faust.committed()
        for key in sorted(self.faust.assignment()):
            hw = self.faust.highwater(*key)
            if hw is None:
                continue
            done = max(self.processed.get(key, -1) + 1, committed.get(key, 0))
            out[f"{key[0]}[{key[1]}]"] = max(0, hw - done)
        return out

    def invalidate(self) -> None:
        self.sink.invalidate()

    def open_cases(self) -> int | None:
        """Owned cases not in a terminal stage (None without a case agent)."""
        if self.cases is None:
            return None
        return sum(1 for state in self.cases.book.states.values() if not state.terminal)

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
            "fetch": self.faust.fetch_state(),
            "processed": {f"{t}[{p}]": o for (t, p), o in sorted(self.processed.items())},
            "committed": {f"{t}[{p}]": o for (t, p), o in sorted(self.faust.committed().items())},
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
                "insert_s": {
                    k: round(v, 3) for k, v in sorted(self.backend.insert_seconds.items())
                },
            },
            "cases": {
                **self.cases.stats,
                "owned": len(self.cases.book.states),
                "timers": len(self.cases.book.queue),
            }
            if self.cases
            else {},
            "warnings": self.warnings.snapshot() if self.warnings else {},
            "sensor_rules": self.sensors.snapshot() if self.sensors else {},
            "report_rules": self.reports.snapshot() if self.reports else {},
            "busy_s": {k: round(v, 3) for k, v in sorted(self.busy.items())},
            "rss_mb": rss_mb(),
        }
