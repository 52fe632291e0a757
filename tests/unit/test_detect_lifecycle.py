"""The warning lifecycle: fire / update / resolve once per fingerprint, also after rebuild."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.warning import EarlyWarning, fingerprint
from streams.detect.config import LifecycleConfig
from streams.detect.lifecycle import WarningLifecycle
from streams.detect.verdict import Verdict

T0 = datetime(2026, 11, 2, tzinfo=UTC)
KEY = {"district": "D1", "street": "S1", "community": "C1", "grid_code": "G7", "category": "noise"}
CONFIG = LifecycleConfig(resolve_after_quiet=3, update_cadence=timedelta(hours=6))


def verdict(hour: int, severity: str | None, key: dict[str, str] = KEY) -> Verdict:
    start = T0 + timedelta(hours=hour)
    return Verdict(
        kind="count_spike",
        key=key,
        severity=severity,  # type: ignore[arg-type]
        observed=9.0 if severity else 1.0,
        expected=1.0,
        score=0.8 if severity else 0.1,
        window_start=start,
        window_end=start + timedelta(hours=1),
        detector="seasonal",
        params={"surprise": 5.0},
        evidence=tuple(f"ev-{hour}-{i}" for i in range(120)),
    )


def statuses(warnings: list[EarlyWarning]) -> list[tuple[int, str, str]]:
    return [(w.revision, w.status, w.severity) for w in warnings]


def test_fire_update_resolve_once() -> None:
    machine = WarningLifecycle(CONFIG)
    plan = ["minor", "minor", "major", "major", None, None, "major", None, None, None, None]
    out = machine.observe_all(verdict(h, s) for h, s in enumerate(plan))
    assert statuses(out) == [
        (0, "firing", "minor"),
        (1, "firing", "major"),
        (2, "resolved", "major"),
    ]
    fired, changed, resolved = out
    assert fired.fingerprint == fingerprint("count_spike", KEY)
    assert fired.where.grid_code == "G7" and fired.where.community == "C1"
    assert fired.category == "noise"
    assert fired.started_at == T0 and changed.started_at == T0
    assert len(fired.evidence) == 100
    assert resolved.resolved_at == T0 + timedelta(hours=10)
    assert not machine.firing()


def test_update_at_cadence_only() -> None:
    machine = WarningLifecycle(CONFIG)
    out = machine.observe_all(verdict(h, "minor") for h in range(14))
    assert [w.revision for w in out] == [0, 1, 2]
    assert [w.updated_at - T0 for w in out] == [timedelta(hours=h) for h in (1, 7, 13)]


def test_redelivered_verdicts_publish_nothing() -> None:
    machine = WarningLifecycle(CONFIG)
    assert machine.observe(verdict(0, "minor")) is not None
    assert machine.observe(verdict(0, "major")) is None
    assert machine.observe(verdict(0, None)) is None


def test_quiet_without_warning_publishes_nothing() -> None:
    machine = WarningLifecycle(CONFIG)
    assert machine.observe_all(verdict(h, None) for h in range(5)) == []
    assert machine.tracks == {}


def test_refire_after_resolve_continues_revisions() -> None:
    machine = WarningLifecycle(CONFIG)
    plan = ["minor", None, None, None, "critical"]
    out = machine.observe_all(verdict(h, s) for h, s in enumerate(plan))
    assert statuses(out) == [
        (0, "firing", "minor"),
        (1, "resolved", "minor"),
        (2, "firing", "critical"),
    ]
    assert out[2].started_at == T0 + timedelta(hours=4)


def test_min_quiet_delays_resolution() -> None:
    config = LifecycleConfig(resolve_after_quiet=1, min_quiet=timedelta(hours=3))
    machine = WarningLifecycle(config)
    out = machine.observe_all(verdict(h, s) for h, s in enumerate(["minor", None, None, None]))
    assert [w.status for w in out] == ["firing", "resolved"]
    assert out[1].window_end == T0 + timedelta(hours=4)


def test_fingerprints_are_independent() -> None:
    other = {**KEY, "grid_code": "G8"}
    machine = WarningLifecycle(CONFIG)
    out = machine.observe_all([verdict(0, "minor"), verdict(0, "minor", other)])
    assert {w.fingerprint for w in out} == {
        fingerprint("count_spike", KEY),
        fingerprint("count_spike", other),
    }


PLAN = ["minor", "minor", None, "major", None, None, None, None, "minor"] + [None] * 4


@pytest.mark.parametrize("crash_after", range(len(PLAN) + 1))
def test_restart_rebuild_publishes_each_revision_once(crash_after: int) -> None:
    """Crash after any verdict; rebuild from the stored warnings and replay later windows."""
    verdicts = [verdict(h, s) for h, s in enumerate(PLAN)]
    expected = WarningLifecycle(CONFIG).observe_all(verdicts)

    first = WarningLifecycle(CONFIG)
    stored = first.observe_all(verdicts[:crash_after])
    restarted = WarningLifecycle.rebuild(stored, CONFIG)
    last = max((w.updated_at for w in stored), default=None)
    replay = [v for v in verdicts if last is None or v.window_end > last]
    again = restarted.observe_all(replay)
    published = {(w.fingerprint, w.revision): w for w in stored + again}
    assert len(published) == len(stored) + len(again), "a revision was published twice"
    assert sorted(statuses(list(published.values()))) == sorted(statuses(expected))
    assert [w.status for w in expected].count("firing") >= 2


def test_rebuild_keeps_open_warning_open_and_resolves_it_once() -> None:
    machine = WarningLifecycle(CONFIG)
    stored = machine.observe_all([verdict(0, "major"), verdict(1, "major")])
    restarted = WarningLifecycle.rebuild(stored + stored, CONFIG)
    assert set(restarted.firing()) == {fingerprint("count_spike", KEY)}
    assert restarted.observe(verdict(0, "critical")) is None, "a published window came again"
    out = restarted.observe_all(verdict(h, None) for h in range(1, 9))
    assert statuses(out) == [(1, "resolved", "major")]
    assert out[0].window_end == T0 + timedelta(hours=4)
