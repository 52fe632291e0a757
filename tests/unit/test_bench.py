"""The benchmark's pure helpers: rates from progress samples, completion, profile summaries."""

from __future__ import annotations

from gridpulse.bench.kafka import ends_of
from gridpulse.bench.measure import Progress, covered
from gridpulse.bench.pyspy import summarize_collapsed
from gridpulse.bench.report import verdict


def test_steady_rate_excludes_the_wait_before_first_progress() -> None:
    p = Progress(t_ready=100.0)
    for t, n in [(100.5, 0), (103.0, 0), (104.0, 10_000), (105.0, 20_000), (106.0, 30_000)]:
        p.add(t, n)
    s = p.summary(30_000)
    assert s["steady_per_s"] == 10_000.0
    assert s["steady_s"] == 2.0
    assert s["from_ready_s"] == 6.0


def test_no_progress_is_zero_not_a_crash() -> None:
    p = Progress(t_ready=0.0)
    p.add(1.0, 0)
    assert p.summary(10)["steady_per_s"] == 0.0


def test_covered_needs_every_partition() -> None:
    ends = ends_of({("a", 0): 9, ("a", 1): 4})
    assert ends == {"a[0]": 9, "a[1]": 4}
    assert not covered({"a[0]": 9}, ends)
    assert not covered({"a[0]": 9, "a[1]": 3}, ends)
    assert covered({"a[0]": 9, "a[1]": 4, "b[0]": 1}, ends)


def test_summarize_collapsed_self_and_inclusive() -> None:
    raw = (
        "main (/repo/x.py:1);f (/repo/streams/n.py:5);loads (<json>:1) 30\n"
        "main (/repo/x.py:1);g (/repo/sinks/s.py:9) 70\n"
        "garbage line\n"
    )
    s = summarize_collapsed(raw, only=("/repo/",))
    assert s["samples"] == 100
    assert ("main (/repo/x.py:1)", 100.0) in s["inclusive"]
    assert s["self"][0] == ("g (/repo/sinks/s.py:9)", 70.0)
    assert all("/repo/" in f for f, _ in s["self"])


def test_verdict_against_targets() -> None:
    v = verdict(
        {
            "faust_take": {"steady_per_s": 10_000},
            "faust_iter": {"steady_per_s": 12_000},
            "gridpulse_single": {"steady_per_s": 9_000},
            "gridpulse_envelopes": {"steady_per_s": 150_000},
            "latency": {"p99": 2.5},
        }
    )
    assert v["single_vs_bare"]["value"] == 0.75 and not v["single_vs_bare"]["met"]
    assert v["readings_per_s"]["met"]
    assert not v["latency_p99_s"]["met"]
