import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.city import load_city
from core.events import CaseEvent
from core.settings import REPO_ROOT
from core.sla_config import Limit, SlaPolicy, load_sla
from core.types import ACTIONS, TIMED_STAGES
from streams import cases as c
from streams.cases import (
    Applied,
    CaseInput,
    CaseState,
    Illegal,
    Rebuilt,
    admit,
    allowed_actions,
    apply,
    clock,
    dump_events,
    dump_state,
    event_key,
    from_case_event,
    load_events,
    load_state,
    replay,
    shifting_pauses,
    timed_stage,
)

T0 = datetime(2025, 5, 6, 9, 0, tzinfo=UTC)
CASE = "C-1"
HAPPY = ["register", "dispatch", "acknowledge", "handle", "verify_pass", "close"]
REASON_CODES = {
    v
    for k, v in vars(c).items()
    if k.isupper() and isinstance(v, str) and k not in ("HOTLINE", "DEFAULT_SOURCE")
}


def ev(action, minutes, **kw):
    return CaseInput(CASE, action, T0 + timedelta(minutes=minutes), **kw)


def fold(events, state=None):
    """Apply events in order, failing on any illegal one."""
    for e in events:
        out = apply(state, e)
        assert isinstance(out, Applied), out
        state = out.state
    return state


def run(actions, source="hotline", **accept):
    """A case taken through ``actions``, one minute apart, with a valid payload each."""
    events = [ev("accept", 0, source=source, category="facilities.manhole_cover", **accept)]
    events += [payload(a, i + 1) for i, a in enumerate(actions)]
    return fold(events)


def payload(action, minutes):
    extra = {}
    if action == "extend":
        extra["deadline"] = T0 + timedelta(days=3)
    if action == "follow_up":
        extra["rating"] = "satisfied"
    return ev(action, minutes, **extra)


def illegal(state, e):
    out = apply(state, e)
    assert isinstance(out, Illegal), out
    assert out.code in REASON_CODES and out.reason and out.event is e
    return out


def test_happy_path_records_every_stage_and_timer():
    s = run([])
    assert (s.stage, s.source, s.version, timed_stage(s)) == ("accepted", "hotline", 1, "register")
    timers = []
    for i, action in enumerate(HAPPY, 1):
        out = apply(s, payload(action, i * 10))
        assert isinstance(out, Applied)
        timers.append((out.timer.kind, out.timer.stage, out.timer.ended.stage))
        s = out.state
    assert timers == [
        ("start", "dispatch", "register"),
        ("start", "acknowledge", "dispatch"),
        ("start", "handle", "acknowledge"),
        ("start", "verify", "handle"),
        ("start", "close", "verify"),
        ("stop", "close", "close"),
    ]
    t = s.timestamps
    assert [
        t.register_at,
        t.dispatch_at,
        t.acknowledge_at,
        t.handle_at,
        t.verify_at,
        t.close_at,
    ] == [T0 + timedelta(minutes=10 * i) for i in range(1, 7)]
    assert (s.stage, s.closed_at, s.forced, s.voided, s.version) == (
        "closed",
        T0 + timedelta(minutes=60),
        False,
        False,
        7,
    )
    assert timed_stage(s) is None and clock(s) is None and s.terminal


def test_rework_twice_restarts_the_handling_clock():
    s = run(
        ["register", "dispatch", "acknowledge", "handle", "verify_fail", "handle", "verify_fail"]
    )
    assert (s.stage, s.rework_count, timed_stage(s)) == ("acknowledged", 2, "handle")
    assert s.stage_started_at == T0 + timedelta(minutes=7)
    assert s.timestamps.handle_at == T0 + timedelta(minutes=4)  # first reach only
    out = apply(s, ev("handle", 8))
    assert out.timer.kind == "start" and out.timer.ended.started_at == T0 + timedelta(minutes=7)
    s = fold([ev("verify_pass", 9), ev("close", 10)], out.state)
    assert (s.stage, s.rework_count) == ("closed", 2)


