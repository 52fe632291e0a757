"""The console script as users run it: up/status/down, simulate, replay, query."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.ports import free_ports
from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration
LA_FILE = Path("/work/shared/data/la311/la311_2018-01-01_mini.csv")
if not LA_FILE.exists():
    LA_FILE = ROOT.parent / "shared" / "data" / "la311" / "la311_2018-01-01_mini.csv"


def gridpulse(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gridpulse.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPULSE_")}
    env.update(
        {
            "GRIDPULSE_DATA_DIR": str(tmp_path / "data"),
            "GRIDPULSE_CLICKHOUSE": f"chdb://{tmp_path}/chdb",
            **extra,
        }
    )
    return env


def test_up_status_down(tmp_path):
    (port,) = free_ports(1)
    env = base_env(
        tmp_path,
        GRIDPULSE_LOCAL__BROKER_PORT=str(port),
        GRIDPULSE_BROKER=f"kafka://127.0.0.1:{port}",
    )
    try:
        up = gridpulse("up", env=env)
        assert up.returncode == 0, up.stderr
        again = gridpulse("up", env=env)  # idempotent
        assert again.returncode == 0, again.stderr
        status = gridpulse("status", env=env)
        assert "running" in status.stdout and str(port) in status.stdout
    finally:
        down = gridpulse("down", env=env)
    assert down.returncode == 0, down.stderr
    assert "running" not in gridpulse("status", env=env).stdout


def test_simulate_and_replay_publish(broker, tmp_path):
    env = base_env(
        tmp_path, GRIDPULSE_BROKER=f"kafka://{broker}", GRIDPULSE_TOPICS__PREFIX="clitest"
    )
    sim = gridpulse(
        "simulate",
        "--city",
        "sample",
        "--seed",
        "3",
        "--duration",
        "300",
        "--speed",
        "0",
        "--start",
        "2025-06-03T09:00:00+08:00",
        "--truth",
        str(tmp_path / "truth.jsonl"),
        env=env,
    )
    assert sim.returncode == 0, sim.stderr
    stats = json.loads(sim.stdout.strip().splitlines()[-1])
    assert stats["failed"] == 0 and sum(stats["messages"].values()) > 100
    assert (tmp_path / "truth.jsonl").exists()
    if LA_FILE.exists():
        small = tmp_path / "la_small.csv"
        small.write_text("".join(LA_FILE.read_text().splitlines(keepends=True)[:201]))
        rep = gridpulse("replay", str(small), "--city", "la", "--format", "la311", env=env)
        assert rep.returncode == 0, rep.stderr
        assert "200" in rep.stdout


def test_query_is_read_only(tmp_path):
    env = base_env(tmp_path, GRIDPULSE_WORKER__WEB_PORT=str(free_ports(1)[0]))
    ok = gridpulse("query", "SELECT 40 + 2", env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "42\n"
    refused = gridpulse("query", "DROP DATABASE gridpulse", env=env)
    assert refused.returncode != 0
    assert "only a single SELECT" in refused.stderr
