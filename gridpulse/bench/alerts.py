"""``gridpulse bench --alerts [N]``: the alert stage through the real worker.

A private broker, a real worker with the alert stage on (chdb store), and the reference
receiver in this process on 127.0.0.1 (signature check and dedup included). SLA breaches are
published to ``<prefix>.sla.events`` as the SLA clock would; three routes tell them apart by
category:

* **latency**: breaches published one by one at ``LATENCY_RATE``/s, each its own group with
  ``group_wait: 0s``: publish → webhook received, p50 / p99 (this includes the worker's batch
  window and its tick, both reported).
* **storm**: ``N`` breaches published flat out, grouped per street and kind as in the example
  routes (``group_wait`` 10 s, ``group_interval`` 30 s): how fast the worker takes them in and
  stores them, how many notifications they become, and when the last alert was received.
* **storm, ungrouped**: ``N / 5`` breaches, one notification each: webhook throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaProducer

from alerts.notify.webhook import WebhookSecret
from alerts.receiver import Inbox, ReceiverServer
from core.events import SlaAlert, encode
from core.settings import REPO_ROOT, LocalStackSettings, Settings
from infra.ports import free_port
from infra.processes import Child
from infra.stack import LocalStack

LATENCY_N = 200
LATENCY_RATE = 10.0  # breaches per second in the latency run
TICK_S = 0.25
BATCH_S = 0.25


@dataclass
class Received:
    """What the receiver saw: first receipt time per case, and notifications per category."""

    at: dict[str, float] = field(default_factory=dict)
    notifications: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_webhook(self, wid: str, payload: dict[str, Any]) -> None:
        now = time.time()
        with self.lock:
            cats = {a["labels"].get("category", "") for a in payload["alerts"]}
            for c in cats:
                self.notifications[c] = self.notifications.get(c, 0) + 1
            for a in payload["alerts"]:
                self.at.setdefault(a["labels"]["case"], now)

    def count(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for c in self.at if c.startswith(prefix))


def routes(url: str) -> dict[str, Any]:
    hook = {
        "url": url,
        "secret_env": ["GRIDPULSE_BENCH_HOOK"],
        "concurrency": 16,
        "rate_per_s": 2000,
        "burst": 200,
        "timeout": "5s",
    }
    one_each = {"group_by": ["case"], "group_wait": "0s", "group_interval": "1m"}
    return {
        "route": {
            "receiver": "bench",
            "group_by": ["street", "kind"],
            "group_wait": "10s",
            "group_interval": "30s",
            "routes": [
                {"matchers": ['category=~"latency|warmup"'], **one_each},
                {"matchers": ['category="ungrouped"'], **one_each},
            ],
        },
        "receivers": [{"name": "bench", "webhook": hook}],
    }


def breach(i: int, category: str, grid: str, now: datetime) -> SlaAlert:
    return SlaAlert(
        alert_id=f"{category}-{i}",
        kind="breach",
        level=0,
        fraction=1.0,
        case_id=f"{category}-{i}",
        stage="dispatch",
        stage_seq=1,
        due_at=now,
        fired_at=now,
        deadline=now,
        stage_started_at=now,
        grid=grid,
        category=category,
        unit="sanitation",
        urgent=False,
        source="hotline",
    )


async def publish(
    bootstrap: str, topic: str, msgs: list[SlaAlert], rate: float | None
) -> dict[str, float]:
    """Send ``msgs`` (paced at ``rate``/s, else flat out); returns send time per case."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1 if rate else 20)
    await producer.start()
    sent: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        futures = []
        for i, m in enumerate(msgs):
            if rate:
                await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            sent[m.case_id] = time.time()
            futures.append(await producer.send(topic, encode(m), key=m.case_id.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


def wait_until(cond: Any, timeout: float, worker: Child, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if not worker.alive():
            raise RuntimeError(f"worker died during {what}:\n{worker.tail()}")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not done in {timeout:.0f}s:\n{worker.tail()}")
        time.sleep(0.05)
    return time.time()


def ingested_total(worker: Child) -> int:
    """Input messages the worker's alert stage has taken in so far."""
    stats = worker.get("/alerts/stats/") or {}
    return sum((stats.get("ingested") or {}).values())


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_alert_bench(storm_n: int = 10_000, keep: bool = False) -> dict[str, Any]:
    """Run the three measurements; print and return the results."""
    work = Path(tempfile.mkdtemp(prefix="gridpulse-bench-alerts-"))
    port = free_port()
    settings = Settings(  # type: ignore[call-arg]
        data_dir=work / "stack",
        broker=f"kafka://127.0.0.1:{port}",
        clickhouse=f"chdb://{work / 'chdb'}",
        local=LocalStackSettings(broker_port=port),
    )
    prefix = f"benchal{uuid.uuid4().hex[:6]}"
    topic = f"{prefix}.sla.events"
    grids = [g.code for g in settings.city.iter_grids()]
    streets = {settings.city.grid_paths[g].street for g in grids}
    got = Received()
    secret = WebhookSecret.generate()
    server = ReceiverServer(Inbox([WebhookSecret(secret)], on_webhook=got.on_webhook)).start()
    (work / "routes.yaml").write_text(yaml.safe_dump(routes(server.url)))
    stack = LocalStack(settings, durable=False, with_clickhouse_server=False)
    worker: Child | None = None
    results: dict[str, Any] = {"tick_s": TICK_S, "batch_s": BATCH_S, "streets": len(streets)}
    try:
        stack.up()
        web = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPULSE")}
        env |= {
            "GRIDPULSE_BROKER": settings.broker,
            "GRIDPULSE_CLICKHOUSE": settings.clickhouse,
            "GRIDPULSE_DATA_DIR": str(work / "data"),
            "GRIDPULSE_TOPICS__PREFIX": prefix,
            "GRIDPULSE_WORKER__APP_ID": f"gp-{prefix}",
            "GRIDPULSE_WORKER__WEB_PORT": str(web),
            "GRIDPULSE_SINK__BATCH_SECONDS": str(BATCH_S),
            "GRIDPULSE_ALERTS__ENABLED": "true",
            "GRIDPULSE_ALERTS__ROUTES_FILE": str(work / "routes.yaml"),
            "GRIDPULSE_ALERTS__API_PORT": str(free_port()),
            "GRIDPULSE_ALERTS__TICK_SECONDS": str(TICK_S),
            "GRIDPULSE_BENCH_HOOK": secret,
        }
        cmd = [sys.executable, "-m", "gridpulse.cli", "worker", "--loglevel", "WARNING"]
        worker = Child(cmd, env, work / "worker.log", web, cwd=REPO_ROOT).start()
        worker.wait_ready("/alerts/stats/", 120)
        bootstrap = settings.bootstrap_servers

        def now() -> datetime:
            return datetime.now(UTC)

        # warm-up: the consumer group has joined once one breach went through
        asyncio.run(publish(bootstrap, topic, [breach(0, "warmup", grids[0], now())], None))
        wait_until(lambda: got.count("warmup") == 1, 120, worker, "warm-up")

        msgs = [breach(i, "latency", grids[i % len(grids)], now()) for i in range(LATENCY_N)]
        sent = asyncio.run(publish(bootstrap, topic, msgs, LATENCY_RATE))
        wait_until(lambda: got.count("latency") == LATENCY_N, 120, worker, "latency")
        lat = [got.at[c] - t for c, t in sent.items()]
        results["latency"] = {
            "n": LATENCY_N,
            "rate_per_s": LATENCY_RATE,
            "p50_ms": round(statistics.median(lat) * 1000),
            "p99_ms": round(pct(lat, 0.99) * 1000),
            "max_ms": round(max(lat) * 1000),
        }
        print(f"latency: {results['latency']}", flush=True)

        for category, n in (("storm", storm_n), ("ungrouped", max(storm_n // 5, 1))):
            ts = now()
            msgs = [breach(i, category, grids[i % len(grids)], ts) for i in range(n)]
            target = ingested_total(worker) + n
            t0 = time.time()
            asyncio.run(publish(bootstrap, topic, msgs, None))
            published = time.time()
            ingested = wait_until(
                lambda: ingested_total(worker) >= target,  # noqa: B023 - used at once
                300,
                worker,
                f"{category} ingested",
            )
            done = wait_until(
                lambda: got.count(category) == n,  # noqa: B023 - used at once
                600,
                worker,
                category,
            )
            notes = got.notifications.get(category, 0)
            results[category] = {
                "breaches": n,
                "publish_s": round(published - t0, 2),
                "ingested_s": round(ingested - t0, 2),
                "ingest_per_s": round(n / max(ingested - t0, 1e-9)),
                "all_received_s": round(done - t0, 2),
                "notifications": notes,
                "alerts_per_notification": round(n / max(notes, 1), 1),
                "notifications_per_s": round(notes / max(done - t0, 1e-9), 1),
            }
            print(f"{category}: {results[category]}", flush=True)
        _, duplicates, rejected = server.inbox.snapshot()
        results["receiver"] = {"duplicates": duplicates, "rejected": rejected}
        results["worker_stats"] = worker.get("/alerts/stats/")
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        with contextlib.suppress(Exception):
            stack.down()
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return results
