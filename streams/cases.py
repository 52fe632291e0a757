"""The case lifecycle of digital urban management (数字城管, GB/T 30428): a pure state machine.

Stages as the national standard's systems run them::

    受理 accepted -> 立案 registered -> 派遣 dispatched -> 签收 acknowledged -> 处置 handled
        -> 核查 verified -> 结案 closed
    accepted -> 不予立案 rejected          (terminal)
    handled  -> 返工 (verify_fail) -> acknowledged, the handling clock restarts
    any open stage -> 作废 voided | 强制结案 closed (forced)   (terminal)

plus 延期 ``extend`` (an approved new deadline for the running stage), 缓办/挂起 ``pause`` /
``resume`` (the clock stops; no nesting) and 回访 ``follow_up`` (a hotline case's satisfaction
rating, once, after close).

``apply`` folds one ``CaseInput`` into a ``CaseState`` and says either how the state moved
(``Applied``, with the stage timer that started/stopped) or why it could not (``Illegal``, a
stable reason code). Events must be applied in event-time order: ``apply`` refuses one that
sorts before the last applied event (``out_of_order``), and the caller rebuilds the case with
``replay`` over its full event list. ``admit`` does that bookkeeping for a caller that keeps
each case's received events: it also rebuilds when an event arrives after a later one that
was refused for arriving too early. Nothing here does I/O or reads the clock.

Deadlines: a stage's time limit comes from the SLA policy (``core.sla_config``) and runs
from ``stage_started_at`` on the city's working calendar, pushed back by the stage's pauses.
``stage_deadline`` is only set by an approved extension and then overrides the policy; pauses
after the approval (``deadline_set_at``) still push it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import TypeAdapter

from core.events import CaseEvent
from core.types import CaseAction, Rating, Stage, TimedStage

Pause = tuple[datetime, datetime]

TERMINAL: frozenset[Stage] = frozenset({"rejected", "closed", "voided"})

HOTLINE = "hotline"
"""The source whose cases get a 回访 follow-up call."""

DEFAULT_SOURCE = "other"

TIMER_OF: dict[Stage, TimedStage] = {
    "accepted": "register",
    "registered": "dispatch",
    "dispatched": "acknowledge",
    "acknowledged": "handle",
    "handled": "verify",
    "verified": "close",
}
"""The stage limit that runs while a case sits in a stage: the time to reach the next one."""

ADVANCES: dict[CaseAction, tuple[Stage, Stage]] = {
    "register": ("accepted", "registered"),
    "reject": ("accepted", "rejected"),
    "dispatch": ("registered", "dispatched"),
    "acknowledge": ("dispatched", "acknowledged"),
    "handle": ("acknowledged", "handled"),
    "verify_pass": ("handled", "verified"),
    "verify_fail": ("handled", "acknowledged"),
    "close": ("verified", "closed"),
}
"""Stage-moving actions: (the only stage they are legal from, the stage they lead to)."""

LIFECYCLE_ORDER: tuple[CaseAction, ...] = (
    "accept",
    "resume",
    "register",
    "reject",
    "dispatch",
    "acknowledge",
    "handle",
    "verify_fail",
    "verify_pass",
    "close",
    "extend",
    "pause",
    "force_close",
    "void",
    "follow_up",
)
"""Tie-break for events with the same time: resume before acting, pause/extend after."""

_RANK: dict[str, int] = {a: i for i, a in enumerate(LIFECYCLE_ORDER)}
_MAIN_LINE: tuple[Stage, ...] = (
    "accepted",
    "registered",
    "dispatched",
    "acknowledged",
    "handled",
    "verified",
    "closed",
)
_PROGRESS: dict[Stage, int] = {s: i for i, s in enumerate(_MAIN_LINE)}

# reason codes of Illegal
UNKNOWN_CASE = "unknown_case"
DUPLICATE_CASE = "duplicate_case"
DUPLICATE_EVENT = "duplicate_event"
CASE_MISMATCH = "case_mismatch"
OUT_OF_ORDER = "out_of_order"
CASE_CLOSED = "case_closed"
CASE_REJECTED = "case_rejected"
CASE_VOIDED = "case_voided"
PAUSED = "paused"
ALREADY_PAUSED = "already_paused"
NOT_PAUSED = "not_paused"
STAGE_NOT_REACHED = "stage_not_reached"
STAGE_PASSED = "stage_passed"
MISSING_DEADLINE = "missing_deadline"
DEADLINE_NOT_AFTER_EVENT = "deadline_not_after_event"
MISSING_RATING = "missing_rating"
NOT_HOTLINE = "not_hotline"
ALREADY_FOLLOWED_UP = "already_followed_up"

_TERMINAL_CODE: dict[Stage, str] = {
    "closed": CASE_CLOSED,
    "rejected": CASE_REJECTED,
    "voided": CASE_VOIDED,
}


def _aware(name: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True, slots=True)
class CaseInput:
    """One lifecycle event, from a ``CaseEvent`` or an opening report/request (``accept``).

    ``None`` fields leave the case as it is; ``source``/``urgent`` are read on ``accept``
    (``urgent`` may also be raised later, e.g. on ``register``). ``event_id`` breaks ties of
    events with the same time and action and detects redeliveries; give it when known.
    """

    case_id: str
    action: CaseAction
    at: datetime
    grid: str | None = None
    category: str | None = None
    unit: str | None = None
    deadline: datetime | None = None
    rating: Rating | None = None
    source: str | None = None
    urgent: bool | None = None
    event_id: str = ""

    def __post_init__(self) -> None:
        _aware("at", self.at)
        _aware("deadline", self.deadline)


def from_case_event(
    ev: CaseEvent, *, source: str | None = None, urgent: bool | None = None
) -> CaseInput:
    """The lifecycle input of a wire ``CaseEvent`` (which carries no source or urgency)."""
    return CaseInput(
        case_id=ev.case_id,
        action=ev.action,
        at=ev.occurred_at,
        grid=ev.grid,
        category=ev.category,
        unit=ev.unit,
        deadline=ev.deadline,
        rating=ev.rating,
        source=source,
        urgent=urgent,
        event_id=ev.event_id,
    )


def event_key(ev: CaseInput) -> tuple[datetime, int, str]:
    """Event-time order of a case's events: time, then lifecycle order, then event id."""
    return (ev.at, _RANK[ev.action], ev.event_id)


