"""The case-timer benchmark on a small book: its result structure and sanity."""

from __future__ import annotations

from datetime import UTC, datetime

from gridpulse.bench.cases import DUE_COUNTS, format_table, run_case_bench

# a Wednesday afternoon in Shanghai: working-hour clocks run
NOW = datetime(2026, 11, 18, 6, 0, tzinfo=UTC).timestamp()


def test_case_bench_small() -> None:
    r = run_case_bench(2_000, now=NOW, sample=1_000, verbose=False)
    a = r["admit"]
    assert a["cases"] == 2_000
    assert a["events"] >= a["cases"]
    assert sum(a["stages"].values()) == 2_000
    assert set(a["stages"]) <= {"accepted", "registered", "dispatched"}
    assert a["live"] == 2_000  # one queued timer per running clock: the next one to fire
    assert a["timers"] == a["live"] + a["stale"]
    assert a["cases_per_s"] > 0

    # exactly k timers popped per tick while the heap holds k; the live ones fired, once each
    # (2,000 cases queue one timer each, re-armed as they fire: the big ticks empty the heap)
    assert [t["due"] for t in r["ticks"][:4]] == list(DUE_COUNTS[:4])
    assert all(0 < t["due"] <= k for t, k in zip(r["ticks"][4:], DUE_COUNTS[4:], strict=False))
    for t in r["ticks"]:
        assert t["fired"] == t["expected"]
        assert t["fired"] + t["stale_dropped"] == t["due"]
    assert r["ticks"][0]["fired"] == 0
    assert r["ticks"][-1]["fired"] > 0

    z = r["zero_due_tick"]
    assert [x["open_cases"] for x in z] == [2_000]
    assert 0 < z[0]["tick_us"] < 1_000

    assert r["alert"]["alerts"] == r["ticks"][-1]["fired"]
    assert r["rebuild"]["cases"] == 1_000
    assert r["rebuild"]["cases_per_s"] > 0
    assert r["tracemalloc"]["cases"] == 1_000
    assert r["tracemalloc"]["bytes_per_case"] > 0
    assert r["tracemalloc"]["top_sites"]
    assert "memory per open case" in format_table(r)
