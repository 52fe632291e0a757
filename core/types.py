"""Small validated types and the domain vocabulary shared by every package: code patterns,
time zones, and the names of case stages, actions and ratings."""

from __future__ import annotations

from typing import Annotated, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator


def known_zone(name: str) -> str:
    """An IANA time-zone name this machine knows (e.g. Asia/Shanghai)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


TimeZoneName = Annotated[str, AfterValidator(known_zone)]


CODE_PATTERN = r"^[A-Za-z0-9_.\-]+$"
"""What a grid, category, sensor-kind or other code may contain (wire models, city file)."""
CODE_MAX = 64

Stage = Literal[
    "accepted",
    "registered",
    "rejected",
    "dispatched",
    "acknowledged",
    "handled",
    "verified",
    "closed",
    "voided",
]
"""Where a case stands (受理 立案 不予立案 派遣 签收 处置 核查 结案 作废)."""

TimedStage = Literal["register", "dispatch", "acknowledge", "handle", "verify", "close"]
"""The stages an SLA policy limits: each names the step a case waits for."""

Rating = Literal["satisfied", "basically_satisfied", "dissatisfied"]

CaseAction = Literal[
    "accept",
    "register",
    "reject",
    "dispatch",
    "acknowledge",
    "handle",
    "verify_pass",
    "verify_fail",
    "close",
    "extend",
    "pause",
    "resume",
    "void",
    "force_close",
    "follow_up",
]

STAGES: tuple[Stage, ...] = get_args(Stage)
TIMED_STAGES: tuple[TimedStage, ...] = get_args(TimedStage)
ACTIONS: tuple[CaseAction, ...] = get_args(CaseAction)