@dataclass(frozen=True, slots=True)
class StageTimes:
    """When the case first reached each stage (KPI durations); rework does not move them."""

    register_at: datetime | None = None
    dispatch_at: datetime | None = None
    acknowledge_at: datetime | None = None
    handle_at: datetime | None = None
    verify_at: datetime | None = None
    close_at: datetime | None = None


_TIMES_FIELD: dict[Stage, str] = {
    "registered": "register_at",
    "dispatched": "dispatch_at",
    "acknowledged": "acknowledge_at",
    "handled": "handle_at",
    "verified": "verify_at",
    "closed": "close_at",
}


@dataclass(frozen=True, slots=True)
class CaseState:
    """A case after ``version`` applied events. ``stage_*`` and pause fields describe the
    current stage only and reset on every stage change (including a rework)."""

    case_id: str
    source: str
    grid: str | None
    category: str | None
    unit: str | None
    urgent: bool
    stage: Stage
    opened_at: datetime
    stage_started_at: datetime
    stage_deadline: datetime | None = None
    deadline_set_at: datetime | None = None
    paused_since: datetime | None = None
    paused_seconds_in_stage: float = 0.0
    pauses: tuple[Pause, ...] = ()
    rework_count: int = 0
    extension_count: int = 0
    forced: bool = False
    voided: bool = False
    closed_at: datetime | None = None
    rating: Rating | None = None
    follow_up_at: datetime | None = None
    timestamps: StageTimes = field(default_factory=StageTimes)
    version: int = 0
    last_event_at: datetime | None = None
    last_action: CaseAction | None = None
    last_event_id: str = ""

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    @property
    def stage_seq(self) -> int:
        """Which entry into the current stage this is: only a rework re-enters a stage."""
        return self.rework_count if self.stage == "acknowledged" else 0

    @property
    def last_key(self) -> tuple[datetime, int, str] | None:
        if self.last_event_at is None or self.last_action is None:
            return None
        return (self.last_event_at, _RANK[self.last_action], self.last_event_id)


@dataclass(frozen=True, slots=True)
class Clock:
    """One stage timer: what SLA evaluation needs to compute its due time and breach.

    ``deadline`` is an approved extension (overrides the policy limit), ``deadline_set_at``
    when it was approved. ``pauses`` are closed pauses of the stage; ``paused_since`` an open one.
    """

    stage: TimedStage
    started_at: datetime
    deadline: datetime | None
    deadline_set_at: datetime | None
    pauses: tuple[Pause, ...]
    paused_since: datetime | None


TimerChangeKind = Literal["start", "stop", "pause", "resume", "extend"]


