"""The duty roster: which receiver is on call at a given time, on the city's working calendar."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from alerts.dispatch.config import RosterConfig

IsWorkingTime = Callable[[datetime], bool]
"""``is_working_time(t)``: whether ``t`` is inside office hours on the city's calendar."""


def on_call(
    target: str, rosters: Mapping[str, RosterConfig], now: datetime, is_working_time: IsWorkingTime
) -> str:
    """The receiver paged for ``target`` at ``now``: an override covering ``now``, else the
    roster's working or off-hours receiver; a plain receiver name is returned unchanged."""
    roster = rosters.get(target)
    if roster is None:
        return target
    for o in roster.overrides:
        if o.start <= now < o.end:
            return o.receiver
    return roster.working if is_working_time(now) else roster.off_hours
