"""SLA timers: a priority queue of due instants with lazy invalidation.

A tick pops only the timers that are due, so its cost grows with the number of due timers
(O(k log n)), not with the number of open cases. A timer carries the *epoch* of the stage
clock it was scheduled against; any change to that clock (stage change, pause, resume,
extension) bumps the epoch, so stale timers are dropped when they surface instead of being
searched for and removed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Literal

TimerKind = Literal["warning", "breach", "escalation"]


@dataclass(order=True, frozen=True, slots=True)
class Timer:
    due: float  # epoch seconds
    case_id: str = field(compare=False)
    stage: str = field(compare=False)
    stage_seq: int = field(compare=False)  # which entry into the stage (rework re-enters)
    epoch: int = field(compare=False)  # the stage clock this was computed against
    kind: TimerKind = field(compare=False)
    level: int = field(compare=False)  # warning index (0, 1, …) or escalation level (1, 2, …)
    fraction: float = field(compare=False)  # of the allowed time, when it fires

    @property
    def alert_id(self) -> str:
        """Deterministic: the same warning/breach always gets the same id (dedup key)."""
        return self.id_of(self.case_id, self.stage, self.stage_seq, self.kind, self.level)

    @staticmethod
    def id_of(case_id: str, stage: str, stage_seq: int, kind: str, level: int) -> str:
        """The alert id of a timer, without computing its due time."""
        return f"{case_id}/{stage}#{stage_seq}/{kind}/{level}"


class TimerQueue:
    """Min-heap of timers by due time."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, timer: Timer) -> None:
        heapq.heappush(self._heap, timer)

    def extend(self, timers: list[Timer]) -> None:
        for t in timers:
            heapq.heappush(self._heap, t)

    def pop_due(self, now: float, limit: int | None = None) -> list[Timer]:
        """Timers with ``due <= now``, earliest first (at most ``limit``)."""
        out: list[Timer] = []
        heap = self._heap
        while heap and heap[0].due <= now and (limit is None or len(out) < limit):
            out.append(heapq.heappop(heap))
        return out

    def next_due(self) -> float | None:
        return self._heap[0].due if self._heap else None

    def drop_cases(self, case_ids: set[str]) -> None:
        """Forget the timers of cases this worker no longer owns (after a rebalance)."""
        self._heap = [t for t in self._heap if t.case_id not in case_ids]
        heapq.heapify(self._heap)
