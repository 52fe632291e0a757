"""The worker's Prometheus metrics (``/metrics``), in a registry of its own per runtime.

Two kinds: instruments the agents update as they go (``WorkerMetrics``: events and dead
letters in, batch and store latency) and gauges/counters read from the runtime's live
state at each scrape (``state_metrics`` over ``Runtime.snapshot()``: lag, sink retries and
pauses, cases, SLA timers, warnings; ``stat_metrics`` over another stage's stats, e.g. the
alert stage's). Counters count what this process did since it started: a redelivered
message counts again in ``events_in`` and is dropped by the store's ledger
(``sink_redelivered_rows_dropped``).
"""

from __future__ import annotations

import re
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PREFIX = "gridpulse"
# seconds; a checkpoint takes ~10 ms to ~1 s, a store outage longer (retries are counted)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
_PARTITION_KEY = re.compile(r"^(?P<topic>.*)\[(?P<partition>\d+)\]$")
CASE_OUTCOMES = ("applied", "illegal", "duplicate", "held")


class WorkerMetrics:
    """The instruments of one worker runtime and the registry ``/metrics`` exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.messages_in = Counter(
            f"{PREFIX}_messages_in",
            "Messages stored (ingest) or applied (case events), per topic.",
            ["topic"],
            registry=reg,
        )
        self.events_in = Counter(
            f"{PREFIX}_events_in",
            "Normalized events (reports, readings, requests) stored, per topic and source.",
            ["topic", "source"],
            registry=reg,
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters",
            "Messages (or envelope items) sent to the dead-letter topic, per source topic "
            "and reason code.",
            ["topic", "reason"],
            registry=reg,
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_seconds",
            "A checkpoint from the start of its normalizing until it is stored.",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.store_seconds = Histogram(
            f"{PREFIX}_store_seconds",
            "Writing one checkpoint to every table (retries included).",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        ProcessCollector(registry=reg)

    def observe_messages(self, topics: Iterable[str]) -> None:
        """Count stored (or, on the case topic, applied) messages by their topics."""
        for topic, n in Tally(topics).items():
            self.messages_in.labels(topic).inc(n)

    def observe_events(self, events: pd.DataFrame) -> None:
        """Count a stored checkpoint's events (``src_topic`` and ``source`` columns)."""
        if events.empty:
            return
        for (topic, source), n in pair_counts(events["src_topic"], events["source"]).items():
            self.events_in.labels(str(topic), str(source)).inc(n)

    def observe_dead(self, dead: Iterable[tuple[Any, ...]]) -> None:
        """Count dead letters given as ``(record_s, src_topic, partition, offset, index,
        reason_code, reason, payload)``."""
        for item in dead:
            self.dead_letters.labels(str(item[1]), str(item[5])).inc()

    def add_state(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Also expose what ``collect()`` yields at each scrape."""
        self.registry.register(_Collector(collect))

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def pair_counts(first: pd.Series, second: pd.Series) -> dict[tuple[Any, Any], int]:
    """How often each (first, second) value pair occurs (one hashing pass per column:
    about half the time of a two-column groupby on a 100 k-row checkpoint)."""
    codes_a, uniques_a = pd.factorize(first, sort=False, use_na_sentinel=False)
    codes_b, uniques_b = pd.factorize(second, sort=False, use_na_sentinel=False)
    width = len(uniques_b)
    counts = np.bincount(codes_a * width + codes_b, minlength=len(uniques_a) * width)
    return {
        (uniques_a[k // width], uniques_b[k % width]): int(n) for k, n in enumerate(counts) if n
    }


class _Collector:
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        yield from self._collect()

    def describe(self) -> list[Metric]:
        return []  # families vary with the state (labels appear as partitions do)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _per_table(name: str, doc: str, values: Mapping[str, float]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["table"])
    for table, v in sorted(values.items()):
        family.add_metric([table], v)
    return family


def state_metrics(snap: Mapping[str, Any], open_cases: int | None = None) -> Iterator[Metric]:
    """Metrics read from a ``Runtime.snapshot()``; ``open_cases``: owned cases not in a
    terminal stage (None: no case agent)."""
    lag = GaugeMetricFamily(
        f"{PREFIX}_consumer_lag",
        "Messages not yet stored, per assigned partition (high water minus stored/committed).",
        labels=["topic", "partition"],
    )
    for key, n in sorted(snap.get("lag", {}).items()):
        m = _PARTITION_KEY.match(key)
        if m:
            lag.add_metric([m["topic"], m["partition"]], n)
    yield lag
    yield _gauge("uptime_seconds", "Seconds since the worker's runtime started.", snap["uptime_s"])
    yield _counter("batches", "Ingest checkpoints stored.", snap["batches"])
    yield _counter(
        "cases_opened", "Cases opened (accepts sent to the case topic).", snap["cases_opened"]
    )
    sink = snap["sink"]
    yield _counter("sink_inserts", "Inserts into the store.", sink["inserts"])
    yield _counter(
        "sink_retries",
        "Failed store calls, each followed by a retry (the consumer waits meanwhile).",
        sink["failures"],
    )
    waiting = float(sink["waiting_for_store_s"])
    yield _gauge(
        "sink_paused", "1 while the sink waits for the store (consumer paused).", waiting > 0
    )
    yield _gauge("sink_paused_seconds", "How long the current wait for the store lasts.", waiting)
    yield _per_table("sink_rows", "Rows inserted per table.", sink["rows"])
    yield _per_table(
        "sink_redelivered_rows_dropped",
        "Redelivered rows a table's ledger already held (not inserted again).",
        sink["dropped_redelivered"],
    )
    yield _per_table(
        "store_insert_seconds",
        "Seconds spent inside inserts, per table.",
        snap.get("clickhouse", {}).get("insert_s", {}),
    )
    yield from _case_metrics(snap.get("cases") or {}, open_cases)
    yield from _warning_metrics(snap.get("warnings") or {})
    yield from stat_metrics("sensor_rules", snap.get("sensor_rules") or {})


def _case_metrics(cases: Mapping[str, Any], open_cases: int | None) -> Iterator[Metric]:
    if not cases:
        return
    outcomes = CounterMetricFamily(
        f"{PREFIX}_case_events", "Case events applied, per outcome.", labels=["outcome"]
    )
    for outcome in CASE_OUTCOMES:
        outcomes.add_metric([outcome], cases.get(outcome, 0))
    yield outcomes
    yield _gauge("cases_owned", "Cases of this worker's partitions (any stage).", cases["owned"])
    if open_cases is not None:
        yield _gauge("cases_open", "Owned cases not in a terminal stage.", open_cases)
    yield _gauge("sla_timers_pending", "SLA timers waiting to fire.", cases["timers"])
    yield _counter(
        "sla_timers_fired", "SLA warnings, breaches and escalations fired.", cases["alerts"]
    )


def _warning_metrics(warnings: Mapping[str, Any]) -> Iterator[Metric]:
    if not warnings:
        return
    yield _counter(
        "warnings_published", "Early-warning revisions published.", warnings["published"]
    )
    yield _gauge("warnings_firing", "Early warnings firing now.", warnings["firing"])
    yield _counter(
        "warning_hours_judged", "Closed hours the detectors judged.", warnings["hours_judged"]
    )


def stat_metrics(stage: str, stats: Mapping[str, Any]) -> Iterator[Metric]:
    """A stage's stats dict as metrics ``gridpulse_<stage>_<key>``: numbers as gauges,
    ``{label: number}`` maps as counters labelled ``key``; other values are left out."""
    for key, value in sorted(stats.items()):
        name = f"{PREFIX}_{stage}_{key}"
        if isinstance(value, bool):
            yield GaugeMetricFamily(name, f"{stage} {key} (1 = yes)", value=float(value))
        elif isinstance(value, int | float):
            yield GaugeMetricFamily(name, f"{stage} {key}", value=value)
        elif isinstance(value, Mapping) and all(isinstance(v, int | float) for v in value.values()):
            family = CounterMetricFamily(name, f"{stage} {key}, per key", labels=["key"])
            for k, v in sorted(value.items()):
                family.add_metric([str(k)], v)
            yield family