@dataclass(frozen=True, slots=True)
class TimerChange:
    """How an applied event moved the stage timers.

    - ``start``: timer ``stage`` starts at ``at``; ``ended`` is the timer it replaces (met at
      ``at``), None when the case opens. A rework starts ``handle`` again.
    - ``stop``: the case ended (close, force_close, reject, void); ``ended`` is the last timer.
    - ``pause`` / ``resume``: timer ``stage`` stops / runs again at ``at`` (it is not restarted).
    - ``extend``: timer ``stage`` now has the approved deadline ``CaseState.stage_deadline``.
    """

    kind: TimerChangeKind
    stage: TimedStage
    at: datetime
    ended: Clock | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    state: CaseState
    timer: TimerChange | None


@dataclass(frozen=True, slots=True)
class Illegal:
    """Why ``event`` cannot be applied. ``code`` is stable (for counting), ``reason`` readable."""

    code: str
    reason: str
    event: CaseInput

    @property
    def needs_replay(self) -> bool:
        """The event is late but may be valid: rebuild the case by ``replay`` with it."""
        return self.code == OUT_OF_ORDER


Transition = Applied | Illegal


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """The case replayed from its full history: its state, and the illegal events of that
    history, which replace everything reported for the case before. Timers, warnings and
    breaches of the case must be re-derived from ``state``."""

    state: CaseState | None
    illegal: list[Illegal]


def timed_stage(state: CaseState) -> TimedStage | None:
    """The stage whose limit is running now; None when the case ended or is paused."""
    if state.paused:
        return None
    return TIMER_OF.get(state.stage)


def clock(state: CaseState) -> Clock | None:
    """The current stage's timer (also while paused); None once the case ended."""
    stage = TIMER_OF.get(state.stage)
    if stage is None:
        return None
    return Clock(
        stage=stage,
        started_at=state.stage_started_at,
        deadline=state.stage_deadline,
        deadline_set_at=state.deadline_set_at,
        pauses=state.pauses,
        paused_since=state.paused_since,
    )


def shifting_pauses(c: Clock) -> tuple[Pause, ...]:
    """The closed pauses that push the clock's due time back.

    For a policy limit that is every pause of the stage; for an approved deadline only the
    parts of pauses after the approval, since the approver already saw the earlier ones.
    """
    if c.deadline is None or c.deadline_set_at is None:
        return c.pauses
    cut = c.deadline_set_at
    return tuple((max(start, cut), end) for start, end in c.pauses if end > cut)


def allowed_actions(state: CaseState | None) -> frozenset[CaseAction]:
    """The actions ``apply`` would accept now, ignoring event time and payload checks."""
    if state is None:
        return frozenset({"accept"})
    if state.stage == "closed":
        ok = state.source == HOTLINE and state.follow_up_at is None
        return frozenset({"follow_up"}) if ok else frozenset()
    if state.terminal:
        return frozenset()
    if state.paused:
        return frozenset({"resume", "extend", "void", "force_close"})
    moves = {a for a, (src, _) in ADVANCES.items() if src == state.stage}
    return frozenset(moves | {"pause", "extend", "void", "force_close"})


def apply(state: CaseState | None, ev: CaseInput) -> Transition:
    """Fold one event into a case: the new state and timer change, or why it is illegal."""
    if state is None:
        if ev.action != "accept":
            return Illegal(UNKNOWN_CASE, f"{ev.action} for unknown case {ev.case_id!r}", ev)
        return _open(ev)
    if ev.case_id != state.case_id:
        return Illegal(CASE_MISMATCH, f"event of case {ev.case_id!r} on {state.case_id!r}", ev)
    if ev.event_id and ev.event_id == state.last_event_id:
        return Illegal(DUPLICATE_EVENT, f"event {ev.event_id!r} already applied", ev)
    if ev.action == "accept":
        return Illegal(DUPLICATE_CASE, f"case {state.case_id!r} was already accepted", ev)
    last = state.last_key
    if last is not None and event_key(ev) < last:
        return Illegal(
            OUT_OF_ORDER,
            f"{ev.action} at {ev.at.isoformat()} sorts before the last applied event "
            f"({state.last_action} at {last[0].isoformat()}); replay the case",
            ev,
        )
    if ev.action == "follow_up":
        return _follow_up(state, ev)
    if state.terminal:
        return Illegal(_TERMINAL_CODE[state.stage], f"{ev.action}: case is {state.stage}", ev)
    if ev.action == "pause":
        return _pause(state, ev)
    if ev.action == "resume":
        return _resume(state, ev)
    if ev.action == "extend":
        return _extend(state, ev)
    if ev.action in ("void", "force_close"):
        return _end(state, ev)
    if state.paused:
        return Illegal(PAUSED, f"{ev.action}: case is paused; resume it first", ev)
    return _advance(state, ev)


