"""How a phase is measured: progress samples -> steady rate, completion checks, memory."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.processes import Child


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


def covered(processed: dict[str, int], ends: dict[str, int]) -> bool:
    """Every published offset processed."""
    return all(processed.get(k, -1) >= off for k, off in ends.items())


def cases_done(snap: dict[str, Any]) -> bool:
    """The case agent has applied (or rejected) every case the ingest opened: opening
    cases is part of the pipeline's work, so a rate must not stop the clock before it."""
    c = snap.get("cases") or {}
    seen = sum(int(c.get(k, 0)) for k in ("applied", "illegal", "duplicate", "dead"))
    return seen >= int(snap.get("cases_opened", 0))


def wait_count(
    child: Child,
    t_ready: float,
    count: Callable[[dict[str, Any]], int],
    done: Callable[[dict[str, Any]], bool],
    path: str,
    poll_s: float,
    timeout: float = 600,
) -> tuple[Progress, dict[str, Any]]:
    """Poll ``child``'s ``path`` until ``done``, recording ``count`` of each answer; the last
    answer. Raises RuntimeError when the child dies, TimeoutError after ``timeout`` s."""
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


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (0.0 when unknown)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0