def test_extension_sets_deadline_and_counts():
    s = run(["register", "dispatch", "acknowledge"])
    due = T0 + timedelta(days=2)
    out = apply(s, ev("extend", 5, deadline=due))
    assert out.timer.kind == "extend" and out.timer.stage == "handle"
    s = out.state
    assert (s.stage_deadline, s.deadline_set_at, s.extension_count) == (
        due,
        T0 + timedelta(minutes=5),
        1,
    )
    s = fold([ev("extend", 6, deadline=due + timedelta(days=1))], s)
    assert s.extension_count == 2 and s.stage_deadline == due + timedelta(days=1)
    assert illegal(s, ev("extend", 7)).code == "missing_deadline"
    assert illegal(s, ev("extend", 7, deadline=T0)).code == "deadline_not_after_event"
    # the approved deadline belongs to the stage: the next stage falls back to the policy
    s = fold([ev("handle", 8)], s)
    assert s.stage_deadline is None and s.extension_count == 2


def test_pause_resume_stops_the_clock_and_nesting_is_illegal():
    s = run(["register", "dispatch", "acknowledge"])
    out = apply(s, ev("pause", 10))
    assert (out.timer.kind, out.timer.stage) == ("pause", "handle")
    s = out.state
    assert s.paused and timed_stage(s) is None and clock(s).paused_since == s.paused_since
    assert illegal(s, ev("pause", 11)).code == "already_paused"
    assert illegal(s, ev("handle", 11)).code == "paused"
    s = fold([ev("resume", 70), ev("pause", 80), ev("resume", 90)], s)
    assert not s.paused and timed_stage(s) == "handle"
    assert s.paused_seconds_in_stage == 70 * 60
    assert s.pauses == (
        (T0 + timedelta(minutes=10), T0 + timedelta(minutes=70)),
        (T0 + timedelta(minutes=80), T0 + timedelta(minutes=90)),
    )
    assert illegal(s, ev("resume", 91)).code == "not_paused"
    out = apply(s, ev("handle", 95))
    assert len(out.timer.ended.pauses) == 2 and out.state.pauses == ()
    assert out.state.paused_seconds_in_stage == 0


def test_extension_only_shifts_by_pauses_after_approval():
    s = run(["register", "dispatch", "acknowledge"])
    s = fold(
        [
            ev("pause", 10),
            ev("resume", 20),
            ev("pause", 30),
            ev("extend", 40, deadline=T0 + timedelta(days=1)),
            ev("resume", 50),
        ],
        s,
    )
    assert shifting_pauses(clock(s)) == ((T0 + timedelta(minutes=40), T0 + timedelta(minutes=50)),)
    assert shifting_pauses(clock(run(["register"]))) == ()


@pytest.mark.parametrize(
    "prefix",
    [
        [],
        ["register"],
        ["register", "dispatch"],
        ["register", "dispatch", "acknowledge", "handle"],
        ["register", "dispatch", "acknowledge", "pause"],
        ["register", "dispatch", "acknowledge", "handle", "verify_pass"],
    ],
)
@pytest.mark.parametrize("action", ["void", "force_close"])
def test_void_and_force_close_from_any_open_stage(prefix, action):
    s = run(prefix)
    out = apply(s, ev(action, 30))
    assert isinstance(out, Applied)
    e = out.state
    assert out.timer.kind == "stop" and out.timer.ended.paused_since is None
    assert e.closed_at == T0 + timedelta(minutes=30) and e.terminal and not e.paused
    if action == "void":
        assert (e.stage, e.voided, e.forced, e.timestamps.close_at) == ("voided", True, False, None)
        assert illegal(e, ev("close", 31)).code == "case_voided"
    else:
        assert (e.stage, e.forced, e.voided) == ("closed", True, False)
        assert e.timestamps.close_at == T0 + timedelta(minutes=30)
        assert illegal(e, ev("void", 31)).code == "case_closed"
    if "pause" in prefix:
        assert len(out.timer.ended.pauses) == 1


def test_follow_up_only_after_close_only_once_only_hotline():
    s = run(HAPPY[:-1])
    assert illegal(s, payload("follow_up", 10)).code == "stage_not_reached"
    s = fold([ev("close", 11)], s)
    assert illegal(s, ev("follow_up", 12)).code == "missing_rating"
    out = apply(s, payload("follow_up", 12))
    assert out.timer is None
    assert (out.state.rating, out.state.follow_up_at) == ("satisfied", T0 + timedelta(minutes=12))
    assert illegal(out.state, payload("follow_up", 13)).code == "already_followed_up"
    inspector = run(HAPPY, source="inspector")
    assert illegal(inspector, payload("follow_up", 20)).code == "not_hotline"
    assert illegal(run(["reject"]), payload("follow_up", 20)).code == "case_rejected"


def test_follow_up_after_force_close():
    s = run(["register", "force_close", "follow_up"])
    assert s.forced and s.rating == "satisfied"


