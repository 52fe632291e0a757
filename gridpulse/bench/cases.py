"""``gridpulse bench --cases N``: SLA case timers at scale, in process (no broker, no ClickHouse).

The issue's requirement: timers fire without new input, and the cost of a tick grows with the
number of timers that are *due*, not with the number of open cases. This opens N cases through
``CaseBook.admit`` (the same call the lifecycle agent makes) and measures:

1. **admit**: cases/s and events/s into one ``CaseBook``; memory per open case as the RSS delta
   of this process (``/proc/self/status`` VmRSS) and, on a separate sample of up to 100 k cases,
   as ``tracemalloc`` bytes by allocation site; timers in the queue (live and stale).
2. **tick vs due count**: successive ``tick(now, limit=k)`` calls with ``now`` the k-th
   smallest due time still in the heap, so exactly k timers are popped (``limit`` breaks ties:
   working-hour timers of cases opened outside office hours share one due instant); µs per
   tick and per fired alert. The tick with 0 due is measured at several N while cases are
   admitted (10 k, 100 k, 1 M): it stays at a microsecond or so, whatever N.
3. **alert()**: the cost of building the ``SlaAlert`` of each fired timer; **rebuild**:
   ``CaseBook.load`` of up to 100 k cases from their histories (what a worker does from
   ClickHouse after a restart or a rebalance), cases/s.

Cases: hotline and inspector sources over the sample city's subcategories and grids, opened
over the last ``spread_hours`` before ``now`` (wall time by default); 50 % still accepted,
30 % registered, 20 % dispatched; 10 % urgent; working-hour and natural-hour limits as the
SLA policy says.
"""

from __future__ import annotations

import gc
import heapq
import os
import platform
import random
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.city import load_city
from core.settings import REPO_ROOT
from core.sla_config import SlaPolicy, load_sla
from streams.cases import CaseInput
from streams.casework import CaseBook

CITY = REPO_ROOT / "config" / "cities" / "sample.yaml"
SLA = REPO_ROOT / "config" / "sla" / "default.yaml"
DUE_COUNTS = (0, 10, 100, 1_000, 10_000, 100_000)
ZERO_DUE_AT = (10_000, 100_000, 1_000_000)
SAMPLE = 100_000  # tracemalloc and rebuild sample size
CHUNK = 10_000  # cases generated, then admitted (generation is not timed)
ZERO_DUE_REPS = 2_000
STAGES = (("accept",), ("accept", "register"), ("accept", "register", "dispatch"))
STAGE_WEIGHTS = (0.5, 0.3, 0.2)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def case_events(
    n: int, now: float, *, start: int = 0, seed: int = 3, spread_hours: float = 8.0
) -> Iterator[list[CaseInput]]:
    """The events of cases ``start`` .. ``start + n - 1``: each case's list in event order."""
    city = load_city(CITY)
    subs = [
        code
        for code, (_, s) in city.subcategories.items()
        if "hotline" in s.streams or "inspector" in s.streams
    ]
    grids = [g.code for g in city.iter_grids()]
    rnd = random.Random(seed * 1_000_003 + start)
    spread = spread_hours * 3600.0
    for i in range(start, start + n):
        cid = f"case-{i:08d}"
        sub = rnd.choice(subs)
        streams = city.subcategories[sub][1].streams
        source = "hotline" if "inspector" not in streams or rnd.random() < 0.6 else "inspector"
        urgent = rnd.random() < 0.1
        (actions,) = rnd.choices(STAGES, STAGE_WEIGHTS)
        t = now - rnd.random() * spread
        opened = datetime.fromtimestamp(t, UTC)
        evs = [
            CaseInput(
                cid,
                "accept",
                opened,
                grid=rnd.choice(grids),
                category=sub,
                source=source,
                urgent=urgent,
                event_id=f"{cid}/0",
            )
        ]
        for j, action in enumerate(actions[1:], 1):
            t += rnd.random() * (now - t) * 0.5
            evs.append(
                CaseInput(
                    cid,
                    action,
                    datetime.fromtimestamp(t, UTC),  # type: ignore[arg-type]
                    event_id=f"{cid}/{j}",
                )
            )
        yield evs


def _admit_all(book: CaseBook, cases: list[list[CaseInput]]) -> int:
    n = 0
    for evs in cases:
        for ev in evs:
            book.admit(ev)
            n += 1
    return n


def _zero_due_tick_us(book: CaseBook, reps: int = ZERO_DUE_REPS) -> float:
    """µs of a tick with nothing due (the retro alerts of admission drained first)."""
    nxt = book.queue.next_due()
    now = (nxt if nxt is not None else time.time()) - 1.0
    book.tick(now)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            book.tick(now)
        best = min(best, (time.perf_counter() - t0) / reps)
    return best * 1e6


def _timer_counts(book: CaseBook) -> dict[str, int]:
    states = book.states
    live = sum(1 for t in book.queue._heap if states[t.case_id].version == t.epoch)
    return {"timers": len(book.queue), "live": live, "stale": len(book.queue) - live}


