"""One ``gridpulse bench`` run: a private stack, the data, the chosen phases in order, a report."""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from core.city import city_path
from core.settings import LocalStackSettings, Settings
from gridpulse.bench.data import envelope_messages, mix_of, single_messages
from gridpulse.bench.phases import Bench
from gridpulse.bench.report import TARGETS, machine_info, print_report, verdict
from infra.ports import free_port
from infra.stack import LocalStack

SINGLE_PER_S = 8_000  # single-event messages per --seconds
READINGS_PER_S = 100_000  # envelope readings per --seconds


def bench_settings(args: argparse.Namespace, work: Path) -> Settings:
    """Settings of the private stack under ``work``: a free broker port, chdb, a fresh prefix."""
    overrides: dict[str, Any] = {}
    city = getattr(args, "city", None)
    if city:
        overrides["city_file"] = city_path(city)
    port = free_port()
    return Settings(  # type: ignore[call-arg]
        data_dir=work / "stack",
        broker=f"kafka://127.0.0.1:{port}",
        clickhouse=f"chdb://{work / 'chdb'}",
        local=LocalStackSettings(broker_port=port),
        topics={"prefix": f"bench{uuid.uuid4().hex[:6]}"},
        **overrides,
    )


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every phase on a private stack, print a table, return the results."""
    console = Console(width=max(shutil.get_terminal_size((120, 40)).columns, 120))
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    seconds = float(getattr(args, "seconds", 20.0) or 20.0)
    keep = bool(getattr(args, "keep", False))
    phases = set((getattr(args, "phases", None) or "all").split(","))
    want = lambda p: "all" in phases or p in phases  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="gridpulse-bench-"))
    profile = Path(args.profile) if getattr(args, "profile", None) else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    settings = bench_settings(args, work)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "seconds": seconds,
        "targets": TARGETS,
        "phases": {},
    }
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
