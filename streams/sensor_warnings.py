"""Sensor rules in the worker: graded thresholds with hysteresis, rate of change, stuck values
and silent sensors, per sensor-topic partition this worker owns.

Contract:

- After a checkpoint is stored, its sensor readings are fed, partition by partition in
  consumption order, to that partition's ``SensorRules`` (``streams.detect.sensors``); their
  verdicts go through one lifecycle (``RULES_LIFECYCLE``: a rule clears once) and the new
  revisions are published and stored (``WarningOutlet``).
- Each detection tick fires ``sensor_silent`` for sensors without a reading for their kind's
  ``silent_after`` intervals before the partition's progress (now when caught up, else the
  newest stored record time): a backlog never raises a silent alarm.
- On gaining a partition, its rules are rebuilt by streaming the readings stored in the last
  ``history_span_s`` through them and the lifecycle (rebuilt from the latest stored revisions);
  revisions a crash lost between storing the readings and storing the warnings come out again
  (the same fingerprint × revision: consumers drop what they already have).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from core.settings import Settings
from core.warning import EarlyWarning, fingerprint
from sinks.base import Store
from streams.detect.config import ALERT_THRESHOLD, value_lifecycle, value_series
from streams.detect.lifecycle import WarningLifecycle
from streams.detect.seasonal import SeasonalDetector, SeriesState, verdicts
from streams.detect.sensors import RULES_LIFECYCLE, SensorRules, default_sensor_rules
from streams.detect.verdict import Verdict
from streams.warnings import WarningOutlet

log = logging.getLogger("gridpulse.sensors")

SENSOR_KINDS = (
    "sensor_threshold",
    "sensor_rate",
    "sensor_stuck",
    "sensor_silent",
)
VALUE_KINDS = ("sensor_anomaly", "level_shift")
"""The seasonal method's kinds on a sensor series (fingerprints carry the sensor id)."""
VALUE_HISTORY_S = 3 * 86_400
"""Readings a rebuild reads at least: the seasonal method's warm-up (2 days) and a margin."""
"""The warning kinds of the sensor rules (their fingerprints rebuild this lifecycle)."""


def catch_up(
    replayed: list[EarlyWarning],
    stored: Mapping[str, int],
    lifecycle: WarningLifecycle,
    cutoff: datetime | None,
) -> list[EarlyWarning]:
    """Which revisions a rebuild's replay must publish: those newer than anything stored
    (``cutoff``: the newest stored revision's time; a crash lost them), and, for a warning
    still firing after the replay but never published, its latest revision (a condition that
    began before this worker first ran). Revisions already stored are never repeated; past
    episodes that began and ended before the first run are not published."""
    out = []
    firing = lifecycle.firing()
    latest = {w.fingerprint: w.revision for w in replayed}
    for w in replayed:
        if w.revision <= stored.get(w.fingerprint, -1):
            continue
        if (
            cutoff is not None
            and w.updated_at > cutoff
            or w.fingerprint in firing
            and w.revision == latest[w.fingerprint]
        ):
            out.append(w)
    return out


