"""``gridpulse run`` (what ``make run`` calls): the whole embedded stack until Ctrl-C.

Starts the local broker, a worker and the simulator as child processes, shows the live view,
and on Ctrl-C stops them in reverse order, worker last so its final batch is stored.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from core.settings import Settings

STOP_TIMEOUT_S = 20


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen(
        [sys.executable, "-m", "gridpulse.cli", *args],
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_all(settings: Settings, args: argparse.Namespace) -> int:
    from gridpulse.live import LiveView
    from infra.stack import LocalStack

    logs = settings.data_dir / "logs"
    stack = LocalStack(settings, durable=args.durable, with_clickhouse_server=False)
    with ExitStack() as cleanup:
        stack.up()
        cleanup.callback(stack.down)
        city = ["--city", str(settings.city_file)]
        worker = _spawn([*city, "worker", "--loglevel", "WARNING"], logs / "worker.log")
        cleanup.callback(_stop, worker)
        sim = _spawn(
            [
                *city,
                "simulate",
                "--seed",
                str(args.seed),
                "--speed",
                str(args.speed),
                "--rate",
                str(args.rate),
                "--duration",
                str(30 * 86_400),
            ],
            logs / "simulator.log",
        )
        cleanup.callback(_stop, sim)
        print(f"logs in {logs}; Ctrl-C stops everything")
        try:
            LiveView(settings).run()
        except KeyboardInterrupt:
            print("\nstopping simulator, worker and broker …")
    return 0
