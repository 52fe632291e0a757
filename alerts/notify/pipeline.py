"""Delivery: a pipeline of small stages from a notification to receivers, at least once.

``submit`` runs the acceptance stages (known receiver → mute → render → dedup by notification
id, which stores the row in the outbox). ``run`` drains the outbox: each due row is handed to
its receiver's *lane* (own concurrency limit, token-bucket rate limit and connection pool), so a
slow or failing receiver only ever delays its own rows. Each attempt is classified
(:mod:`alerts.notify.retry`): delivered, retried after backoff with full jitter or
``Retry-After``, dead after ``max_attempts`` or a final 4xx, and on 410 the receiver is
disabled (``disabled()`` gives the reason) and its pending rows become dead letters.
Delivery knows receivers by name only, never routes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from alerts.model import Notification
from alerts.notify.outbox import Outbox, OutboxRow
from alerts.notify.retry import RetryPolicy, classify, parse_retry_after


@dataclass(frozen=True)
class AttemptResult:
    """One attempt's outcome: an HTTP status, or None for a timeout / connection error."""

    status: int | None
    error: str = ""
    retry_after: str | None = None


class Sender(Protocol):
    name: str

    async def send(self, notification_id: str, payload: str) -> AttemptResult: ...

    async def aclose(self) -> None: ...


@dataclass
class Integration:
    """One receiver as delivery sees it: how to render a body, how to send it, its limits."""

    name: str
    render: Callable[[Notification], str]
    sender: Sender
    concurrency: int = 4
    rate_per_s: float = 20.0
    burst: int = 10
    retry: RetryPolicy = field(default_factory=RetryPolicy)


Muter = Callable[[Notification, datetime], str | None]
"""``muter(notification, now)``: a reason not to send it (all its alerts silenced or
inhibited since it was made), or None."""

