"""The early-warning wire model: what a detector says about a grid, category or sensor.

A warning is published on the warnings topic (``<prefix>.warnings``) and stored in ClickHouse.
An ongoing anomaly keeps one ``fingerprint`` from its first firing to its resolution: each
publication is a new *revision* of the same warning (``status`` firing → … → resolved), so
consumers (the alert stage, boards) update one record rather than collecting duplicates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

WARNING_SCHEMA_VERSION = 1

Severity = Literal["info", "minor", "major", "critical"]
"""Ordered from least to most urgent (``SEVERITY_RANK``)."""

SEVERITY_RANK: dict[str, int] = {"info": 0, "minor": 1, "major": 2, "critical": 3}

WarningKind = Literal[
    "count_spike",  # more events than expected for the time of week
    "count_drop",  # fewer than expected (a grid whose reports stop)
    "level_shift",  # a sustained change of level
    "sensor_threshold",  # a graded level crossed (with hysteresis)
    "sensor_rate",  # a value changing faster than allowed
    "sensor_stuck",  # the same value for too long
    "sensor_silent",  # no reading for N expected intervals
    "sensor_anomaly",  # the seasonal method on a sensor series
    "hotspot",  # the same category rising in adjacent grids
    "duplicate_cluster",  # many reports of one problem within a radius and time
    "repeat_complaint",  # the same caller or address complaining again within D days
    "patrol_gap",  # a grid without an inspector report for longer than its interval
    "backlog_spike",  # a handling unit's open cases rising abnormally
]

WarningStatus = Literal["firing", "resolved"]


def fingerprint(kind: str, key: Mapping[str, str]) -> str:
    """A stable id of one anomaly's subject: the kind plus the sorted key labels.

    The same (kind, key) always gives the same 16-hex-digit id, in every process and run.
    """
    text = kind + "\x1f" + "\x1f".join(f"{k}={key[k]}" for k in sorted(key))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class GridPath(BaseModel):
    """Where a warning is: any prefix of city → district → street → community → grid."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    district: str = ""
    street: str = ""
    community: str = ""
    grid_code: str = ""


class EarlyWarning(BaseModel):
    """One revision of a warning, as published on the warnings topic.

    ``revision`` counts publications of one fingerprint from 0; (fingerprint, revision) is
    unique, so a consumer that sees a revision twice (at-least-once delivery) can drop it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    type: Literal["warning"] = "warning"
    fingerprint: str
    revision: int = Field(ge=0)
    status: WarningStatus
    kind: WarningKind
    severity: Severity
    where: GridPath
    category: str = ""
    sensor_id: str = ""
    unit: str = ""  # handling unit (backlog warnings)
    window_start: AwareDatetime
    window_end: AwareDatetime
    observed: float
    expected: float
    score: float = Field(ge=0.0, le=1.0)
    detector: str
    params: dict[str, float | int | str] = Field(default_factory=dict)
    evidence: list[str] = Field(default_factory=list, max_length=100)
    summary: str = ""
    started_at: AwareDatetime
    updated_at: AwareDatetime
    resolved_at: datetime | None = None