# --- every stage x action: the allowed set, spelled out ---------------------------------------

COMMON = {"extend", "pause", "void", "force_close"}
ALLOWED = {
    "accepted": {"register", "reject"} | COMMON,
    "registered": {"dispatch"} | COMMON,
    "dispatched": {"acknowledge"} | COMMON,
    "acknowledged": {"handle"} | COMMON,
    "handled": {"verify_pass", "verify_fail"} | COMMON,
    "verified": {"close"} | COMMON,
    "paused": {"resume", "extend", "void", "force_close"},
    "closed": {"follow_up"},
    "rejected": set(),
    "voided": set(),
}
PATHS = {
    "accepted": [],
    "registered": HAPPY[:1],
    "dispatched": HAPPY[:2],
    "acknowledged": HAPPY[:3],
    "handled": HAPPY[:4],
    "verified": HAPPY[:5],
    "paused": HAPPY[:2] + ["pause"],
    "closed": HAPPY,
    "rejected": ["reject"],
    "voided": HAPPY[:3] + ["void"],
}


@pytest.mark.parametrize("where", list(ALLOWED))
@pytest.mark.parametrize("action", ACTIONS)
def test_transition_table(where, action):
    s = run(PATHS[where])
    assert allowed_actions(s) == ALLOWED[where]
    out = apply(s, payload(action, 30))
    if action in ALLOWED[where]:
        assert isinstance(out, Applied), out
        assert out.state.version == s.version + 1
    else:
        assert isinstance(out, Illegal)
        assert out.code in REASON_CODES and out.reason
        if action == "accept":
            assert out.code == "duplicate_case"


@pytest.mark.parametrize(
    "state_path,action,code,reason",
    [
        ([], "dispatch", "stage_not_reached", "dispatch from accepted: case not registered yet"),
        (
            HAPPY[:3],
            "register",
            "stage_passed",
            "register from acknowledged: case already acknowledged",
        ),
        (
            HAPPY[:2],
            "verify_fail",
            "stage_not_reached",
            "verify_fail from dispatched: case not handled yet",
        ),
        (HAPPY, "close", "case_closed", "close: case is closed"),
    ],
)
def test_reasons_say_why(state_path, action, code, reason):
    out = illegal(run(state_path), payload(action, 30))
    assert (out.code, out.reason) == (code, reason)


def test_unknown_duplicate_and_mismatched_cases():
    assert illegal(None, ev("register", 0)).code == "unknown_case"
    s = run([])
    assert illegal(s, ev("accept", 5)).code == "duplicate_case"
    assert illegal(s, CaseInput("C-2", "register", T0)).code == "case_mismatch"
    s = fold([ev("register", 1, event_id="e1")], s)
    assert illegal(s, ev("register", 1, event_id="e1")).code == "duplicate_event"


def test_events_update_case_fields():
    s = run([], grid="G1", urgent=False)
    s = fold(
        [
            ev("register", 1, category="facilities.damaged_road", urgent=True),
            ev("dispatch", 2, unit="roads-bureau"),
        ],
        s,
    )
    assert (s.grid, s.category, s.unit, s.urgent) == (
        "G1",
        "facilities.damaged_road",
        "roads-bureau",
        True,
    )


def test_naive_times_are_a_programming_error():
    with pytest.raises(ValueError):
        CaseInput(CASE, "accept", datetime(2025, 1, 1))


def test_from_case_event_and_state_round_trip():
    msg = CaseEvent(
        event_id="x1",
        occurred_at=T0,
        case_id=CASE,
        action="accept",
        category="sanitation.overflowing_bin",
        grid="G1",
    )
    e = from_case_event(msg, source="inspector", urgent=True)
    assert (e.event_id, e.source, e.urgent, e.at) == ("x1", "inspector", True, T0)
    s = run(HAPPY[:3] + ["pause", "resume", "extend", "handle", "verify_fail"])
    assert load_state(dump_state(s)) == s
    history = [e, ev("extend", 1, deadline=T0 + timedelta(days=1))]
    assert load_events(dump_events(history)) == history


# --- event time order --------------------------------------------------------------------------