SubmitOutcome = Literal["accepted", "duplicate", "muted", "unknown_receiver"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``acquire`` waits for one."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self._tokens = float(burst)
        self._at: float | None = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                if self._at is not None:
                    self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


class _Lane:
    def __init__(self, integration: Integration) -> None:
        self.integration = integration
        self.slots = asyncio.Semaphore(integration.concurrency)
        self.bucket = TokenBucket(integration.rate_per_s, integration.burst)
        self.inflight: set[str] = set()
        self.max_inflight = integration.concurrency * 2
        self.disabled_reason = ""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Notifier:
    """Accepts notifications into the outbox and delivers them through per-receiver lanes."""

    def __init__(
        self,
        integrations: Sequence[Integration],
        outbox: Outbox,
        muter: Muter | None = None,
        clock: Callable[[], datetime] = _utcnow,
        rand: Callable[[], float] = random.random,
        poll_interval: float = 0.05,
        fetch_limit: int = 1000,
    ) -> None:
        self.outbox = outbox
        self.muter = muter
        self.clock = clock
        self.rand = rand
        self.poll_interval = poll_interval
        self.fetch_limit = fetch_limit
        self._backlog: dict[str, OutboxRow] = {}
        self._refetch = True
        self._fetched_full = False
        self._next_fetch: datetime | None = None
        self._integrations = {i.name: i for i in integrations}
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None

    # -- acceptance stages ------------------------------------------------------------------

    def submit(self, n: Notification) -> SubmitOutcome:
        """Accept a notification for delivery (stored in the outbox before this returns)."""
        integration = self._integrations.get(n.receiver)
        if integration is None:
            return "unknown_receiver"
        now = self.clock()
        payload = integration.render(n)
        if not self.outbox.accept(n.id, n.receiver, payload, now):
            return "duplicate"
        reason = self.muter(n, now) if self.muter else None
        if reason:
            self.outbox.settle(n.id, "muted", reason, now)
            return "muted"
        self._refetch = True
        if self._wake is not None:
            self._wake.set()
        return "accepted"

    def wake(self) -> None:
        """Read the outbox again at the next dispatch (rows may have become due or durable)."""
        self._refetch = True
        if self._wake is not None:
            self._wake.set()

    def disabled(self) -> dict[str, str]:
        """Receivers disabled by a 410 answer, with the reason."""
        return {k: v.disabled_reason for k, v in self._lanes.items() if v.disabled_reason}

    def enable(self, receiver: str) -> None:
        """Re-enable a receiver disabled by 410 (its dead letters stay until re-driven)."""
        if receiver in self._lanes:
            self._lanes[receiver].disabled_reason = ""

    # -- delivery ---------------------------------------------------------------------------

    def _lane(self, receiver: str) -> _Lane | None:
        lane = self._lanes.get(receiver)
        if lane is None and receiver in self._integrations:
            lane = self._lanes[receiver] = _Lane(self._integrations[receiver])
        return lane

    def dispatch_due(self) -> int:
        """Start an attempt for every due row whose lane has room; returns how many started.

        The outbox is read only after a submission or once per ``poll_interval`` (retries
        falling due); in between, rows read before and not yet started wait in a backlog, so a
        finished attempt costs no outbox query.
        """
        now = self.clock()
        more = self._fetched_full and not self._backlog
        if self._refetch or more or self._next_fetch is None or now >= self._next_fetch:
            self._refetch = False
            self._next_fetch = now + timedelta(seconds=self.poll_interval)
            rows = self.outbox.due(now, self.fetch_limit)
            self._fetched_full = len(rows) >= self.fetch_limit
            self._backlog = {r.notification_id: r for r in rows}
        started = 0
        for nid, row in list(self._backlog.items()):
            lane = self._lane(row.receiver)
            if lane is None:
                self.outbox.settle(nid, "dead", f"unknown receiver {row.receiver!r}", now)
            elif nid in lane.inflight:
                pass
            elif lane.disabled_reason:
                self.outbox.settle(nid, "dead", f"receiver disabled: {lane.disabled_reason}", now)
            elif len(lane.inflight) >= lane.max_inflight:
                continue
            else:
                lane.inflight.add(nid)
                task = asyncio.create_task(self._deliver(lane, row))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                started += 1
            del self._backlog[nid]
        return started

    async def _deliver(self, lane: _Lane, row: OutboxRow) -> None:
        try:
            async with lane.slots:
                await lane.bucket.acquire()
                if lane.disabled_reason:
                    return  # settled as dead on the next dispatch
                started = time.perf_counter()
                result = await lane.integration.sender.send(row.notification_id, row.payload)
                self._record(lane, row, result, time.perf_counter() - started)
        finally:
            lane.inflight.discard(row.notification_id)
            if self._wake is not None:
                self._wake.set()

    def _record(self, lane: _Lane, row: OutboxRow, result: AttemptResult, took: float) -> None:
        now = self.clock()
        verdict = classify(result.status)
        attempt = row.attempt + 1
        nid = row.notification_id
        outcome: Literal["delivered", "retry", "dead"] = "dead"
        error, next_at = result.error, None
        if verdict == "delivered":
            outcome, error = "delivered", ""
        elif verdict == "gone":
            lane.disabled_reason = f"410 Gone at {now.isoformat()}: {result.error}"
        elif verdict != "fail" and attempt < lane.integration.retry.max_attempts:
            wait = lane.integration.retry.wait(
                attempt, parse_retry_after(result.retry_after, now), self.rand
            )
            outcome, next_at = "retry", now + wait
        self.outbox.record_attempt(
            nid, outcome, error, now, next_at, http_status=result.status, duration_s=took
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; in-flight attempts are awaited before returning."""
        self._wake = asyncio.Event()
        try:
            while not stop.is_set():
                self._wake.clear()
                self.dispatch_due()
                waits = [
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                ]
                await asyncio.wait(
                    waits, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
                for w in waits:
                    w.cancel()
        except asyncio.CancelledError:
            # a dying worker: attempts in flight are abandoned unrecorded, so their rows stay
            # pending and are sent again by the next runner (receivers dedup by webhook-id)
            for t in self._tasks:
                t.cancel()
            raise
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._wake = None

    async def run_until_idle(self, timeout: float) -> bool:
        """Deliver until no row is pending or ``timeout`` seconds pass; True if idle."""
        stop = asyncio.Event()
        runner = asyncio.create_task(self.run(stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while loop.time() < deadline:
                if not self.outbox.pending() and not self._tasks:
                    return True
                await asyncio.sleep(self.poll_interval)
            return not self.outbox.pending()
        finally:
            stop.set()
            await runner

    async def aclose(self) -> None:
        for i in self._integrations.values():
            await i.sender.aclose()
