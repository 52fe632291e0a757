"""The cases one worker owns: lifecycle state, stage clocks, and SLA warnings/breaches.

Pure logic over ``streams.cases`` (the state machine), ``streams.calendar`` (deadline
arithmetic) and ``streams.timers`` (the due queue). The agent feeds events in and ticks the
clock; this module says what changed and which alerts are due. Times are measured in the
limit's own unit: natural seconds, or seconds of the working clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.calendar_config import WorkingCalendar
from core.events import SlaAlert
from core.sla_config import Limit, SlaPolicy
from streams import calendar as wcal
from streams.cases import (
    Applied,
    CaseInput,
    CaseState,
    Clock,
    Illegal,
    Rebuilt,
    admit,
    apply,
    clock,
    event_key,
    shifting_pauses,
)
from streams.timers import Timer, TimerQueue

BREACH_LEVEL = 0


def measure(cal: WorkingCalendar, unit: str, t: datetime) -> float:
    """An instant on the unit's clock: epoch seconds, or working-clock seconds."""
    return t.timestamp() if unit == "natural_hours" else wcal.to_working_clock(cal, t)


def instant(cal: WorkingCalendar, unit: str, m: float) -> datetime:
    if unit == "natural_hours":
        return datetime.fromtimestamp(m, UTC)
    return wcal.from_working_clock(cal, m)


@dataclass(frozen=True, slots=True)
class StageClock:
    """A running stage limit resolved to instants: ``base`` + fraction x ``allowed``."""

    stage: str
    unit: str
    base: float  # start on the unit's clock, pushed later by the stage's pauses
    allowed: float  # the limit on the unit's clock
    started_at: datetime

    def at_fraction(self, cal: WorkingCalendar, f: float) -> datetime:
        return instant(cal, self.unit, self.base + f * self.allowed)

    def deadline(self, cal: WorkingCalendar) -> datetime:
        return self.at_fraction(cal, 1.0)


def resolve(
    c: Clock, category: str | None, urgent: bool, policy: SlaPolicy, cal: WorkingCalendar
) -> StageClock | None:
    """The stage clock with its limit and pauses. A policy limit runs on its own unit's
    clock (working or natural time); an approved extension is an instant — the stage is due
    exactly then, later only by the natural time of pauses after the approval."""
    limit: Limit | None = policy.limit_for(category or "", c.stage, urgent)
    if c.deadline is not None:
        unit = "natural_hours"
    elif limit is not None:
        unit = limit.unit
    else:
        return None
    start = measure(cal, unit, c.started_at)
    paused = sum(measure(cal, unit, e) - measure(cal, unit, s) for s, e in shifting_pauses(c))
    if c.deadline is not None:
        allowed = measure(cal, unit, c.deadline) - start
    else:
        assert limit is not None
        allowed = wcal.limit_seconds(cal, limit.amount, limit.unit)
    return StageClock(c.stage, unit, start + paused, allowed, c.started_at)


def iter_stage_timers(
    state: CaseState,
    sc: StageClock,
    policy: SlaPolicy,
    cal: WorkingCalendar,
    fired: set[str],
) -> Iterator[Timer]:
    """The unfired warnings at each configured fraction, the breach and the first escalation,
    computed lazily and in order of due time (fractions rise, the breach is at 1.0, the
    escalation after it): the next timer of a clock costs one calendar conversion."""
    seq = state.stage_seq
    for i, f in enumerate(policy.warn_at):
        if Timer.id_of(state.case_id, sc.stage, seq, "warning", i + 1) not in fired:
            yield Timer(
                sc.at_fraction(cal, f).timestamp(),
                state.case_id,
                sc.stage,
                seq,
                state.version,
                "warning",
                i + 1,
                f,
            )
    if Timer.id_of(state.case_id, sc.stage, seq, "breach", BREACH_LEVEL) not in fired:
        yield Timer(
            sc.deadline(cal).timestamp(),
            state.case_id,
            sc.stage,
            seq,
            state.version,
            "breach",
            BREACH_LEVEL,
            1.0,
        )
    if Timer.id_of(state.case_id, sc.stage, seq, "escalation", 1) not in fired:
        yield escalation(state, sc, policy, cal, 1)


