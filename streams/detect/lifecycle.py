"""The warning lifecycle: per-fingerprint verdicts in, exactly-once warning revisions out.

A pure state machine (no clock, no I/O): times are the verdicts' window ends, so replaying the
same verdicts gives the same revisions, byte for byte. Per fingerprint:

* quiet, anomalous verdict → **fire**: a ``firing`` revision (0 for the first episode ever;
  a later episode of the same fingerprint continues the numbering so (fingerprint, revision)
  stays unique; ``started_at`` tells episodes apart);
* firing, anomalous verdict → **update** only when the severity changes or ``update_cadence``
  has passed since the last revision;
* firing, ``resolve_after_quiet`` consecutive quiet verdicts, the last at least ``min_quiet``
  after the latest anomalous one → **resolve** (a ``resolved`` revision with ``resolved_at``);
* a verdict whose window ends at or before the latest one seen for its fingerprint is
  ignored (redelivery).

``WarningLifecycle.rebuild`` restores the machine from the stored revisions (the latest
revision per fingerprint): a firing warning stays open (its quiet run starts again from 0),
a resolved one is not resolved twice, and windows already published are not published again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from core.warning import EarlyWarning, GridPath, Severity
from streams.detect.config import LifecycleConfig
from streams.detect.verdict import GRID_PATH_LABELS, Verdict


@dataclass(frozen=True, slots=True)
class Track:
    """What the lifecycle remembers of one fingerprint (small: no warning body)."""

    revision: int
    firing: bool
    severity: Severity
    started_at: datetime
    published_at: datetime
    seen_until: datetime
    last_anomaly: datetime
    quiet: int = 0


def warning_of(
    verdict: Verdict,
    revision: int,
    severity: Severity,
    started_at: datetime,
    resolved: bool,
    config: LifecycleConfig,
) -> EarlyWarning:
    """The warning revision a verdict publishes (pure)."""
    key = verdict.key
    where = GridPath(**{label: key[label] for label in GRID_PATH_LABELS if label in key})
    return EarlyWarning(
        fingerprint=verdict.fingerprint,
        revision=revision,
        status="resolved" if resolved else "firing",
        kind=verdict.kind,
        severity=severity,
        where=where,
        category=key.get("category", ""),
        sensor_id=key.get("sensor_id", ""),
        unit=key.get("unit", ""),
        window_start=verdict.window_start,
        window_end=verdict.window_end,
        observed=verdict.observed,
        expected=verdict.expected,
        score=verdict.score,
        detector=verdict.detector,
        params=dict(verdict.params),
        evidence=list(verdict.evidence[: config.max_evidence]),
        summary=verdict.summary,
        started_at=started_at,
        updated_at=verdict.window_end,
        resolved_at=verdict.window_end if resolved else None,
    )


def step(
    track: Track | None, verdict: Verdict, config: LifecycleConfig
) -> tuple[Track | None, EarlyWarning | None]:
    """One transition: the fingerprint's next track and the revision to publish, if any."""
    end = verdict.window_end
    if track is not None and end <= track.seen_until:
        return track, None
    severity = verdict.severity
    if track is None or not track.firing:
        if severity is None:
            return (replace(track, seen_until=end) if track else None), None
        revision = 0 if track is None else track.revision + 1
        start = verdict.window_start
        warning = warning_of(verdict, revision, severity, start, False, config)
        return Track(revision, True, severity, start, end, end, end), warning
    if severity is None:
        quiet = track.quiet + 1
        calm = end - track.last_anomaly >= config.min_quiet
        if quiet < config.resolve_after_quiet or not calm:
            return replace(track, quiet=quiet, seen_until=end), None
        revision = track.revision + 1
        warning = warning_of(verdict, revision, track.severity, track.started_at, True, config)
        resolved = Track(revision, False, track.severity, track.started_at, end, end, end)
        return resolved, warning
    due = end - track.published_at >= config.update_cadence
    if severity == track.severity and not due:
        return replace(track, quiet=0, seen_until=end, last_anomaly=end), None
    revision = track.revision + 1
    warning = warning_of(verdict, revision, severity, track.started_at, False, config)
    return Track(revision, True, severity, track.started_at, end, end, end), warning


class WarningLifecycle:
    """The lifecycle of every fingerprint one worker owns (a dict of ``Track``s)."""

    def __init__(self, config: LifecycleConfig | None = None) -> None:
        self.config = config or LifecycleConfig()
        self.tracks: dict[str, Track] = {}

    def observe(self, verdict: Verdict) -> EarlyWarning | None:
        """Apply one verdict; the revision to publish and store, or None."""
        fp = verdict.fingerprint
        track, warning = step(self.tracks.get(fp), verdict, self.config)
        if track is not None:
            self.tracks[fp] = track
        return warning

    def observe_all(self, verdicts: Iterable[Verdict]) -> list[EarlyWarning]:
        """Apply verdicts in order; the revisions to publish."""
        out = []
        for verdict in verdicts:
            warning = self.observe(verdict)
            if warning is not None:
                out.append(warning)
        return out

    def firing(self) -> dict[str, Track]:
        """The open warnings: fingerprint → track."""
        return {fp: t for fp, t in self.tracks.items() if t.firing}

    def replay_from(self) -> datetime | None:
        """Where a restarted worker must replay buckets from: the oldest open warning's last
        publication (None when nothing is open). Verdicts of earlier windows change nothing
        here; later ones restore the quiet runs lost in the restart."""
        ends = [t.seen_until for t in self.tracks.values() if t.firing]
        return min(ends) if ends else None

    @classmethod
    def rebuild(
        cls, warnings: Iterable[EarlyWarning], config: LifecycleConfig | None = None
    ) -> WarningLifecycle:
        """The lifecycle as it stood after publishing ``warnings`` (any order, duplicates ok)."""
        latest: dict[str, EarlyWarning] = {}
        for w in warnings:
            seen = latest.get(w.fingerprint)
            if seen is None or w.revision > seen.revision:
                latest[w.fingerprint] = w
        machine = cls(config)
        for fp, w in latest.items():
            machine.tracks[fp] = Track(
                revision=w.revision,
                firing=w.status == "firing",
                severity=w.severity,
                started_at=w.started_at,
                published_at=w.updated_at,
                seen_until=w.updated_at,
                last_anomaly=w.updated_at,
            )
        return machine
