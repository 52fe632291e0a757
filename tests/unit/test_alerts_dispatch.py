"""Routing, matchers, grouping, inhibition, silences, roster, ack/resolve and escalation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from alerts.config import load_config
from alerts.dispatch import DispatchConfig, Dispatcher, Matcher, Route
from alerts.model import Alert

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)
RECEIVERS = ["street-team", "night-shift", "district-duty", "city-duty", "sanitation"]


def cfg(route: dict, **extra) -> DispatchConfig:
    return DispatchConfig.model_validate({"route": route, "receivers": RECEIVERS} | extra)


def alert(status="firing", starts=T0, ends=None, **labels) -> Alert:
    labels = {"alertname": "sla", "severity": "major"} | labels
    return Alert(labels=labels, status=status, starts_at=starts, ends_at=ends)


# -- matchers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ('district="Xicheng"', {"district": "Xicheng"}, True),
        ("district=Xicheng", {"district": "Dongcheng"}, False),
        ("unit!=sanitation", {}, True),
        ("unit!=sanitation", {"unit": "sanitation"}, False),
        ('kind=~"breach|escalation"', {"kind": "escalation"}, True),
        ("kind=~breach", {"kind": "breach2"}, False),  # anchored
        ("kind=~breach", {"kind": "prebreach"}, False),
        ("grid!~G.*", {"grid": "X1"}, True),
        ("grid!~G.*", {"grid": "G1"}, False),
        ('grid=""', {}, True),
    ],
)
def test_matchers(text, labels, hit):
    assert Matcher.parse(text).matches(labels) is hit


@pytest.mark.parametrize("bad", ["district", "=x", "kind=~(", "9x=1"])
def test_bad_matchers_are_refused(bad):
    with pytest.raises(ValueError):
        Matcher.parse(bad)


# -- routing ------------------------------------------------------------------------------

TREE = {
    "receiver": "district-duty",
    "group_by": ["district"],
    "group_wait": "30s",
    "group_interval": "5m",
    "repeat_interval": "1h",
    "routes": [
        {"matchers": ["unit=sanitation"], "receiver": "sanitation", "continue": True},
        {
            "matchers": ["kind=~breach|escalation"],
            "receiver": "street-team",
            "group_by": ["street"],
            "group_wait": "10s",
            "routes": [{"matchers": ["severity=critical"], "receiver": "city-duty"}],
        },
        {"matchers": ["kind=breach"], "receiver": "night-shift"},
    ],
}


def receivers_of(route: Route, **labels) -> list[str]:
    return [r.receiver for r in route.match(labels)]


def test_routing_first_match_continue_and_fallback():
    root = Route.build(cfg(TREE).route)
    assert receivers_of(root, kind="warning") == ["district-duty"]
    assert receivers_of(root, kind="breach") == ["street-team"]  # first match stops
    assert receivers_of(root, kind="breach", unit="sanitation") == ["sanitation", "street-team"]
    assert receivers_of(root, kind="warning", unit="sanitation") == ["sanitation"]
    assert receivers_of(root, kind="breach", severity="critical") == ["city-duty"]


def test_child_routes_inherit_settings():
    root = Route.build(cfg(TREE).route)
    (leaf,) = root.match({"kind": "breach", "severity": "critical"})
    assert leaf.group_by == ("street",) and leaf.group_wait == 10 * S
    assert leaf.group_interval == 5 * M and leaf.repeat_interval == timedelta(hours=1)
    (san,) = root.match({"unit": "sanitation"})
    assert san.group_by == ("district",) and san.group_wait == 30 * S


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"receiver": "nobody"}, "unknown receiver"),
        ({"receiver": "city-duty", "group_by": ["phone"]}, "unknown label"),
        ({"receiver": "city-duty", "group_wait": "soon"}, "not a duration"),
        ({"receiver": "city-duty", "matchers": ["kind=x"]}, "root route"),
        (
            {"receiver": "city-duty", "routes": [{"receiver": "x", "matchers": ["kind=x"]}]},
            "unknown receiver",
        ),
    ],
)
def test_config_is_validated(route, message):
    with pytest.raises(ValidationError, match=message):
        cfg(route)


def test_example_config_loads():
    c = load_config(Path(__file__).parents[2] / "config/alerts/routes.example.yaml")
    d = Dispatcher(c.dispatch())
    assert {r.receiver for r in d.root.walk()} >= {"district-duty", "street-oncall"}
    assert len(c.webhooks()) == 5 and len(c.inhibit_rules) == 2


# -- grouping -----------------------------------------------------------------------------

GROUPING = {
    "receiver": "district-duty",
    "group_by": ["street"],
    "group_wait": "30s",
    "group_interval": "5m",
    "repeat_interval": "1h",
}


def test_one_notification_per_group_after_group_wait():
    d = Dispatcher(cfg(GROUPING))
    for i in range(30):
        d.ingest(alert(case=f"H-{i}", street=f"S{i % 3}"), T0 + i * S)
    assert d.flush(T0 + 29 * S) == []  # group_wait not over
    ns = d.flush(T0 + 30 * S)  # groups start at their first alert: S0 at T0, S1 at T0 + 1 s
    assert [n.group_labels for n in ns] == [{"street": "S0"}]
    ns += d.flush(T0 + 32 * S)
    assert [n.group_labels["street"] for n in ns] == ["S0", "S1", "S2"]
    assert [len(n.alerts) for n in ns] == [10, 10, 10]
    assert d.flush(T0 + 30 * S + 5 * M) == []  # unchanged groups are not sent again
    assert all(n.reason == "group" and n.receiver == "district-duty" for n in ns)


def test_new_alerts_wait_for_group_interval_and_unchanged_groups_wait_for_repeat():
    d = Dispatcher(cfg(GROUPING))
    d.ingest(alert(case="H-1", street="S0"), T0)
    (first,) = d.flush(T0 + 30 * S)
    d.ingest(alert(case="H-2", street="S0"), T0 + M)
    assert d.flush(T0 + 2 * M) == []  # inside group_interval
    (second,) = d.flush(T0 + 30 * S + 5 * M)
    assert len(second.alerts) == 2 and second.id != first.id
    sent = [n for k in range(1, 12) for n in d.flush(T0 + 30 * S + 5 * M + k * 5 * M)]
    assert sent == []  # unchanged: nothing until the repeat interval (60 min after `second`)
    (rep,) = d.flush(T0 + 30 * S + 65 * M)
    assert rep.reason == "repeat" and len(rep.alerts) == 2


def test_redelivered_alert_changes_nothing_and_ids_are_deterministic():
    def run() -> list[str]:
        d = Dispatcher(cfg(GROUPING))
        a = alert(case="H-1", street="S0")
        assert d.ingest(a, T0) is True
        assert d.ingest(a, T0 + S) is False
        return [n.id for n in d.flush(T0 + M)]

    assert run() == run() and len(run()) == 1


def test_resolved_alert_is_announced_once_then_the_group_ends():
    d = Dispatcher(cfg(GROUPING))
    a = alert(case="H-1", street="S0")
    d.ingest(a, T0)
    d.flush(T0 + M)
    d.ingest(a.resolved(T0 + 2 * M), T0 + 2 * M)
    (n,) = d.flush(T0 + 6 * M)
    assert n.status == "resolved" and n.alerts[0].ends_at == T0 + 2 * M
    assert d.flush(T0 + 11 * M) == [] and d.flush(T0 + 3 * 60 * M) == []
    # a stale firing copy (fired before the resolution) does not reopen it
    assert d.ingest(a, T0 + 12 * M) is False


def test_alert_resolved_before_first_flush_is_not_sent():
    d = Dispatcher(cfg(GROUPING))
    a = alert(case="H-1", street="S0")
    d.ingest(a, T0)
    d.ingest(a.resolved(T0 + S), T0 + S)
    assert d.flush(T0 + M) == []


# -- inhibition ---------------------------------------------------------------------------

INHIBIT = [
    {
        "source_matchers": ["alertname=warning", "kind=hotspot", 'grid=""'],
        "target_matchers": ["alertname=warning", 'grid!=""'],
        "equal": ["street", "category"],
    },
    {
        "source_matchers": ["alertname=sla", "kind=~breach|escalation"],
        "target_matchers": ["alertname=sla", "kind=warning"],
        "equal": ["case", "stage"],
    },
]
ALL_IN_ONE = {
    "receiver": "district-duty",
    "group_by": ["..."],
    "group_wait": "0s",
    "group_interval": "1m",
}


def w(kind: str, street: str, grid: str = "", **more) -> Alert:
    return alert(
        alertname="warning", kind=kind, street=street, grid=grid, category="litter", **more
    )


def sent_fingerprints(ns) -> set[str]:
    return {a.fingerprint for n in ns for a in n.alerts if a.status == "firing"}


def test_street_hotspot_inhibits_grid_alerts_of_that_street_only():
    d = Dispatcher(cfg(ALL_IN_ONE, inhibit_rules=INHIBIT))
    hot = w("hotspot", "Jinrong")
    inside = [w("count_spike", "Jinrong", f"G{i}") for i in range(3)]
    other = w("count_spike", "Fuxing", "G9")
    for a in [hot, *inside, other]:
        d.ingest(a, T0)
    sent = sent_fingerprints(d.flush(T0))
    assert sent == {hot.fingerprint, other.fingerprint}
    for a in inside:
        assert d.alerts[a.fingerprint].inhibited_by == (hot.fingerprint,)
    # the hotspot resolves: its grid alerts are no longer muted
    d.ingest(hot.resolved(T0 + M), T0 + M)
    ns = d.flush(T0 + M)
    assert sent_fingerprints(ns) == {a.fingerprint for a in inside}  # `other` is unchanged
    assert [a.fingerprint for n in ns for a in n.alerts if a.status == "resolved"] == [
        hot.fingerprint
    ]


def test_breach_inhibits_the_same_cases_warning():
    d = Dispatcher(cfg(ALL_IN_ONE, inhibit_rules=INHIBIT))
    warn = alert(kind="warning", case="H-1", stage="dispatch")
    breach = alert(kind="breach", case="H-1", stage="dispatch")
    other_warn = alert(kind="warning", case="H-2", stage="dispatch")
    for a in (warn, breach, other_warn):
        d.ingest(a, T0)
    assert sent_fingerprints(d.flush(T0)) == {breach.fingerprint, other_warn.fingerprint}
    assert d.suppressions[-1].fingerprint == warn.fingerprint


# -- silences -----------------------------------------------------------------------------


def test_silence_mutes_records_and_expires():
    d = Dispatcher(cfg(ALL_IN_ONE))
    s = d.add_silence(["street=Jinrong"], "li.wei", "road works", T0, T0 + 60 * M, T0)
    quiet, loud = alert(case="H-1", street="Jinrong"), alert(case="H-2", street="Fuxing")
    d.ingest(quiet, T0)
    d.ingest(loud, T0)
    assert sent_fingerprints(d.flush(T0)) == {loud.fingerprint}
    state = d.alerts[quiet.fingerprint]
    assert state.silenced_by == (s.id,) and state.alert.status == "firing"  # kept, not dropped
    assert [r.fingerprint for r in d.suppressions] == [quiet.fingerprint]
    d.expire_silence(s.id, "zhang.min", T0 + 10 * M)
    assert sent_fingerprints(d.flush(T0 + 10 * M)) == {quiet.fingerprint}
    assert d.suppressions[-1].silenced_by == ()
    assert [(e.who, e.action) for e in d.audit] == [
        ("li.wei", "silence_add"),
        ("zhang.min", "silence_expire"),
    ]
    assert d.silences.get(s.id).expired_by == "zhang.min"


def test_silence_window_is_respected_and_invalid_windows_refused():
    d = Dispatcher(cfg(ALL_IN_ONE))
    d.add_silence(["case=H-1"], "li.wei", "later", T0 + 10 * M, T0 + 20 * M, T0)
    d.ingest(alert(case="H-1"), T0)
    assert len(d.flush(T0)) == 1
    with pytest.raises(ValueError):
        d.add_silence(["case=H-1"], "li.wei", "backwards", T0, T0 - M, T0)


def test_mute_reason_for_delivery_stage():
    d = Dispatcher(cfg(ALL_IN_ONE))
    d.ingest(alert(case="H-1"), T0)
    (n,) = d.flush(T0)
    assert d.mute_reason(n, T0) is None
    s = d.add_silence(["case=H-1"], "li.wei", "known", T0, T0 + M, T0)
    assert d.mute_reason(n, T0 + S) == f"silenced by {s.id}"


# -- roster -------------------------------------------------------------------------------

ROSTERS = {
    "street-oncall": {
        "working": "street-team",
        "off_hours": "night-shift",
        "overrides": [
            {
                "start": "2026-12-31T18:00:00+08:00",
                "end": "2027-01-02T08:00:00+08:00",
                "receiver": "district-duty",
            }
        ],
    }
}


def office_hours(t: datetime) -> bool:
    return t.weekday() < 5 and 9 <= t.hour < 18


def test_roster_pages_day_team_night_shift_and_holiday_cover():
    d = Dispatcher(
        cfg({**ALL_IN_ONE, "receiver": "street-oncall"}, rosters=ROSTERS),
        is_working_time=office_hours,
    )
    d.ingest(alert(case="H-1"), T0)
    assert [n.receiver for n in d.flush(T0 + M)] == ["street-team"]  # Monday 09:01
    d.ingest(alert(case="H-2"), T0 + 10 * 60 * M)
    # 19:00: the night shift gets the new alert, and the open one is handed over to it
    ns = d.flush(T0 + 10 * 60 * M)
    assert sorted((n.receiver, n.alerts[0].labels["case"]) for n in ns) == [
        ("night-shift", "H-1"),
        ("night-shift", "H-2"),
    ]
    assert d.flush(T0 + 11 * 60 * M) == []  # nothing new for the same shift
    d.ingest(alert(case="H-3"), datetime(2027, 1, 1, 3, tzinfo=UTC))
    ns = d.flush(datetime(2027, 1, 1, 3, tzinfo=UTC))  # holiday cover takes all three
    assert [n.receiver for n in ns] == ["district-duty"] * 3


def test_roster_names_are_validated():
    with pytest.raises(ValidationError, match="unknown receiver"):
        cfg(ALL_IN_ONE, rosters={"x": {"working": "street-team", "off_hours": "nobody"}})


# -- ack, resolve, escalation -------------------------------------------------------------

ESCALATING = {
    "receiver": "street-oncall",
    "group_by": ["case"],
    "group_wait": "0s",
    "group_interval": "1m",
    "escalation": {
        "steps": [
            {"after": "15m", "receiver": "district-duty"},
            {"after": "45m", "receiver": "city-duty"},
        ]
    },
}


def escalations(d: Dispatcher, start: datetime, minutes: int) -> list[tuple[int, str, int]]:
    """Tick once a minute with no new input; (minute, receiver, step) of each escalation."""
    out = []
    for k in range(minutes + 1):
        for n in d.tick(start + k * M):
            if n.reason == "escalation":
                out.append((k, n.receiver, n.escalation_step))
    return out


def test_unacknowledged_critical_alert_escalates_on_tick_without_input():
    d = Dispatcher(cfg(ESCALATING, rosters=ROSTERS), is_working_time=office_hours)
    d.ingest(alert(case="H-1", severity="critical"), T0)
    d.ingest(alert(case="H-2", severity="major"), T0)  # not critical: never escalates
    assert escalations(d, T0, 90) == [(15, "district-duty", 1), (45, "city-duty", 2)]


def test_acknowledged_alert_stops_escalating_and_ack_is_audited():
    d = Dispatcher(cfg(ESCALATING, rosters=ROSTERS), is_working_time=office_hours)
    a = alert(case="H-1", severity="critical")
    d.ingest(a, T0)
    assert escalations(d, T0, 20) == [(15, "district-duty", 1)]
    d.ack(a.fingerprint, "li.wei", T0 + 21 * M, "on my way")
    assert escalations(d, T0 + 21 * M, 60) == []
    assert d.audit[-1].who == "li.wei" and d.audit[-1].action == "ack"


def test_resolve_by_hand_announces_resolution_and_stops_escalation():
    d = Dispatcher(cfg(ESCALATING, rosters=ROSTERS), is_working_time=office_hours)
    a = alert(case="H-1", severity="critical")
    d.ingest(a, T0)
    d.tick(T0)
    d.resolve(a.fingerprint, "zhang.min", T0 + 5 * M)
    ns = d.tick(T0 + 5 * M)
    assert [(n.reason, n.status) for n in ns] == [("group", "resolved")]
    assert escalations(d, T0 + 6 * M, 60) == []
    assert d.alerts[a.fingerprint].resolved_by == "zhang.min"
    with pytest.raises(ValueError):
        d.ack(a.fingerprint, "li.wei", T0 + 7 * M)


def test_silenced_critical_alert_does_not_escalate():
    d = Dispatcher(cfg(ESCALATING, rosters=ROSTERS), is_working_time=office_hours)
    d.ingest(alert(case="H-1", severity="critical"), T0)
    d.tick(T0)
    d.add_silence(["case=H-1"], "li.wei", "handled by phone", T0, T0 + 120 * M, T0 + M)
    assert escalations(d, T0 + M, 60) == []


# -- restart ------------------------------------------------------------------------------


def test_a_rebuilt_dispatcher_replaying_its_input_pages_nobody_twice():
    from alerts.notify import InMemoryOutbox

    outbox = InMemoryOutbox()
    escalating = {**ESCALATING, "receiver": "street-team", "group_by": ["street"]}

    def replay() -> list[bool]:
        d = Dispatcher(cfg(escalating))
        accepted = []
        for minute in range(0, 40, 5):
            d.ingest(
                alert(case=f"H-{minute}", street=f"S{minute % 2}", severity="critical"),
                T0 + minute * M,
            )
            for n in d.tick(T0 + minute * M):
                accepted.append(outbox.accept(n.id, n.receiver, "{}", T0 + minute * M))
        return accepted

    first = replay()
    assert len(first) > 4 and all(first)
    assert replay() == [False] * len(first)  # same ids: the outbox already holds every one


def test_silences_round_trip_as_json_for_storage():
    from alerts.dispatch.silence import Silence

    d = Dispatcher(cfg(ALL_IN_ONE))
    s = d.add_silence(
        ['kind=~"breach|escalation"', "street!=Jinrong"], "li.wei", "storm", T0, T0 + M, T0
    )
    restored = Silence.model_validate_json(s.model_dump_json())
    assert restored == s
    assert restored.mutes({"kind": "breach", "street": "Fuxing"}, T0)
    assert not restored.mutes({"kind": "breach", "street": "Jinrong"}, T0)