def _tick_series(book: CaseBook) -> tuple[list[dict[str, Any]], list[Any], float]:
    """Successive ticks that pop exactly k timers each; the last tick's alerts.

    Which k timers pop is known beforehand by popping a copy of the heap (``heapq`` is
    deterministic), so ``expected`` counts those still live: the case's clock has not moved
    since (``epoch == version``) and the alert has not fired. ``fired`` must equal it."""
    rows: list[dict[str, Any]] = []
    last: list[Any] = []
    now = 0.0
    for k in DUE_COUNTS:
        heap = list(book.queue._heap)
        due = [heapq.heappop(heap) for _ in range(min(k, len(heap)))]
        del heap
        if due:
            now, limit = due[-1].due, k
        else:
            now, limit = (book.queue.next_due() or time.time()) - 1.0, None
        states, fired = book.states, book.fired
        live = {t.alert_id for t in due if states[t.case_id].version == t.epoch}
        expected = len(live - fired)
        t0 = time.perf_counter()
        out = book.tick(now, limit)
        dt = time.perf_counter() - t0
        rows.append(
            {
                "due": len(due),
                "expected": expected,
                "fired": len(out),
                "stale_dropped": len(due) - len(out),
                "tick_us": round(dt * 1e6, 1),
                "us_per_fired": round(dt * 1e6 / len(out), 2) if out else None,
                "kinds": dict(Counter(t.kind for t, _, _ in out)),
            }
        )
        last = out
    return rows, last, now


def _alert_cost(book: CaseBook, fired: list[Any], now: float) -> dict[str, Any]:
    if not fired:
        return {"alerts": 0, "us_per_alert": None}
    t0 = time.perf_counter()
    for t, state, sc in fired:
        book.alert(t, state, sc, now)
    dt = time.perf_counter() - t0
    return {"alerts": len(fired), "us_per_alert": round(dt * 1e6 / len(fired), 2)}


def _rebuild(policy: SlaPolicy, cal: Any, book: CaseBook, n: int) -> dict[str, Any]:
    cids = list(book.history)[:n]
    events = [ev for cid in cids for ev in book.history[cid]]
    keep = set(cids)
    fired = [f for f in book.fired if f.split("/", 1)[0] in keep]
    fresh = CaseBook(policy, cal)
    t0 = time.perf_counter()
    loaded = fresh.load(events, fired)
    dt = time.perf_counter() - t0
    return {
        "cases": loaded,
        "events": len(events),
        "seconds": round(dt, 2),
        "cases_per_s": round(loaded / dt),
        "timers": len(fresh.queue),
    }


def _traced(policy: SlaPolicy, cal: Any, n: int, now: float, seed: int) -> dict[str, Any]:
    """tracemalloc of a book of ``n`` cases: bytes per case and the top allocation sites."""
    gc.collect()
    tracemalloc.start()
    book = CaseBook(policy, cal)
    for start in range(0, n, CHUNK):
        chunk = list(case_events(min(CHUNK, n - start), now, start=start, seed=seed))
        _admit_all(book, chunk)
        del chunk
    book.tick((book.queue.next_due() or now) - 1.0)  # drop the retro list
    gc.collect()
    snap = tracemalloc.take_snapshot()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    root = str(REPO_ROOT) + os.sep
    sites = []
    for st in snap.statistics("lineno")[:12]:
        fr = st.traceback[0]
        name = fr.filename.replace(root, "")
        if "site-packages" in name or name.startswith(sys.prefix):
            name = name.rsplit(os.sep, 2)[-1]
        sites.append(
            {
                "site": f"{name}:{fr.lineno}",
                "bytes_per_case": round(st.size / n),
                "objects_per_case": round(st.count / n, 2),
            }
        )
    del book
    return {"cases": n, "bytes_per_case": round(current / n), "top_sites": sites}


def _object_sizes(book: CaseBook) -> dict[str, int]:
    cid = next(iter(book.states))
    state = book.states[cid]
    ev = book.history[cid][0]
    return {
        "CaseInput": sys.getsizeof(ev),
        "CaseState": sys.getsizeof(state),
        "StageTimes": sys.getsizeof(state.timestamps),
        "Timer": sys.getsizeof(book.queue._heap[0]),
        "datetime": sys.getsizeof(ev.at),
        "case_id str": sys.getsizeof(cid),
        "event_id str": sys.getsizeof(ev.event_id),
    }