class SensorWatch:
    """The sensor rules of the sensor-topic partitions one worker owns."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        outlet: WarningOutlet,
        progress: Callable[[float], list[tuple[str, int, int, bool]]],
    ) -> None:
        city = settings.city
        self.topic = settings.topics.sensor
        self.store = store
        self.outlet = outlet
        self.progress = progress
        self.config = default_sensor_rules()
        self.kind_of = {s.id: s.kind for s in city.sensors}
        paths = city.grid_paths
        self.labels: dict[str, Mapping[str, str]] = {}
        for sensor in city.sensors:
            path = paths.get(sensor.grid)
            if path is not None:
                self.labels[sensor.id] = {
                    "district": path.district,
                    "street": path.street,
                    "community": path.community,
                    "grid_code": sensor.grid,
                }
        self.rules: dict[int, SensorRules] = {}
        self.fed: dict[int, int] = {}  # partition -> last source offset fed to its rules
        self.lifecycle: WarningLifecycle | None = None
        # the seasonal method on each sensor's series (value mode), one detector per kind
        zone = city.timezone
        self.value_detectors = {
            kind: SeasonalDetector(value_series(), timedelta(seconds=k.expected_interval_s), zone)
            for kind, k in self.config.kinds.items()
        }
        self.values: dict[str, SeriesState] = {}
        self.value_lifecycle: WarningLifecycle | None = None
        self._value_fps: dict[str, tuple[str, ...]] = {}
        self.stats = {"readings": 0, "published": 0}

    def _label(self, sensor_id: str) -> Mapping[str, str]:
        return self.labels.get(sensor_id, {})

    async def _lifecycle(self) -> WarningLifecycle:
        if self.lifecycle is None:
            stored = await self.outlet.sink.retrying(
                "reading sensor warnings", self.store.latest_warnings
            )
            mine = [w for w in stored if w.kind in SENSOR_KINDS]
            self.lifecycle = WarningLifecycle.rebuild(mine, RULES_LIFECYCLE)
            values = [w for w in stored if w.kind in VALUE_KINDS and w.sensor_id]
            self.value_lifecycle = WarningLifecycle.rebuild(values, value_lifecycle())
        return self.lifecycle

    def _assess(self, sensor_id: str, kind: str, at: datetime, value: float) -> list[Verdict]:
        """The seasonal method's verdicts for one reading (none while quiet and not open)."""
        detector = self.value_detectors.get(kind)
        if detector is None:
            return []
        state = self.values.get(sensor_id)
        if state is None:
            state = self.values[sensor_id] = detector.new_state()
        assessment = detector.update(state, at, value)
        if assessment is None:
            return []
        labels = {**self._label(sensor_id), "sensor_id": sensor_id}
        if assessment.score < ALERT_THRESHOLD and not self._value_open(sensor_id, labels):
            return []
        return verdicts(detector, assessment, labels, name="seasonal_value")

    def _value_open(self, sensor_id: str, labels: Mapping[str, str]) -> bool:
        fps = self._value_fps.get(sensor_id)
        if fps is None:
            fps = self._value_fps[sensor_id] = tuple(fingerprint(k, labels) for k in VALUE_KINDS)
        tracks = self.value_lifecycle.tracks if self.value_lifecycle else {}
        return any(fp in tracks and tracks[fp].firing for fp in fps)

    async def _rules(self, partition: int) -> SensorRules:
        rules = self.rules.get(partition)
        if rules is not None:
            return rules
        lifecycle = await self._lifecycle()
        rules = SensorRules(self.config, self._label)
        since = int(time.time()) - max(int(rules.history_span_s()), VALUE_HISTORY_S)
        stored = await self.outlet.sink.retrying(
            f"reading the readings of {self.topic}[{partition}]",
            lambda: self.store.sensor_readings(self.topic, partition, since),
        )
        values = self.value_lifecycle
        assert values is not None
        before = {fp: t.revision for fp, t in lifecycle.tracks.items()}
        cutoff = max((t.published_at for t in lifecycle.tracks.values()), default=None)
        before_v = {fp: t.revision for fp, t in values.tracks.items()}
        cutoff_v = max((t.published_at for t in values.tracks.values()), default=None)
        replayed: list[EarlyWarning] = []
        replayed_v: list[EarlyWarning] = []
        fed = -1
        for sensor_id, at_s, value, event_id, offset in stored:
            fed = max(fed, offset)
            kind = self.kind_of.get(sensor_id)
            if kind is not None:
                at = datetime.fromtimestamp(at_s, UTC)
                replayed += lifecycle.observe_all(
                    rules.observe(sensor_id, kind, at, value, event_id)
                )
                replayed_v += values.observe_all(self._assess(sensor_id, kind, at, value))
        self.rules[partition] = rules
        self.fed[partition] = fed
        await self._emit(
            catch_up(replayed, before, lifecycle, cutoff)
            + catch_up(replayed_v, before_v, values, cutoff_v)
        )
        log.info(
            "sensors: rebuilt %s[%d] from %d stored readings (%d sensors)",
            self.topic,
            partition,
            len(stored),
            len(rules.sensors),
        )
        return rules

    async def on_stored(self, events: pd.DataFrame) -> list[EarlyWarning]:
        """Feed a stored checkpoint's sensor readings; the revisions published."""
        if events.empty:
            return []
        readings = events[events["source"] == "sensor"]
        if readings.empty:
            return []
        lifecycle = await self._lifecycle()
        found: list[Verdict] = []
        found_v: list[Verdict] = []
        for partition, part in readings.groupby("src_partition", sort=True):
            rules = await self._rules(int(partition))
            ordered = part[part["src_offset"] > self.fed.get(int(partition), -1)]
            ordered = ordered.sort_values(["src_offset", "src_index"], kind="stable")
            if not ordered.empty:
                self.fed[int(partition)] = int(ordered["src_offset"].iloc[-1])
            for sensor_id, at_s, value, event_id in zip(
                ordered["sensor_id"],
                ordered["event_time"],
                ordered["value"],
                ordered["event_id"],
                strict=True,
            ):
                kind = self.kind_of.get(sensor_id)
                if kind is not None:
                    at = datetime.fromtimestamp(int(at_s), UTC)
                    found += rules.observe(sensor_id, kind, at, float(value), event_id)
                    found_v += self._assess(sensor_id, kind, at, float(value))
            self.stats["readings"] += len(part)
        assert self.value_lifecycle is not None
        return await self._emit(
            lifecycle.observe_all(found) + self.value_lifecycle.observe_all(found_v)
        )

    async def tick(self, now: float) -> list[EarlyWarning]:
        """Silent sensors of every owned partition, up to that partition's progress."""
        if not self.rules:
            return []
        lifecycle = await self._lifecycle()
        progress = {part: p for topic, part, p, _ in self.progress(now) if topic == self.topic}
        due: list[Verdict] = []
        clock = datetime.fromtimestamp(now, UTC)
        for partition, rules in sorted(self.rules.items()):
            if partition in progress:
                watermark = datetime.fromtimestamp(progress[partition], UTC)
                due += rules.due_silent(clock, watermark)
        return await self._emit(lifecycle.observe_all(due))

    def revoke(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.rules.pop(partition, None)
            self.fed.pop(partition, None)

    async def _emit(self, warnings: list[EarlyWarning]) -> list[EarlyWarning]:
        await self.outlet.emit(warnings)
        self.stats["published"] += len(warnings)
        return warnings

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.stats,
            "partitions": sorted(self.rules),
            "sensors": sum(len(r.sensors) for r in self.rules.values()),
            "firing": len(self.lifecycle.firing()) if self.lifecycle else 0,
            "value_firing": len(self.value_lifecycle.firing()) if self.value_lifecycle else 0,
        }