def escalation(
    state: CaseState, sc: StageClock, policy: SlaPolicy, cal: WorkingCalendar, level: int
) -> Timer:
    """Escalation ``level`` falls ``level`` x ``escalation_every`` after the deadline."""
    esc = policy.escalation_every
    due_m = measure(cal, esc.unit, sc.deadline(cal)) + level * wcal.limit_seconds(
        cal, esc.amount, esc.unit
    )
    due = instant(cal, esc.unit, due_m)
    overdue = sc.allowed and (measure(cal, sc.unit, due) - sc.base) / sc.allowed
    return Timer(
        due.timestamp(),
        state.case_id,
        sc.stage,
        state.stage_seq,
        state.version,
        "escalation",
        level,
        float(overdue or 0.0),
    )


@dataclass
class Outcome:
    """What admitting one event did, for the ``case_events`` row."""

    outcome: str  # applied | illegal | duplicate
    code: str = ""
    reason: str = ""
    stage_after: str = ""


@dataclass
class CaseBook:
    """State, history and timers of the cases of the partitions this worker owns."""

    policy: SlaPolicy
    cal: WorkingCalendar
    states: dict[str, CaseState] = field(default_factory=dict)
    history: dict[str, list[CaseInput]] = field(default_factory=dict)
    late_stages: dict[str, set[str]] = field(default_factory=dict)
    fired: set[str] = field(default_factory=set)
    queue: TimerQueue = field(default_factory=TimerQueue)
    changed: set[str] = field(default_factory=set)
    # alerts of stages that ended after their due time before a tick saw them
    retro: list[tuple[Timer, CaseState, StageClock]] = field(default_factory=list)

    # ---- lifecycle ------------------------------------------------------------------
    def admit(self, ev: CaseInput) -> Outcome:
        cid = ev.case_id
        state = self.states.get(cid)
        history = self.history.setdefault(cid, [])
        result = admit(state, history, ev)
        if isinstance(result, Illegal):
            if result.code == "duplicate_event":
                return Outcome("duplicate", result.code, result.reason)
            history.append(ev)
            return Outcome("illegal", result.code, result.reason, state.stage if state else "")
        history.append(ev)
        if isinstance(result, Rebuilt):
            self._rebuild_case(cid)
        else:
            self._applied(cid, result, state)
        new = self.states.get(cid)
        return Outcome("applied", stage_after=new.stage if new else "")

    def _applied(self, cid: str, result: Applied, before: CaseState | None) -> None:
        self.states[cid] = result.state
        change = result.timer
        if change is not None and change.ended is not None and before is not None:
            self._end_clock(before, change.ended, change.at)
        self.changed.add(cid)
        self._schedule(result.state)

    def _end_clock(self, before: CaseState, ended: Clock, at: datetime) -> None:
        """A stage ended at ``at``: was it late, and which of its alerts were due by then
        but not fired yet (the worker was down or behind)? Those fire now, once."""
        sc = resolve(ended, before.category, before.urgent, self.policy, self.cal)
        if sc is None:
            return
        if at > sc.deadline(self.cal):
            self.late_stages.setdefault(before.case_id, set()).add(ended.stage)
        end = at.timestamp()
        for t in iter_stage_timers(before, sc, self.policy, self.cal, self.fired):
            if t.due > end:
                break  # in due order: the rest are later still
            self.fired.add(t.alert_id)
            self.retro.append((t, before, sc))

    def _rebuild_case(self, cid: str) -> None:
        """Fold the case's history in event-time order (late events, rebuilds)."""
        self.late_stages.pop(cid, None)
        self.states.pop(cid, None)
        state: CaseState | None = None
        for ev in sorted(self.history[cid], key=event_key):
            result = apply(state, ev)
            if isinstance(result, Applied):
                before, state = state, result.state
                change = result.timer
                if change is not None and change.ended is not None and before is not None:
                    self._end_clock(before, change.ended, change.at)
        if state is not None:
            self.states[cid] = state
            self._schedule(state)
        self.changed.add(cid)

    def load(self, events: Iterable[CaseInput], fired: Iterable[str]) -> int:
        """Rebuild owned cases from their stored histories (after start or a rebalance)."""
        self.fired.update(fired)
        touched: set[str] = set()
        for ev in events:
            self.history.setdefault(ev.case_id, []).append(ev)
            touched.add(ev.case_id)
        for cid in touched:
            self._rebuild_case(cid)
        return len(touched)

    def forget(self, case_ids: set[str]) -> None:
        for cid in case_ids:
            self.states.pop(cid, None)
            self.history.pop(cid, None)
            self.late_stages.pop(cid, None)
        self.queue.drop_cases(case_ids)

    # ---- clocks -----------------------------------------------------------------------
    def stage_clock(self, state: CaseState) -> StageClock | None:
        c = clock(state)
        if c is None or state.paused:
            return None
        return resolve(c, state.category, state.urgent, self.policy, self.cal)

    def _schedule(self, state: CaseState, sc: StageClock | None = None) -> None:
        """Queue only the case's next unfired warning/breach/first escalation: one heap
        entry per running clock keeps the heap (and memory) proportional to open cases;
        firing one schedules the next."""
        sc = sc or self.stage_clock(state)
        if sc is not None:
            first = next(iter_stage_timers(state, sc, self.policy, self.cal, self.fired), None)
            if first is not None:
                self.queue.push(first)

    def tick(
        self,
        now: float,
        limit: int | None = None,
        clock_of: Callable[[str], float] | None = None,
        horizon: float | None = None,
    ) -> list[tuple[Timer, CaseState, StageClock]]:
        """Due timers that still match their case's clock; each fires once.

        ``clock_of(case_id)`` is how far the case's events are known to be complete: a timer
        waits until then, so a backlog of unread events cannot cause a false breach.
        ``horizon`` (at most ``now``) is the furthest any case's clock has reached: timers
        after it stay queued instead of being popped and pushed back on every tick."""
        out, self.retro = self.retro, []
        waiting = []
        upto = now if horizon is None else min(now, horizon)
        for t in self.queue.pop_due(upto, limit):
            state = self.states.get(t.case_id)
            if state is None or state.version != t.epoch or t.alert_id in self.fired:
                continue
            if clock_of is not None and t.due > clock_of(t.case_id):
                waiting.append(t)
                continue
            sc = self.stage_clock(state)
            if sc is None:
                continue
            if t.kind == "escalation":
                # a backlog (e.g. after an outage) jumps to the level ``now`` has reached
                level = t.level
                while level < self.policy.max_escalation_level and (
                    escalation(state, sc, self.policy, self.cal, level + 1).due <= now
                ):
                    level += 1
                if level != t.level:
                    t = escalation(state, sc, self.policy, self.cal, level)
                if level < self.policy.max_escalation_level:
                    self.queue.push(escalation(state, sc, self.policy, self.cal, level + 1))
            self.fired.add(t.alert_id)
            out.append((t, state, sc))
            if t.kind != "escalation":
                self._schedule(state, sc)  # the clock's next warning, breach or escalation
        self.queue.extend(waiting)
        return out

    def alert(self, t: Timer, state: CaseState, sc: StageClock, fired_at: float) -> SlaAlert:
        return SlaAlert(
            alert_id=t.alert_id,
            kind=t.kind,
            level=t.level,
            fraction=t.fraction,
            case_id=t.case_id,
            stage=t.stage,
            stage_seq=t.stage_seq,
            due_at=datetime.fromtimestamp(t.due, UTC),
            fired_at=datetime.fromtimestamp(fired_at, UTC),
            deadline=sc.deadline(self.cal),
            stage_started_at=sc.started_at,
            grid=state.grid or "",
            category=state.category or "",
            unit=state.unit or "",
            urgent=state.urgent,
            source=state.source,
        )
