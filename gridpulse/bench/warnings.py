"""``gridpulse bench --warnings``: the worker's count judge at city scale, in process.

What bounds a warning's latency is the hour it waits for: an hour ``[b, b + 1h)`` is judged
once every ingest partition is stored past ``b + 1h + grace`` (the window grace), at the next
detection tick. After that, the judge's own cost adds: this measures it on the sample city
(every grid × subcategory with a Poisson history, plus community and street roll-ups):

1. **rebuild**: ``CountJudge.rebuild`` from ``history_hours`` of stored-like hourly counts
   (what a worker does when it takes over judging), keys/s and seconds;
2. **judge**: ``CountJudge.judge`` of one closed hour (every key updated, verdicts, lifecycle),
   seconds per hour and µs per key, with a burst in one grid (it must fire);
3. **memory**: RSS growth of this process per key.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.city import load_city
from core.settings import REPO_ROOT
from sinks.base.store import WindowCount
from streams.detect.config import DetectionConfig
from streams.warnings import HOUR, CountJudge, hour_counts

CITY = REPO_ROOT / "config" / "cities" / "sample.yaml"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def synthetic_history(
    hours: int, until_s: int, rate: float, seed: int = 7
) -> tuple[list[WindowCount], list[WindowCount]]:
    """Poisson(``rate``) hourly counts for every grid × subcategory of the sample city over
    ``hours`` before ``until_s`` (non-zero rows only), and the rows of the hour at ``until_s``
    with a burst of 30 in the first grid."""
    import numpy as np

    city = load_city(CITY)
    rng = np.random.default_rng(seed)
    grids = list(city.iter_grids())
    paths = city.grid_paths
    subs = list(city.subcategories)
    history: list[WindowCount] = []
    for h in range(hours):
        bucket = until_s - (hours - h) * HOUR
        counts = rng.poisson(rate, size=(len(grids), len(subs)))
        for gi, si in zip(*counts.nonzero(), strict=True):
            g = grids[gi].code
            p = paths[g]
            n = int(counts[gi, si])
            history.append(
                WindowCount(bucket, p.district, p.street, p.community, g, subs[si], "hotline", n)
            )
    g = grids[0].code
    p = paths[g]
    now = [WindowCount(until_s, p.district, p.street, p.community, g, subs[0], "hotline", 30)]
    random.Random(seed).shuffle(history)
    return history, now


def run_warning_bench(history_hours: int = 14 * 24, rate: float = 0.05) -> dict[str, Any]:
    until = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp())
    history, burst = synthetic_history(history_hours, until, rate)
    judge = CountJudge(DetectionConfig(timezone="Asia/Shanghai"))
    before = rss_mb()
    t = time.perf_counter()
    judge.rebuild(history, until)
    rebuild_s = time.perf_counter() - t
    keys = len(judge.states)
    grown = rss_mb() - before
    t = time.perf_counter()
    fired = judge.judge(until, hour_counts(burst))
    judge_s = time.perf_counter() - t
    spikes = [w for w in fired if w.kind == "count_spike" and w.where.grid_code]
    result = {
        "history_hours": history_hours,
        "rate_per_key_hour": rate,
        "stored_rows": len(history),
        "keys": keys,
        "rebuild_s": round(rebuild_s, 2),
        "rebuild_keys_per_s": round(keys / rebuild_s),
        "judge_hour_s": round(judge_s, 3),
        "judge_us_per_key": round(judge_s / max(keys, 1) * 1e6, 1),
        "rss_mb": round(grown, 1),
        "bytes_per_key": round(grown * 1024 * 1024 / max(keys, 1)),
        "burst_fired": len(spikes),
    }
    print("warning judge, sample city (800 grids x 15 subcategories + roll-ups):")
    for k, v in result.items():
        print(f"  {k:22} {v}")
    return result


if __name__ == "__main__":
    run_warning_bench()