def replay(events: list[CaseInput]) -> tuple[CaseState | None, list[Illegal]]:
    """Rebuild a case from its full event list in event-time order (``event_key``).

    Redeliveries (a repeated non-empty ``event_id``) are reported as ``duplicate_event``.
    The illegal list replaces whatever was reported for the case before.
    """
    state: CaseState | None = None
    illegal: list[Illegal] = []
    seen: set[str] = set()
    for ev in sorted(events, key=event_key):
        if ev.event_id and ev.event_id in seen:
            illegal.append(Illegal(DUPLICATE_EVENT, f"event {ev.event_id!r} repeated", ev))
            continue
        if ev.event_id:
            seen.add(ev.event_id)
        out = apply(state, ev)
        if isinstance(out, Illegal):
            illegal.append(out)
        else:
            state = out.state
    return state, illegal


def admit(
    state: CaseState | None, history: Sequence[CaseInput], ev: CaseInput
) -> Transition | Rebuilt:
    """Take in one received event of a case whose earlier received events are ``history``
    (legal or not, arrival order, without ``ev``) and whose state is ``replay(history)``.

    An event that sorts after all of them is applied; one that sorts before any of them
    (late, or an earlier event of one that arrived too early and was refused) rebuilds the
    case by replay. A repeated ``event_id`` is a redelivery (``duplicate_event``): do not add
    it to the history; add every other event, legal or not. That keeps the invariant
    ``state == replay(history)[0]`` whatever the arrival order.
    """
    if ev.event_id and any(h.event_id == ev.event_id for h in history):
        return Illegal(DUPLICATE_EVENT, f"event {ev.event_id!r} already received", ev)
    key = event_key(ev)
    if any(event_key(h) > key for h in history):
        return Rebuilt(*replay([*history, ev]))
    return apply(state, ev)


_STATE_ADAPTER: TypeAdapter[CaseState] = TypeAdapter(CaseState)
_EVENTS_ADAPTER: TypeAdapter[list[CaseInput]] = TypeAdapter(list[CaseInput])


def dump_state(state: CaseState) -> bytes:
    """JSON of a case state, e.g. for a changelog-backed table."""
    return _STATE_ADAPTER.dump_json(state)


def load_state(data: bytes) -> CaseState:
    return _STATE_ADAPTER.validate_json(data)


def dump_events(events: Sequence[CaseInput]) -> bytes:
    """JSON of a case's event history (what ``admit`` and ``replay`` need)."""
    return _EVENTS_ADAPTER.dump_json(list(events))


def load_events(data: bytes) -> list[CaseInput]:
    return _EVENTS_ADAPTER.validate_json(data)


# --- transitions ---------------------------------------------------------------------------


def _touch(state: CaseState, ev: CaseInput, **changes: Any) -> CaseState:
    """Record ``ev`` as applied, with the fields it carries and the given changes."""
    carried: dict[str, Any] = {
        k: v
        for k, v in (("grid", ev.grid), ("category", ev.category), ("unit", ev.unit))
        if v is not None
    }
    if ev.urgent:
        carried["urgent"] = True
    return dataclasses.replace(
        state,
        **carried,
        **changes,
        version=state.version + 1,
        last_event_at=ev.at,
        last_action=ev.action,
        last_event_id=ev.event_id,
    )


def _open(ev: CaseInput) -> Applied:
    state = CaseState(
        case_id=ev.case_id,
        source=ev.source or DEFAULT_SOURCE,
        grid=ev.grid,
        category=ev.category,
        unit=ev.unit,
        urgent=bool(ev.urgent),
        stage="accepted",
        opened_at=ev.at,
        stage_started_at=ev.at,
        version=1,
        last_event_at=ev.at,
        last_action=ev.action,
        last_event_id=ev.event_id,
    )
    return Applied(state, TimerChange("start", TIMER_OF["accepted"], ev.at))


def _closed_clock(state: CaseState, at: datetime) -> Clock | None:
    """The current timer as it ends at ``at`` (an open pause is closed there)."""
    c = clock(state)
    if c is None or c.paused_since is None:
        return c
    return dataclasses.replace(c, pauses=(*c.pauses, (c.paused_since, at)), paused_since=None)


