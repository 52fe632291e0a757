"""Drive real worker processes and compute expected results independently of the pipeline.

The expectation side deliberately re-implements the rules in plain Python (datetime math,
brute-force point-in-polygon) instead of calling ``streams.*``: a bug shared by both sides
would otherwise go unseen.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from shapely.geometry import Point, shape

from core.city import UNLOCATED, City
from infra.ports import free_port
from infra.processes import Child

ROOT = Path(__file__).resolve().parents[2]
GRACE_S = 120


@dataclass
class PipelineEnv:
    """One isolated pipeline: its own topics, consumer group, web port and store."""

    bootstrap: str
    clickhouse: str
    city_file: Path
    data_dir: Path
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    partitions: int = 4
    extra: dict[str, str] = field(default_factory=dict)

    def env(self, web_port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPULSE_")}
        env.update(
            {
                "GRIDPULSE_BROKER": f"kafka://{self.bootstrap}",
                "GRIDPULSE_CLICKHOUSE": self.clickhouse,
                "GRIDPULSE_CITY_FILE": str(self.city_file),
                "GRIDPULSE_DATA_DIR": str(self.data_dir),
                "GRIDPULSE_TOPICS__PREFIX": self.prefix,
                "GRIDPULSE_TOPICS__PARTITIONS": str(self.partitions),
                "GRIDPULSE_WORKER__APP_ID": f"gp-{self.prefix}",
                "GRIDPULSE_WORKER__WEB_PORT": str(web_port),
                "GRIDPULSE_WINDOW__GRACE_SECONDS": str(GRACE_S),
                "GRIDPULSE_SINK__BATCH_SECONDS": "0.5",
                **self.extra,
            }
        )
        return env

    def topic(self, stream: str) -> str:
        names = {
            "inspector": "inspector.reports",
            "sensor": "sensor.readings",
            "hotline": "hotline.requests",
            "case": "case.events",
        }
        return f"{self.prefix}.{names[stream]}"


class WorkerProc:
    """A ``gridpulse worker`` child process with its web views."""

    def __init__(self, penv: PipelineEnv, name: str = "w") -> None:
        self.penv = penv
        self.port = free_port()
        self.log = penv.data_dir / f"worker-{name}-{self.port}.log"
        self.child = Child(
            [sys.executable, "-m", "gridpulse.cli", "worker", "--loglevel", "WARNING"],
            penv.env(self.port),
            self.log,
            self.port,
            cwd=ROOT,
            name="worker",
            http_timeout=30,
        )
        self.http = self.child.http

    def start(self) -> WorkerProc:
        self.penv.data_dir.mkdir(parents=True, exist_ok=True)
        self.child.start()
        return self

    def log_tail(self, n: int = 40) -> str:
        return self.child.tail(n)

    def alive(self) -> bool:
        return self.child.alive()

    def wait_ready(self, timeout: float = 90) -> WorkerProc:
        self.child.wait_ready("/stats/", timeout, poll_s=0.3)
        return self

    def stats(self) -> dict[str, Any]:
        return self.http.get("/stats/").json()

    def query(self, sql: str) -> list[list[str]]:
        r = self.http.post("/query/", json={"sql": sql})
        assert r.status_code == 200, r.text
        return [line.split("\t") for line in r.text.splitlines() if line]

    def kill(self) -> None:
        self.child.kill()

    def stop(self, timeout: float = 30) -> None:
        self.child.stop(timeout)


def wait_processed(workers: list[WorkerProc], ends: dict[str, int], timeout: float = 180) -> None:
    """Until every published offset is stored by one of the workers or committed."""
    deadline = time.monotonic() + timeout
    seen: dict[str, int] = {}
    while time.monotonic() < deadline:
        seen = {}
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"worker died:\n{w.log_tail()}")
            try:
                st = w.stats()
            except httpx.HTTPError:
                continue
            # stored here, or committed by the group before (a killed predecessor may have
            # finished a partition: its restarted successor then never sees those messages)
            for k, off in st["processed"].items():
                seen[k] = max(seen.get(k, -1), off)
            for k, nxt in st["committed"].items():
                seen[k] = max(seen.get(k, -1), nxt - 1)
        if all(seen.get(k, -1) >= off for k, off in ends.items()):
            return
        time.sleep(0.5)
    missing = {k: (seen.get(k), off) for k, off in ends.items() if seen.get(k, -1) < off}
    raise TimeoutError(f"not processed in {timeout}s: {missing}\n{workers[0].log_tail()}")


# ---- the independent expectation --------------------------------------------------------


@dataclass
class Sent:
    topic: str
    partition: int
    offset: int
    emission: Any


@dataclass
class Expected:
    counts: dict[str, Counter] = field(default_factory=dict)  # window -> (bucket,grid,sub,src)
    late: dict[str, Counter] = field(default_factory=dict)
    events: int = 0
    dead: int = 0


class ExpectedCity:
    """Brute-force grid lookup and category rules, straight from the YAML model."""

    def __init__(self, city: City) -> None:
        self.city = city
        self.polys = [(g.code, shape(g.polygon.model_dump())) for g in city.iter_grids()]
        self.sensor_grid = {s.id: s.grid for s in city.sensors}
        self.tz = ZoneInfo(city.timezone)

    def grid_of(self, grid: str | None, loc: Any) -> str:
        if grid:
            return grid
        if loc is None:
            return UNLOCATED
        p = Point(loc.lon, loc.lat)
        for code, poly in self.polys:
            if poly.covers(p):
                return code
        return UNLOCATED

    def bucket(self, t: datetime, window: str) -> tuple[int, int]:
        ts = int(t.timestamp())
        if window == "1d":
            local = t.astimezone(self.tz)
            start = datetime(local.year, local.month, local.day, tzinfo=self.tz)
            nxt = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=self.tz)
            return int(start.timestamp()), int(nxt.timestamp())
        size = {"1m": 60, "5m": 300, "1h": 3600}[window]
        return ts - ts % size, ts - ts % size + size


def expect(city: City, sent: list[Sent], windows=("1m", "5m", "1h", "1d")) -> Expected:
    """What the tables must hold, computed from what was published."""
    ec = ExpectedCity(city)
    out = Expected(counts={w: Counter() for w in windows}, late={w: Counter() for w in windows})
    for s in sent:
        e = s.emission
        msg = e.message
        if msg is None or e.bad_kind:
            out.dead += 1
            continue
        record_s = e.record_ts.timestamp()
        if msg.type == "sensor.envelope":
            items = [
                (r, ec.sensor_grid[r.sensor_id], f"sensor.{r.kind}", "sensor") for r in msg.readings
            ]
        elif msg.type == "sensor.reading":
            items = [(msg, ec.sensor_grid[msg.sensor_id], f"sensor.{msg.kind}", "sensor")]
        elif msg.type == "inspector.report":
            items = [(msg, ec.grid_of(msg.grid, msg.location), msg.category, "inspector")]
        elif msg.type == "hotline.request":
            items = [(msg, ec.grid_of(msg.grid, msg.location), msg.category, "hotline")]
        else:
            continue
        for m, grid, sub, source in items:
            out.events += 1
            for w in windows:
                start, end = ec.bucket(m.occurred_at, w)
                target = out.late if record_s > end + GRACE_S else out.counts
                target[w][(start, grid, sub, source)] += 1
    return out


def to_epoch(value: str) -> int:
    return int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp())


def actual_counts(query, db: str, window: str) -> Counter:
    rows = query(
        f"SELECT bucket, grid_code, subcategory, source, sum(n) FROM {db}.counts_{window} "
        "GROUP BY bucket, grid_code, subcategory, source "
        "HAVING sum(n) > 0"
    )
    return Counter({(to_epoch(b), g, s, src): int(n) for b, g, s, src, n in rows})


def actual_late(query, db: str, window: str) -> Counter:
    rows = query(
        f"SELECT bucket, grid_code, subcategory, source, sum(n) FROM {db}.late_counts "
        f"WHERE granularity = '{window}' "
        "GROUP BY bucket, grid_code, subcategory, source HAVING sum(n) > 0"
    )
    return Counter({(to_epoch(b), g, s, src): int(n) for b, g, s, src, n in rows})


def read_topic(bootstrap: str, topic: str, n: int, timeout: float = 30) -> list[Any]:
    """Read ``n`` records of ``topic`` from the start (all partitions, no consumer group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


def ends_of(sent: list[Sent]) -> dict[str, int]:
    """Highest published offset per ``topic[partition]``."""
    ends: dict[str, int] = {}
    for s in sent:
        key = f"{s.topic}[{s.partition}]"
        ends[key] = max(ends.get(key, -1), s.offset)
    return ends