def test_late_event_is_out_of_order_and_replay_fixes_it():
    events = [
        ev("accept", 0, source="hotline", event_id="a"),
        ev("register", 5, event_id="b"),
        ev("dispatch", 10, event_id="c"),
    ]
    s = fold(events[:1])
    early = apply(s, events[2])  # dispatch before register arrives: illegal here ...
    assert isinstance(early, Illegal) and early.code == "stage_not_reached"
    s = fold([events[1]], s)
    late = ev("pause", 3, event_id="d")
    out = illegal(s, late)
    assert out.code == "out_of_order" and out.needs_replay
    state, bad = replay([*events, late])  # ... and the rebuild: the pause blocked both
    assert state.stage == "accepted" and state.paused and state.version == 2
    assert [(i.code, i.event.action) for i in bad] == [
        ("paused", "register"),
        ("paused", "dispatch"),
    ]


def test_admit_rebuilds_when_an_early_refused_event_gets_its_predecessor():
    a, r, d = (
        ev("accept", 0, event_id="a"),
        ev("register", 5, event_id="b"),
        ev("dispatch", 10, event_id="c"),
    )
    s = fold([a])
    refused = admit(s, [a], d)
    assert isinstance(refused, Illegal) and refused.code == "stage_not_reached"
    out = admit(s, [a, d], r)  # sorts before the refused dispatch: rebuild
    assert isinstance(out, Rebuilt) and out.illegal == [] and out.state.stage == "dispatched"
    assert admit(out.state, [a, d, r], d).code == "duplicate_event"
    assert isinstance(admit(out.state, [a, d, r], ev("acknowledge", 11)), Applied)


def test_same_time_sorts_by_lifecycle_order():
    s = fold([ev("accept", 0), ev("register", 5)])
    # pause at the same instant as register but after it in lifecycle order: fine
    s = fold([ev("pause", 5)], s)
    assert illegal(s, ev("accept", 5)).code == "duplicate_case"
    # resume sorts before pause: late although at the same time
    assert illegal(s, ev("resume", 5)).code == "out_of_order"


def test_replay_reports_redeliveries_and_unknown_starts():
    e = [ev("accept", 0, event_id="a"), ev("register", 1, event_id="b")]
    state, bad = replay([e[1], e[0], e[1]])
    assert state.stage == "registered" and [i.code for i in bad] == ["duplicate_event"]
    state, bad = replay([e[1]])
    assert state is None and [i.code for i in bad] == ["unknown_case"]


@st.composite
def valid_histories(draw):
    """A legal event list in event-time order, built by a random walk over allowed actions.

    Ties in time are allowed only where the lifecycle order agrees with the sequence."""
    source = draw(st.sampled_from(["hotline", "inspector"]))
    at = T0
    events = [CaseInput(CASE, "accept", at, source=source, event_id="e000")]
    state = apply(None, events[0]).state
    for i in range(1, draw(st.integers(1, 30))):
        options = sorted(allowed_actions(state))
        if not options:
            break
        action = draw(st.sampled_from(options))
        gap = draw(st.integers(0, 240))
        if gap == 0 and c._RANK[action] <= c._RANK[state.last_action]:
            gap = 1
        at = at + timedelta(minutes=gap)
        extra = {}
        if action == "extend":
            extra["deadline"] = at + timedelta(hours=draw(st.integers(1, 72)))
        if action == "follow_up":
            extra["rating"] = draw(st.sampled_from(["satisfied", "dissatisfied"]))
        e = CaseInput(CASE, action, at, event_id=f"e{i:03d}", **extra)
        out = apply(state, e)
        assert isinstance(out, Applied), out
        state = out.state
        events.append(e)
    return events, state


@settings(max_examples=200, deadline=None)
@given(valid_histories(), st.randoms(use_true_random=False))
def test_replay_of_shuffled_events_equals_in_order_application(history, rnd: random.Random):
    events, in_order = history
    shuffled = events[:]
    rnd.shuffle(shuffled)
    state, bad = replay(shuffled)
    assert bad == []
    assert state == in_order
    assert sorted(events, key=event_key) == events


@settings(max_examples=200, deadline=None)
@given(valid_histories(), st.data())
def test_admit_in_any_arrival_order_ends_as_in_order(history, data):
    """The agent's loop: whatever the arrival order (with redeliveries), the final state is the
    in-order one and no illegal event is left on record."""
    events, in_order = history
    arrival = data.draw(st.permutations(events))
    arrival += data.draw(st.lists(st.sampled_from(events), max_size=3))
    state, seen, on_record = None, [], []
    for e in arrival:
        out = admit(state, seen, e)
        if isinstance(out, Rebuilt):
            state, on_record = out.state, list(out.illegal)
        elif isinstance(out, Applied):
            state = out.state
        elif out.code != "duplicate_event":
            on_record.append(out)
        if not (isinstance(out, Illegal) and out.code == "duplicate_event"):
            seen.append(e)
        assert state == replay(seen)[0]
    assert state == in_order and on_record == []