def run_case_bench(
    n_cases: int = 1_000_000,
    *,
    seed: int = 3,
    now: float | None = None,
    spread_hours: float = 8.0,
    sample: int = SAMPLE,
    verbose: bool = True,
) -> dict[str, Any]:
    """Open ``n_cases`` cases, then measure ticks, alerts, rebuild and memory (see module doc)."""
    t_start = time.perf_counter()
    now = time.time() if now is None else now
    city = load_city(CITY)
    policy, cal = load_sla(SLA), city.calendar
    log = print if verbose else (lambda *a, **k: None)

    # 1. admit
    gc.collect()
    rss0 = rss_mb()
    book = CaseBook(policy, cal)
    admit_s, n_events, zero_due = 0.0, 0, []
    checkpoints = sorted({c for c in ZERO_DUE_AT if c < n_cases} | {n_cases})
    for start in range(0, n_cases, CHUNK):
        chunk = list(
            case_events(
                min(CHUNK, n_cases - start), now, start=start, seed=seed, spread_hours=spread_hours
            )
        )
        t0 = time.perf_counter()
        n_events += _admit_all(book, chunk)
        admit_s += time.perf_counter() - t0
        del chunk
        if len(book.states) in checkpoints:
            us = _zero_due_tick_us(book)
            zero_due.append(
                {"open_cases": len(book.states), "timers": len(book.queue), "tick_us": round(us, 2)}
            )
            log(
                f"  {len(book.states):>9,} open: 0-due tick {us:.2f} µs, "
                f"admit so far {len(book.states) / admit_s:,.0f} cases/s"
            )
    gc.collect()
    rss1 = rss_mb()
    stages = Counter(s.stage for s in book.states.values())
    admit = {
        "cases": n_cases,
        "events": n_events,
        "seconds": round(admit_s, 1),
        "cases_per_s": round(n_cases / admit_s),
        "events_per_s": round(n_events / admit_s),
        "stages": dict(stages),
        "fired_at_admit": len(book.fired),
        "rss_before_mb": round(rss0),
        "rss_after_mb": round(rss1),
        "rss_bytes_per_case": round((rss1 - rss0) * 2**20 / n_cases),
        **_timer_counts(book),
    }
    sizes = _object_sizes(book)
    log(f"admit: {admit}")

    # 2. ticks vs due count
    ticks, last, t_now = _tick_series(book)
    for r in ticks:
        log(f"  tick due={r['due']:>7,}: {r['tick_us']:>12,.1f} µs, fired {r['fired']:,}")

    # 3. alert() and rebuild
    alerts = _alert_cost(book, last, t_now)
    rebuild = _rebuild(policy, cal, book, min(sample, n_cases))
    log(f"alert(): {alerts}; rebuild: {rebuild}")
    del book, last
    gc.collect()
    traced = _traced(policy, cal, min(sample, n_cases), now, seed)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "now": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "spread_hours": spread_hours,
        "admit": admit,
        "object_sizes": sizes,
        "zero_due_tick": zero_due,
        "ticks": ticks,
        "alert": alerts,
        "rebuild": rebuild,
        "tracemalloc": traced,
        "total_s": round(time.perf_counter() - t_start, 1),
    }
    if verbose:
        print(format_table(result))
    return result


def format_table(r: dict[str, Any]) -> str:
    a, tr = r["admit"], r["tracemalloc"]
    lines = [
        f"case timers: {a['cases']:,} open cases ({a['events']:,} events), "
        f"now {r['now']}, total {r['total_s']} s",
        "| measure | value |",
        "|---|---:|",
        f"| admit | {a['cases_per_s']:,} cases/s ({a['events_per_s']:,} events/s) |",
        f"| timers in the queue | {a['timers']:,} ({a['live']:,} live, {a['stale']:,} stale) |",
        f"| RSS | {a['rss_before_mb']:,} -> {a['rss_after_mb']:,} MB |",
        f"| memory per open case, RSS | {a['rss_bytes_per_case']:,} B |",
        f"| memory per open case, tracemalloc ({tr['cases']:,}) | {tr['bytes_per_case']:,} B |",
    ]
    for z in r["zero_due_tick"]:
        lines.append(
            f"| tick, 0 due, {z['open_cases']:,} open ({z['timers']:,} timers) "
            f"| {z['tick_us']:.2f} µs |"
        )
    for t in r["ticks"]:
        per = f", {t['us_per_fired']:.2f} µs/alert" if t["us_per_fired"] else ""
        lines.append(
            f"| tick, {t['due']:,} due -> {t['fired']:,} fired | {t['tick_us']:,.1f} µs{per} |"
        )
    al, rb = r["alert"], r["rebuild"]
    if al["us_per_alert"]:
        lines.append(f"| alert() build ({al['alerts']:,}) | {al['us_per_alert']:.2f} µs/alert |")
    lines.append(
        f"| rebuild, CaseBook.load ({rb['cases']:,} cases, {rb['events']:,} events) "
        f"| {rb['cases_per_s']:,} cases/s ({rb['seconds']} s) |"
    )
    lines.append("")
    lines.append("top allocation sites (tracemalloc, bytes per case):")
    for s in tr["top_sites"]:
        lines.append(f"  {s['bytes_per_case']:>6,} B  {s['objects_per_case']:>5} obj  {s['site']}")
    return "\n".join(lines)
