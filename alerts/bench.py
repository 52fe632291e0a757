"""An alert storm through the whole stage to a local receiver, for ``gridpulse bench``.

``storm(n)`` converts ``n`` SLA breach messages, routes and groups them (``group_by`` street),
flushes, signs and delivers the notifications over HTTP to a reference receiver on 127.0.0.1,
and reports how many notifications that made, how fast each part ran, and the latency from
submission to the receiver's verified receipt (p50 / p99). No broker or ClickHouse involved.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alerts.dispatch import DispatchConfig, Dispatcher
from alerts.model import alert_from_sla
from alerts.notify import InMemoryOutbox, Notifier
from alerts.notify.webhook import WebhookConfig, WebhookSecret, webhook_integration
from alerts.receiver import Inbox, ReceiverServer


@dataclass(frozen=True)
class StormResult:
    breaches: int
    notifications: int
    convert_s: float
    dispatch_s: float
    deliver_s: float
    notifications_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    sign_us: float


def _raw(i: int, t: datetime, streets: int) -> dict:
    return {
        "alert_id": f"A{i}",
        "kind": "breach",
        "level": 0,
        "case_id": f"H-{i}",
        "stage": "dispatch",
        "due_at": t,
        "fired_at": t,
        "deadline": t,
        "grid": f"G{i % (streets * 10)}",
        "category": "litter",
        "unit": "sanitation",
        "urgent": False,
        "source": "hotline",
    }


def storm(
    breaches: int = 10_000, streets: int = 200, extra_waves: int = 4, concurrency: int = 8
) -> StormResult:
    """Run the storm: one wave of ``breaches`` then ``extra_waves`` group intervals in which a
    tenth of the streets get a new breach each (so those groups are sent again)."""
    t0 = datetime(2026, 11, 30, 9, tzinfo=UTC)
    secret = WebhookSecret.generate()
    inbox = Inbox([WebhookSecret(secret)])
    received: dict[str, float] = {}
    inbox_handle = inbox.handle

    def timed(headers, body):
        resp = inbox_handle(headers, body)
        received.setdefault(headers.get("webhook-id", ""), time.perf_counter())
        return resp

    inbox.handle = timed  # type: ignore[method-assign]
    server = ReceiverServer(inbox).start()
    try:
        cfg = DispatchConfig.model_validate(
            {
                "route": {
                    "receiver": "r",
                    "group_by": ["street"],
                    "group_wait": "30s",
                    "group_interval": "1m",
                },
                "receivers": ["r"],
            }
        )
        d = Dispatcher(cfg)

        def locate(grid: str) -> tuple[str, str, str]:
            return "D1", f"S{int(grid[1:]) % streets}", "C1"

        c0 = time.perf_counter()
        alerts = [alert_from_sla(_raw(i, t0, streets), locate) for i in range(breaches)]
        c1 = time.perf_counter()
        for a in alerts:
            d.ingest(a, t0)
        notes = d.tick(t0 + timedelta(seconds=30))
        for w in range(1, extra_waves + 1):
            now = t0 + timedelta(seconds=30) + w * timedelta(minutes=1)
            for k in range(0, streets, 10):
                d.ingest(
                    alert_from_sla(_raw(breaches + w * streets + k, now, streets), locate), now
                )
            notes += d.tick(now)
        c2 = time.perf_counter()

        s = WebhookSecret(secret)
        body = '{"x":' + "1" * 4000 + "}"
        k0 = time.perf_counter()
        for i in range(2000):
            s.sign(f"n{i}", 1_700_000_000, body)
        sign_us = (time.perf_counter() - k0) / 2000 * 1e6

        hook = WebhookConfig(
            name="r",
            url=server.url,
            secret_env=["S"],
            concurrency=concurrency,
            rate_per_s=100_000,
            burst=1000,
        )

        async def deliver() -> tuple[float, dict[str, float]]:
            nt = Notifier(
                [webhook_integration(hook, environ={"S": secret})],
                InMemoryOutbox(),
                poll_interval=0.05,
            )
            submitted: dict[str, float] = {}
            d0 = time.perf_counter()
            for n in notes:
                submitted[n.id] = time.perf_counter()
                nt.submit(n)
            await nt.run_until_idle(300)
            await nt.aclose()
            return time.perf_counter() - d0, submitted

        deliver_s, submitted = asyncio.run(deliver())
    finally:
        server.stop()
    lat = sorted((received[i] - t) * 1000 for i, t in submitted.items() if i in received)
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else lat * 99
    return StormResult(
        breaches=breaches,
        notifications=len(notes),
        convert_s=c1 - c0,
        dispatch_s=c2 - c1,
        deliver_s=deliver_s,
        notifications_per_s=len(notes) / deliver_s if deliver_s else 0.0,
        latency_p50_ms=q[49],
        latency_p99_ms=q[98],
        sign_us=sign_us,
    )


if __name__ == "__main__":
    print(storm())