# --- SLA policy ---------------------------------------------------------------------------------


def _policy():
    h = {"amount": 1, "unit": "working_hours"}
    return SlaPolicy(
        policies=[
            {
                "category": "*",
                "stages": {"register": h, "handle": {"amount": 9, "unit": "working_days"}},
                "urgent": {"register": {"amount": 0.5, "unit": "working_hours"}},
            },
            {"category": "sanitation", "stages": {"handle": {"amount": 2, "unit": "working_days"}}},
            {
                "category": "sanitation.overflowing_bin",
                "stages": {"handle": {"amount": 4, "unit": "working_hours"}},
                "urgent": {"handle": {"amount": 2, "unit": "natural_hours"}},
            },
        ]
    )


@pytest.mark.parametrize(
    "category,stage,urgent,expected",
    [
        ("sanitation.overflowing_bin", "handle", False, Limit(amount=4, unit="working_hours")),
        ("sanitation.overflowing_bin", "handle", True, Limit(amount=2, unit="natural_hours")),
        ("sanitation.exposed_garbage", "handle", True, Limit(amount=2, unit="working_days")),
        ("order.street_vending", "handle", False, Limit(amount=9, unit="working_days")),
        ("sanitation.overflowing_bin", "register", False, Limit(amount=1, unit="working_hours")),
        ("sanitation.overflowing_bin", "register", True, Limit(amount=0.5, unit="working_hours")),
        ("sanitation.overflowing_bin", "verify", False, None),
    ],
)
def test_limit_for_most_specific_first(category, stage, urgent, expected):
    assert _policy().limit_for(category, stage, urgent) == expected


@pytest.mark.parametrize(
    "bad",
    [
        {"warn_at": [0.8, 0.5], "policies": []},
        {"warn_at": [0.5, 1.0], "policies": []},
        {"policies": [{"category": "*"}, {"category": "*"}]},
        {"policies": [{"category": "a.b.c"}]},
        {
            "policies": [
                {"category": "*", "stages": {"handle": {"amount": 0, "unit": "working_days"}}}
            ]
        },
        {"policies": [{"category": "*", "stages": {"fix": {"amount": 1, "unit": "working_days"}}}]},
        {"policies": [{"category": "*", "stages": {"handle": {"amount": 1, "unit": "days"}}}]},
    ],
)
def test_policy_validation(bad):
    with pytest.raises(ValueError):
        SlaPolicy.model_validate(bad)


@pytest.mark.parametrize("sla,city", [("default", "sample"), ("la", "la")])
def test_shipped_policies_cover_their_city(sla, city):
    policy = load_sla(REPO_ROOT / "config" / "sla" / f"{sla}.yaml")
    subs = set(load_city(REPO_ROOT / "config" / "cities" / f"{city}.yaml").subcategories)
    assert policy.unknown_categories(subs) == []
    for sub in subs:
        for stage in TIMED_STAGES:
            for urgent in (False, True):
                assert policy.limit_for(sub, stage, urgent) is not None, (sub, stage)


def test_default_policy_values():
    p = load_sla(REPO_ROOT / "config" / "sla" / "default.yaml")
    assert p.limit_for("facilities.manhole_cover", "handle", False) == Limit(
        amount=3, unit="natural_hours"
    )
    assert p.limit_for("facilities.manhole_cover", "handle", True) == Limit(
        amount=1, unit="natural_hours"
    )
    assert p.limit_for("order.illegal_construction", "handle", True) == Limit(
        amount=15, unit="working_days"
    )
    assert p.limit_for("sanitation.overflowing_bin", "acknowledge", False) == Limit(
        amount=0.5, unit="working_hours"
    )
    assert p.escalation_every == Limit(amount=4, unit="working_hours")


def test_case_state_is_immutable():
    s = run([])
    with pytest.raises(AttributeError):
        s.stage = "closed"  # type: ignore[misc]
    assert isinstance(s, CaseState)


def test_stage_seq_counts_reentries_of_the_handling_stage():
    assert run(HAPPY[:3]).stage_seq == 0
    assert run([*HAPPY[:4], "verify_fail"]).stage_seq == 1
    assert run([*HAPPY[:4], "verify_fail", "handle"]).stage_seq == 0
