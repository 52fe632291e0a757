"""Case lifecycles: the staff's events after a report or request opens a case.

The worker derives each case's ``accept`` itself (case id ``H-<request_id>`` /
``I-<report_id>``); the simulator emits what follows (register, dispatch, acknowledge,
handle, sometimes a failed verification and a second handling, verify, close, and for the
hotline a follow-up with the caller's rating), keyed by case id, as each step falls due.
"""

from __future__ import annotations

import heapq

from core.city import UNLOCATED
from core.events import CaseEvent, HotlineRequest, SupervisorReport, encode
from core.types import CaseAction
from sources.simulator.sampling import pick
from sources.simulator.world import PendingEvent, SimEmission, World

CASE_UNITS = {
    "sanitation": "环卫中心",
    "facilities": "市政设施中心",
    "order": "城管执法大队",
    "disputes": "社区调解委员会",
    "safety": "消防救援站",
    "environment": "生态环境局",
}
"""The unit that handles each category's cases."""


class CaseLifecycles:
    """Plans each opened case's steps (random stream ``cases``) and emits them when due."""

    def __init__(self, world: World) -> None:
        self.w = world
        self._due: list[tuple[int, int, CaseEvent]] = []  # heap of (ms, seq, event)
        self._seq = 0

    def open(self, e: PendingEvent, msg: SupervisorReport | HotlineRequest, grid: str) -> None:
        """Plan the lifecycle of the case that ``msg`` (event ``e``, truth ``grid``) opens."""
        w = self.w
        cfg, rng = w.cfg, w.rng["cases"]
        hotline = e.stream == "hotline"
        case_id = f"H-{msg.request_id}" if hotline else f"I-{msg.report_id}"  # type: ignore[union-attr]
        steps: list[CaseAction] = ["register", "dispatch", "acknowledge", "handle"]
        if rng.random() < cfg.case_verify_fail:
            steps += ["verify_fail", "handle"]
        steps += ["verify_pass", "close"]
        if hotline:
            steps.append("follow_up")
        unit = CASE_UNITS.get(e.sub.split(".")[0], "街道综治中心")
        ms = e.ms
        gaps = rng.uniform(*cfg.case_step_minutes, len(steps)) * 60_000
        for action, gap in zip(steps, gaps.tolist(), strict=True):
            ms += int(gap)
            rating = pick(rng, cfg.case_ratings) if action == "follow_up" else None
            ev = CaseEvent(
                event_id=w.next_id("cev"),
                occurred_at=w.fmt.datetime(ms),
                case_id=case_id,
                action=action,
                grid=grid if grid != UNLOCATED else None,
                category=e.sub,
                unit=unit,
                actor="dispatcher-01",
                rating=rating,  # type: ignore[arg-type]
                note=f"{msg.event_id}",
            )
            self._seq += 1
            heapq.heappush(self._due, (ms, self._seq, ev))

    def emissions(self, t1: int) -> list[SimEmission]:
        """The case events due before ``t1`` (those after the run's end are dropped)."""
        w = self.w
        out = []
        delays = w.rng["cases"]
        while self._due and self._due[0][0] < t1:
            ms, _, ev = heapq.heappop(self._due)
            if ms >= w.t_end:
                continue
            delay = int(min(delays.exponential(w.cfg.delay_mean_s), w.cfg.delay_max_s) * 1000)
            out.append(
                SimEmission(
                    record_ts=w.fmt.datetime(ms + delay),
                    stream="case",
                    key=ev.case_id.encode(),
                    payload=encode(ev),
                    message=ev,
                    truth_grid=ev.grid,
                )
            )
        return out
