"""What a detector says about one key in one window: the input of the warning lifecycle.

Every detector (counts, sensors, hotspots, patrol gaps, backlog) emits ``Verdict``s; the
lifecycle (``streams.detect.lifecycle``) turns a fingerprint's verdicts into warning
revisions. A verdict with ``severity=None`` is a *quiet* verdict: the key was evaluated for
that window and nothing is wrong (it counts towards resolving an open warning).

Key labels name the subject. The labels ``district``, ``street``, ``community`` and
``grid_code`` become the warning's ``GridPath``; ``category``, ``sensor_id`` and ``unit``
become the fields of the same name; any other label only enters the fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from core.warning import Severity, WarningKind, fingerprint

GRID_PATH_LABELS: tuple[str, ...] = ("district", "street", "community", "grid_code")
SUBJECT_LABELS: tuple[str, ...] = ("category", "sensor_id", "unit")


@dataclass(frozen=True, slots=True)
class Verdict:
    """One detector's judgement of one key over ``[window_start, window_end)``.

    ``score`` is in 0..1 (1 = certainly anomalous); ``severity`` is None for a quiet verdict.
    ``params`` are the detector parameters that produced it (copied into the warning);
    ``evidence`` are ids (events, cases, readings) that support it, most relevant first.
    """

    kind: WarningKind
    key: Mapping[str, str]
    severity: Severity | None
    observed: float
    expected: float
    score: float
    window_start: datetime
    window_end: datetime
    detector: str
    params: Mapping[str, float | int | str] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()
    summary: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score {self.score} is outside 0..1")
        if self.window_end < self.window_start:
            raise ValueError("window_end is before window_start")

    @property
    def is_anomaly(self) -> bool:
        """True when the verdict asks for a warning (it has a severity)."""
        return self.severity is not None

    @property
    def fingerprint(self) -> str:
        """The warning fingerprint of this verdict's subject (``core.warning.fingerprint``)."""
        return fingerprint(self.kind, self.key)
