"""Duplicate clusters and repeat complaints in the worker, over the reports and requests of
the inspector and hotline partitions this worker owns.

Contract:

- After a checkpoint is stored, its located reports and requests join duplicate clusters
  (within a radius and time per category: one pothole reported ten times is one problem) and
  its hotline requests count towards repeat complaints of their hashed caller (within D
  days); verdicts go through one lifecycle (``RULES_LIFECYCLE``) and new revisions are
  published and stored. Each detection tick closes clusters and ages complaints up to the
  partitions' progress (never ahead of a backlog).
- The state covers the owned partitions only (reports keyed by grid: a cluster across a
  partition boundary is seen in parts when several workers share the topics). It is rebuilt
  from the stored events of the owned partitions whenever the owned set changes; revisions a
  crash lost come out again, already stored ones are not repeated (``catch_up``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from core.settings import Settings
from core.warning import EarlyWarning
from sinks.base import Store
from streams.detect.lifecycle import WarningLifecycle
from streams.detect.sensors import RULES_LIFECYCLE
from streams.detect.spatial import DuplicateClusters, RepeatComplaints
from streams.detect.verdict import Verdict
from streams.sensor_warnings import catch_up
from streams.warnings import WarningOutlet

log = logging.getLogger("gridpulse.reports")

REPORT_KINDS = ("duplicate_cluster", "repeat_complaint")


class ReportWatch:
    """Duplicate clusters and repeat complaints of the report partitions one worker owns."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        outlet: WarningOutlet,
        progress: Callable[[float], list[tuple[str, int, int, bool]]],
    ) -> None:
        self.topics = (settings.topics.inspector, settings.topics.hotline)
        self.store = store
        self.outlet = outlet
        self.progress = progress
        self.clusters = DuplicateClusters()
        self.repeats = RepeatComplaints()
        self.lifecycle: WarningLifecycle | None = None
        self.owned: frozenset[tuple[str, int]] = frozenset()
        self.fed: dict[tuple[str, int], int] = {}
        self.stats = {"reports": 0, "published": 0}

    def history_s(self) -> int:
        """How far back a rebuild reads: the longer of the cluster and repeat windows."""
        config = self.clusters.config
        longest = max([config.default.window, *(r.window for r in config.categories.values())])
        return int(max(longest, self.repeats.config.within).total_seconds())

    async def ensure(self, owned: set[tuple[str, int]]) -> None:
        """Rebuild when the owned report partitions changed (start, rebalance)."""
        owned_now = frozenset(tp for tp in owned if tp[0] in self.topics)
        if owned_now == self.owned and self.lifecycle is not None:
            return
        stored = await self.outlet.sink.retrying("reading warnings", self.store.latest_warnings)
        lifecycle = WarningLifecycle.rebuild(
            [w for w in stored if w.kind in REPORT_KINDS], RULES_LIFECYCLE
        )
        since = int(time.time()) - self.history_s()
        rows: list[tuple[str, str, int, float, float, str, str, int, str, int]] = []
        for topic, part in sorted(owned_now):
            found = await self.outlet.sink.retrying(
                f"reading the reports of {topic}[{part}]",
                lambda t=topic, p=part: self.store.located_reports(t, p, since),
            )
            rows += [(*r, topic, part) for r in found]
        rows.sort(key=lambda r: (r[2], r[8], r[9], r[7]))
        before = {fp: t.revision for fp, t in lifecycle.tracks.items()}
        cutoff = max((t.published_at for t in lifecycle.tracks.values()), default=None)
        self.clusters, self.repeats = DuplicateClusters(), RepeatComplaints()
        self.fed = {}
        replayed: list[EarlyWarning] = []
        for event_id, category, at_s, lon, lat, grid, caller, offset, topic, part in rows:
            tp = (topic, part)
            self.fed[tp] = max(self.fed.get(tp, -1), offset)
            replayed += lifecycle.observe_all(
                self._observe(event_id, category, at_s, lon, lat, grid, caller)
            )
        self.lifecycle, self.owned = lifecycle, owned_now
        await self._emit(catch_up(replayed, before, lifecycle, cutoff))
        log.info(
            "reports: rebuilt from %d stored reports of %d partitions", len(rows), len(owned_now)
        )

    def _observe(
        self,
        event_id: str,
        category: str,
        at_s: int,
        lon: float,
        lat: float,
        grid: str,
        caller: str,
    ) -> list[Verdict]:
        at = datetime.fromtimestamp(at_s, UTC)
        out: list[Verdict] = []
        if math.isfinite(lon) and math.isfinite(lat):
            out += self.clusters.observe(event_id, category, at, lon, lat, grid).verdicts
        if caller:
            out += self.repeats.observe(event_id, category, at, caller_hash=caller)
        return out

    async def on_stored(
        self, events: pd.DataFrame, owned: set[tuple[str, int]]
    ) -> list[EarlyWarning]:
        """Feed a stored checkpoint's reports and requests; the revisions published."""
        if events.empty:
            return []
        reports = events[events["source"].isin(("inspector", "hotline"))]
        if reports.empty:
            return []
        await self.ensure(owned)
        assert self.lifecycle is not None
        verdicts: list[Verdict] = []
        ordered = reports.sort_values(["event_time", "src_topic", "src_partition", "src_offset"])
        for event_id, category, at_s, lon, lat, grid, caller, topic, part, offset in zip(
            ordered["event_id"],
            ordered["subcategory"],
            ordered["event_time"],
            ordered["lon"],
            ordered["lat"],
            ordered["grid_code"],
            ordered["caller_hash"],
            ordered["src_topic"],
            ordered["src_partition"],
            ordered["src_offset"],
            strict=True,
        ):
            tp = (topic, int(part))
            if int(offset) <= self.fed.get(tp, -1):
                continue  # redelivered: fed before
            self.fed[tp] = int(offset)
            verdicts += self._observe(
                event_id, category, int(at_s), float(lon), float(lat), grid, caller
            )
        self.stats["reports"] += len(reports)
        return await self._emit(self.lifecycle.observe_all(verdicts))

    async def tick(self, now: float, owned: set[tuple[str, int]]) -> list[EarlyWarning]:
        """Close clusters and age complaints up to the slowest owned report partition."""
        if not any(tp[0] in self.topics for tp in owned):
            return []
        await self.ensure(owned)
        assert self.lifecycle is not None
        progress = {(t, p): s for t, p, s, _ in self.progress(now)}
        known = [progress[tp] for tp in self.owned if tp in progress]
        if len(known) < len(self.owned):
            return []
        clock = datetime.fromtimestamp(now, UTC)
        watermark = datetime.fromtimestamp(min(known), UTC)
        verdicts = self.clusters.expire(clock, watermark) + self.repeats.expire(clock, watermark)
        return await self._emit(self.lifecycle.observe_all(verdicts))

    async def _emit(self, warnings: list[EarlyWarning]) -> list[EarlyWarning]:
        await self.outlet.emit(warnings)
        self.stats["published"] += len(warnings)
        return warnings

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.stats,
            "clusters": len(self.clusters.clusters),
            "firing": len(self.lifecycle.firing()) if self.lifecycle else 0,
        }
