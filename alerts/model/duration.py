"""Durations in configuration: ``"90s"``, ``"5m"``, ``"4h"``, ``"1d"``, ``"250ms"``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(v: Any) -> timedelta:
    """``"90s"``, ``"5m"``, ``"4h"``, ``"1d"``, ``"250ms"``, seconds as a number, or a timedelta."""
    if isinstance(v, timedelta):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return timedelta(seconds=v)
    if isinstance(v, str):
        m = _DURATION.match(v.strip())
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    raise ValueError(f"not a duration: {v!r} (use e.g. 30s, 5m, 4h, 1d)")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
