"""The measured phases, one method each, and the child processes (workers, bare Faust) they run."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.settings import REPO_ROOT, Settings
from gridpulse.bench.data import Wire, single_messages
from gridpulse.bench.kafka import (
    consume_all,
    create_topics,
    ends_of,
    prepublish,
    produce,
    run_sync,
    topic_map,
)
from gridpulse.bench.measure import cases_done, covered, rss_mb, wait_count
from gridpulse.bench.pyspy import Profiler
from infra.ports import free_port
from infra.processes import Child

POLL_BARE_S = 0.25
POLL_WORKER_S = 0.5  # /stats/ computes latency percentiles: poll it gently


class Bench:
    """The phases against one broker (``bootstrap``, set once it runs); each phase publishes
    under a fresh topic prefix, runs its consumer as a child and returns its result dict."""

    def __init__(
        self,
        settings: Settings,
        work: Path,
        seconds: float,
        profile: Path | None,
        say: Callable[[str], None],
    ) -> None:
        self.base = settings
        self.work = work
        self.seconds = seconds
        self.profile = profile
        self.say = say
        self.bootstrap = ""
        self.partitions = settings.topics.partitions
        self.children: list[Child] = []

    def prefix(self, phase: str) -> str:
        return f"bench{uuid.uuid4().hex[:6]}-{phase}"

    # -- children
    def _spawn(self, cmd: list[str], env: dict[str, str], name: str, port: int) -> Child:
        child = Child(cmd, env, self.work / f"{name}.log", port, cwd=REPO_ROOT).start()
        self.children.append(child)
        return child

    def _stop(self, child: Child) -> None:
        t0 = time.monotonic()
        child.stop()
        self.say(f"  {child.log.stem} stopped in {time.monotonic() - t0:.1f} s")
        if child in self.children:
            self.children.remove(child)

    def worker_env(self, prefix: str, port: int) -> dict[str, str]:
        env = dict(os.environ)  # GRIDPULSE_SINK__* etc. pass through: bench your tuning
        env.update(
            {
                "GRIDPULSE_BROKER": f"kafka://{self.bootstrap}",
                "GRIDPULSE_CLICKHOUSE": f"chdb://{self.work / ('chdb-' + prefix)}",
                "GRIDPULSE_CITY_FILE": str(self.base.city_file),
                "GRIDPULSE_DATA_DIR": str(self.work / "data"),
                "GRIDPULSE_TOPICS__PREFIX": prefix,
                "GRIDPULSE_TOPICS__PARTITIONS": str(self.partitions),
                "GRIDPULSE_WORKER__APP_ID": f"gp-{prefix}",
                "GRIDPULSE_WORKER__WEB_HOST": "127.0.0.1",
                "GRIDPULSE_WORKER__WEB_PORT": str(port),
            }
        )
        return env

    def start_worker(self, prefix: str) -> tuple[Child, float]:
        port = free_port()
        cmd = [sys.executable, "-m", "gridpulse.cli", "worker", "--loglevel", "WARNING"]
        t0 = time.monotonic()
        child = self._spawn(cmd, self.worker_env(prefix, port), f"worker-{prefix}", port)
        ready = child.wait_ready("/stats/")
        self.say(f"  worker ready in {ready - t0:.1f} s")
        return child, ready

    # -- phases
    def aiokafka(self, wires: list[Wire]) -> dict[str, Any]:
        prefix = self.prefix("aiokafka")
        pub = prepublish(self.bootstrap, prefix, self.partitions, wires)
        topics = list(topic_map(prefix).values())
        res = run_sync(consume_all(self.bootstrap, topics, len(wires)))
        return {**res, "publish_s": pub["publish_s"]}

    def faust_bare(self, wires: list[Wire], mode: str) -> dict[str, Any]:
        prefix = self.prefix(f"faust-{mode}")
        pub = prepublish(self.bootstrap, prefix, self.partitions, wires)
        port = free_port()
        s = self.base
        cmd = [
            sys.executable,
            "-m",
            "gridpulse.bench",
            "faust-bare",
            "--broker",
            f"kafka://{self.bootstrap}",
            "--app-id",
            f"bare-{prefix}",
            "--topics",
            ",".join(topic_map(prefix).values()),
            "--port",
            str(port),
            "--mode",
            mode,
            "--batch",
            str(s.sink.ingest_batch_max),
            "--within",
            str(s.sink.batch_seconds),
            "--partitions",
            str(self.partitions),
            "--datadir",
            str(s.data_dir / "faust" / f"bare-{prefix}"),
        ]
        child = self._spawn(cmd, dict(os.environ), f"faust-bare-{mode}-{prefix}", port)
        try:
            t_ready = child.wait_ready("/count/")
            total = len(wires)
            prog, snap = wait_count(
                child,
                t_ready,
                lambda s: int(s["n"]),
                lambda s: int(s["n"]) >= total,
                "/count/",
                POLL_BARE_S,
            )
            res = {
                **prog.summary(total),
                "rss_mb": rss_mb(child.pid),
                "mode": mode,
                "counted": snap["n"],
                "publish_s": pub["publish_s"],
            }
        finally:
            self._stop(child)
        return res

    def gridpulse(self, wires: list[Wire], phase: str) -> dict[str, Any]:
        prefix = self.prefix(phase)
        pub = prepublish(self.bootstrap, prefix, self.partitions, wires)
        self.say(f"  published {len(wires):,} messages in {pub['publish_s']} s")
        ends = pub["ends"]
        child, t_ready = self.start_worker(prefix)
        prof = Profiler(child.pid, self.profile / f"{phase}.txt" if self.profile else None)
        try:
            total = sum(w.events for w in wires)
            prog, snap = wait_count(
                child,
                t_ready,
                lambda s: int(s["events"]),
                lambda s: covered(s["processed"], ends) and cases_done(s),
                "/stats/",
                POLL_WORKER_S,
            )
            self.say(f"  done: {prog.summary(total)}")
            profile = prof.stop()
            res = {
                **prog.summary(total),
                "messages": snap["messages"],
                "events": snap["events"],
                "dead_lettered": snap["dead_lettered"],
                "batches": snap["batches"],
                "last_batch_ms": snap.get("last_batch_ms"),
                "sink_inserts": snap["sink"]["inserts"],
                "busy_s": snap.get("busy_s"),
                "insert_s": snap.get("clickhouse", {}).get("insert_s"),
                "rss_mb": snap.get("rss_mb") or rss_mb(child.pid),
                "sink_failures": snap["sink"]["failures"],
                "publish_s": pub["publish_s"],
            }
            if profile:
                res["profile"] = profile
            if snap["events"] < total:
                res["warning"] = f"worker stored {snap['events']} events of {total} published"
        finally:
            prof.stop()
            self._stop(child)
        return res

    def latency(self, rate: float) -> dict[str, Any]:
        prefix = self.prefix("latency")
        create_topics(self.bootstrap, prefix, self.partitions)
        topics = topic_map(prefix)
        n = max(int(rate * self.seconds), 100)
        wires = single_messages(self.base.city, n + 200, datetime.now(UTC))
        warm, live = wires[:200], wires[200:]
        child, _ = self.start_worker(prefix)
        try:
            # caught up: a warm-up burst fully stored (also waits out the group join)
            last, _ = run_sync(produce(self.bootstrap, topics, warm, now_ts=True))
            wait_count(
                child,
                time.monotonic(),
                lambda s: int(s["messages"]),
                lambda s: covered(s["processed"], ends_of(last)),
                "/stats/",
                0.2,
                120,
            )
            child.http.post("/stats/reset-latency/")
            last, secs = run_sync(produce(self.bootstrap, topics, live, rate=rate, now_ts=True))
            _, snap = wait_count(
                child,
                time.monotonic(),
                lambda s: int(s["messages"]),
                lambda s: covered(s["processed"], ends_of(last)),
                "/stats/",
                0.2,
                120,
            )
            lat = snap["latency_s"]
            self.say(f"  latency: {lat}")
            return {
                "target_rate_per_s": round(rate),
                "sent": len(live),
                "achieved_rate_per_s": round(len(live) / max(secs, 1e-9)),
                "seconds": round(secs, 1),
                **{k: lat.get(k) for k in ("p50", "p99", "max", "n")},
                "batch_seconds": self.base.sink.batch_seconds,
                "batches": snap["batches"],
                "last_batch_ms": snap.get("last_batch_ms"),
                "sink_inserts": snap["sink"]["inserts"],
                "busy_s": snap.get("busy_s"),
                "insert_s": snap.get("clickhouse", {}).get("insert_s"),
                "alerts": (snap.get("cases") or {}).get("alerts"),
                "rss_mb": snap.get("rss_mb"),
            }
        finally:
            self._stop(child)

    def close(self) -> None:
        for child in list(self.children):
            with contextlib.suppress(Exception):
                self._stop(child)
