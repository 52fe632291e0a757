"""Profiles of a phase's worker: ``py-spy`` attached to its pid, hot spots from the stacks."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PROJECT_FRAMES = ("(gridpulse/", "(streams/", "(sinks/", "(sources/")  # py-spy paths


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


class Profiler:
    """``py-spy record --format raw`` attached to a pid until stopped (when py-spy exists)."""

    def __init__(self, pid: int, out: Path | None) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if out is None or not Path(exe).exists():
            return
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--format",
                "raw",
                "--rate",
                "97",
                "--nonblocking",
                "-o",
                str(out),
                "--pid",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> dict[str, Any] | None:
        """Stop recording (SIGINT: py-spy writes its file); the project's hot spots, or None."""
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