def _enter(state: CaseState, ev: CaseInput, stage: Stage, **changes: Any) -> Applied:
    """Move to ``stage``: a fresh stage clock, first-reach timestamp, timer start/stop."""
    ended = _closed_clock(state, ev.at)
    times = state.timestamps
    name = _TIMES_FIELD.get(stage)
    if name is not None and getattr(times, name) is None:
        times = dataclasses.replace(times, **{name: ev.at})
    new = _touch(
        state,
        ev,
        stage=stage,
        stage_started_at=ev.at,
        stage_deadline=None,
        deadline_set_at=None,
        paused_since=None,
        paused_seconds_in_stage=0.0,
        pauses=(),
        timestamps=times,
        **changes,
    )
    nxt = TIMER_OF.get(stage)
    if nxt is None:
        new = dataclasses.replace(new, closed_at=ev.at)
        last = ended.stage if ended is not None else TIMER_OF["accepted"]
        return Applied(new, TimerChange("stop", last, ev.at, ended))
    return Applied(new, TimerChange("start", nxt, ev.at, ended))


def _advance(state: CaseState, ev: CaseInput) -> Transition:
    src, dst = ADVANCES[ev.action]
    if state.stage != src:
        if _PROGRESS[state.stage] < _PROGRESS[src]:
            code, why = STAGE_NOT_REACHED, f"case not {src} yet"
        else:
            code, why = STAGE_PASSED, f"case already {state.stage}"
        return Illegal(code, f"{ev.action} from {state.stage}: {why}", ev)
    if ev.action == "verify_fail":
        return _enter(state, ev, dst, rework_count=state.rework_count + 1)
    return _enter(state, ev, dst)


def _end(state: CaseState, ev: CaseInput) -> Applied:
    if ev.action == "void":
        return _enter(state, ev, "voided", voided=True)
    return _enter(state, ev, "closed", forced=True)


def _pause(state: CaseState, ev: CaseInput) -> Transition:
    if state.paused_since is not None:
        since = state.paused_since.isoformat()
        return Illegal(ALREADY_PAUSED, f"pause: case is paused since {since}", ev)
    new = _touch(state, ev, paused_since=ev.at)
    return Applied(new, TimerChange("pause", TIMER_OF[state.stage], ev.at))


def _resume(state: CaseState, ev: CaseInput) -> Transition:
    if state.paused_since is None:
        return Illegal(NOT_PAUSED, "resume: case is not paused", ev)
    pause = (state.paused_since, ev.at)
    new = _touch(
        state,
        ev,
        paused_since=None,
        pauses=(*state.pauses, pause),
        paused_seconds_in_stage=state.paused_seconds_in_stage
        + (ev.at - state.paused_since).total_seconds(),
    )
    return Applied(new, TimerChange("resume", TIMER_OF[state.stage], ev.at))


def _extend(state: CaseState, ev: CaseInput) -> Transition:
    if ev.deadline is None:
        return Illegal(MISSING_DEADLINE, "extend: no approved deadline given", ev)
    if ev.deadline <= ev.at:
        return Illegal(
            DEADLINE_NOT_AFTER_EVENT,
            f"extend: deadline {ev.deadline.isoformat()} is not after {ev.at.isoformat()}",
            ev,
        )
    new = _touch(
        state,
        ev,
        stage_deadline=ev.deadline,
        deadline_set_at=ev.at,
        extension_count=state.extension_count + 1,
    )
    return Applied(new, TimerChange("extend", TIMER_OF[state.stage], ev.at))


def _follow_up(state: CaseState, ev: CaseInput) -> Transition:
    if state.stage != "closed":
        if state.stage in TERMINAL:
            return Illegal(_TERMINAL_CODE[state.stage], f"follow_up: case is {state.stage}", ev)
        return Illegal(STAGE_NOT_REACHED, f"follow_up from {state.stage}: case not closed", ev)
    if state.source != HOTLINE:
        why = f"follow_up: only hotline cases are followed up (source {state.source!r})"
        return Illegal(NOT_HOTLINE, why, ev)
    if state.follow_up_at is not None:
        when = state.follow_up_at.isoformat()
        return Illegal(ALREADY_FOLLOWED_UP, f"follow_up: case was followed up at {when}", ev)
    if ev.rating is None:
        return Illegal(MISSING_RATING, "follow_up: no satisfaction rating given", ev)
    return Applied(_touch(state, ev, rating=ev.rating, follow_up_at=ev.at), None)
