"""The dispatcher: a pure, clock-driven state machine from alerts to notifications.

Time is always passed in; nothing here does I/O. ``ingest(alert, now)`` routes an alert into
its groups; ``flush(now)`` sends each due group at most once per ``group_interval`` (the first
time ``group_wait`` after the group appeared), and an unchanged group only again after
``repeat_interval``; ``escalate(now)`` pages the next receiver for critical alerts nobody has
acknowledged in time; ``tick(now)`` is both. Silenced and inhibited alerts stay in their groups
and are recorded as suppressed (with the silence ids or inhibiting fingerprints), never sent.
Every change made by a person (ack, resolve, silences) is kept in ``audit`` with who made it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from alerts.dispatch.config import DispatchConfig
from alerts.dispatch.inhibit import InhibitionIndex
from alerts.dispatch.matchers import Matcher, match_all
from alerts.dispatch.roster import IsWorkingTime, on_call
from alerts.dispatch.route import Route
from alerts.dispatch.silence import Silence, Silences, silence_id
from alerts.model import Alert, Notification, NotificationReason

SYSTEM = "gridpulse"
"""The author of changes nobody made by hand (escalations)."""


def _always_working(_: datetime) -> bool:
    return True


@dataclass
class AlertState:
    """What the dispatcher knows about one alert (one fingerprint)."""

    alert: Alert
    routes: tuple[Route, ...]
    first_notified_at: datetime | None = None
    acked_by: str = ""
    acked_at: datetime | None = None
    resolved_by: str = ""  # a person; empty when the source resolved it
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()
    escalated: set[tuple[str, int]] = field(default_factory=set)

    @property
    def suppressed(self) -> bool:
        return bool(self.silenced_by or self.inhibited_by)


@dataclass(frozen=True)
class Suppression:
    """A record that an alert was muted (or unmuted: both tuples empty) at ``at``."""

    at: datetime
    fingerprint: str
    silenced_by: tuple[str, ...]
    inhibited_by: tuple[str, ...]


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    who: str
    action: Literal["ack", "resolve", "silence_add", "silence_expire", "escalation", "redrive"]
    target: str
    detail: str = ""


@dataclass
class _Group:
    route: Route
    key: str
    labels: dict[str, str]
    fingerprints: set[str]
    next_flush: datetime
    notified_firing: set[str] = field(default_factory=set)
    last_content: str = ""
    last_sent_at: datetime | None = None
    repeats: int = 0


def _digest(*parts: str, n: int = 24) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:n]


class Dispatcher:
    """Routing, grouping, silences, inhibition, acknowledgement and escalation, in memory."""

    def __init__(
        self,
        config: DispatchConfig,
        is_working_time: IsWorkingTime = _always_working,
        resolved_retention: timedelta = timedelta(days=1),
    ) -> None:
        self.config = config
        self.root = Route.build(config.route)
        self.is_working_time = is_working_time
        self.resolved_retention = resolved_retention
        self.silences = Silences()
        self.alerts: dict[str, AlertState] = {}
        self.audit: list[AuditEntry] = []
        self.suppressions: list[Suppression] = []
        self._groups: dict[str, _Group] = {}
        self._escalating: set[str] = set()  # fingerprints that may still escalate
        # fingerprints whose state changed since the owner last took them (to persist them)
        self.touched: set[str] = set()
        # suppression is recomputed only after a change, or when a silence starts or ends
        self._suppression_dirty = True
        self._suppression_at: datetime | None = None
        self._suppression_until: datetime | None = None

    # -- input ------------------------------------------------------------------------------

    def ingest(self, alert: Alert, now: datetime) -> bool:
        """Take a new alert or a new version of a known one; False if it changes nothing
        (a redelivery, or a firing copy older than the known resolution)."""
        fp = alert.fingerprint
        state = self.alerts.get(fp)
        if state is not None:
            old = state.alert
            if old.status == "resolved" and alert.status == "firing":
                assert old.ends_at is not None
                if alert.starts_at <= old.ends_at:
                    return False
                state = None  # a new incarnation: fresh acknowledgement and escalation
            elif alert.status == "firing":
                alert = alert.model_copy(update={"starts_at": min(old.starts_at, alert.starts_at)})
            elif old.status == "resolved":
                return False
            if state is not None and alert == old:
                return False
        if state is None:
            state = AlertState(alert=alert, routes=tuple(self.root.match(alert.labels)))
            self.alerts[fp] = state
        else:
            state.alert = alert
        self.touched.add(fp)
        self._suppression_dirty = True
        for route in state.routes:
            self._group_for(route, alert, now).fingerprints.add(fp)
            esc = route.escalation
            if alert.status == "firing" and esc is not None and alert.severity in esc.severities:
                self._escalating.add(fp)
        return True

    def restore(
        self,
        alert: Alert,
        now: datetime,
        first_notified_at: datetime | None = None,
        acked_by: str = "",
        acked_at: datetime | None = None,
        resolved_by: str = "",
        escalated: Iterable[tuple[str, int]] = (),
        resolution_sent: bool = False,
    ) -> AlertState:
        """Put back a stored alert with what people and escalation did to it (after a restart).

        A firing alert rejoins its groups (announced firing to them if it was notified before,
        so a later resolution is announced); a resolved one rejoins only to have its resolution
        announced, if it was notified firing and the resolution was not sent yet; otherwise it
        is only remembered, so a redelivered firing copy is recognised as old.
        """
        state = AlertState(
            alert=alert,
            routes=tuple(self.root.match(alert.labels)),
            first_notified_at=first_notified_at,
            acked_by=acked_by,
            acked_at=acked_at,
            resolved_by=resolved_by,
            escalated=set(escalated),
        )
        fp = alert.fingerprint
        self.alerts[fp] = state
        self._suppression_dirty = True
        firing = alert.status == "firing"
        if not firing and (resolution_sent or first_notified_at is None):
            return state
        for route in state.routes:
            g = self._group_for(route, alert, now)
            g.fingerprints.add(fp)
            if first_notified_at is not None:
                g.notified_firing.add(fp)
            esc = route.escalation
            if firing and not acked_by and esc is not None and alert.severity in esc.severities:
                self._escalating.add(fp)
        return state

    def _group_for(self, route: Route, alert: Alert, now: datetime) -> _Group:
        labels = route.group_labels(alert.labels)
        key = route.id + ":{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        g = self._groups.get(key)
        if g is None:
            g = _Group(route, key, labels, set(), next_flush=now + route.group_wait)
            self._groups[key] = g
        return g

    # -- people -----------------------------------------------------------------------------

    def ack(self, fingerprint: str, who: str, now: datetime, note: str = "") -> AlertState:
        """Acknowledge a firing alert: it stops escalating. KeyError if unknown."""
        state = self.alerts[fingerprint]
        if state.alert.status != "firing":
            raise ValueError(f"alert {fingerprint} is resolved")
        state.acked_by, state.acked_at = who, now
        self.touched.add(fingerprint)
        self.audit.append(AuditEntry(now, who, "ack", fingerprint, note))
        return state

    def resolve(self, fingerprint: str, who: str, now: datetime, note: str = "") -> AlertState:
        """Resolve an alert by hand; its groups send it as resolved at their next flush."""
        state = self.alerts[fingerprint]
        if state.alert.status == "firing":
            state.alert = state.alert.resolved(now)
            state.resolved_by = who
            self.touched.add(fingerprint)
            self._suppression_dirty = True
        self.audit.append(AuditEntry(now, who, "resolve", fingerprint, note))
        return state

    def add_silence(
        self,
        matchers: Iterable[str | Matcher],
        author: str,
        reason: str,
        starts_at: datetime,
        ends_at: datetime,
        now: datetime,
    ) -> Silence:
        ms = [m if isinstance(m, Matcher) else Matcher.parse(m) for m in matchers]
        sid = silence_id(ms, author, now, len(self.silences.all()))
        s = self.silences.add(
            Silence(
                id=sid,
                matchers=ms,
                author=author,
                reason=reason,
                starts_at=starts_at,
                ends_at=ends_at,
                created_at=now,
            )
        )
        self.audit.append(
            AuditEntry(now, author, "silence_add", sid, f"{reason} [{', '.join(map(str, ms))}]")
        )
        self._suppression_dirty = True
        return s

    def expire_silence(self, sid: str, who: str, now: datetime) -> Silence:
        s = self.silences.expire(sid, who, now)
        self.audit.append(AuditEntry(now, who, "silence_expire", sid))
        self._suppression_dirty = True
        return s

    def restore_silence(self, silence: Silence) -> None:
        """Put back a stored silence as it was (after a restart)."""
        self.silences.restore(silence)
        self._suppression_dirty = True

    # -- time -------------------------------------------------------------------------------

    def tick(self, now: datetime) -> list[Notification]:
        """Everything due at ``now``: group notifications, then escalations."""
        return self.flush(now) + self.escalate(now)

    def flush(self, now: datetime) -> list[Notification]:
        """One notification per due group whose content changed or whose repeat is due."""
        due = sorted(k for k, g in self._groups.items() if g.next_flush <= now)
        if not due:
            return []
        self._update_suppression(now)
        out: list[Notification] = []
        for key in due:
            g = self._groups[key]
            n = self._flush_group(g, now)
            if n is not None:
                out.append(n)
            g.next_flush = now + g.route.group_interval
            if not g.fingerprints:
                del self._groups[key]
        self._forget_resolved(now)
        return out

    def _update_suppression(self, now: datetime) -> None:
        fresh = (
            not self._suppression_dirty
            and self._suppression_at is not None
            and self._suppression_at <= now
            and (self._suppression_until is None or now < self._suppression_until)
        )
        if fresh:
            return  # nothing changed and no silence started or ended since
        self._suppression_dirty = False
        self._suppression_at = now
        self._suppression_until = min(
            (t for x in self.silences.all() for t in (x.starts_at, x.ends_at) if t > now),
            default=None,
        )
        index = InhibitionIndex(
            self.config.inhibit_rules,
            (s.alert for s in self.alerts.values() if s.alert.status == "firing"),
        )
        active = self.silences.active(now)
        for fp, s in self.alerts.items():
            silenced = tuple(sorted(x.id for x in active if match_all(x.matchers, s.alert.labels)))
            inhibited = tuple(index.inhibited_by(s.alert)) if s.alert.status == "firing" else ()
            if (silenced, inhibited) != (s.silenced_by, s.inhibited_by):
                s.silenced_by, s.inhibited_by = silenced, inhibited
                self.suppressions.append(Suppression(now, fp, silenced, inhibited))

    def _flush_group(self, g: _Group, now: datetime) -> Notification | None:
        states = [self.alerts[fp] for fp in sorted(g.fingerprints)]
        firing = [s for s in states if s.alert.status == "firing" and not s.suppressed]
        # resolved alerts are announced once, and only to groups that announced them firing
        resolved = [
            s.alert
            for s in states
            if s.alert.status == "resolved" and s.alert.fingerprint in g.notified_firing
        ]
        for s in states:
            if s.alert.status == "resolved":
                g.fingerprints.discard(s.alert.fingerprint)
        alerts = [s.alert for s in firing] + resolved
        if not alerts:
            return None
        receiver = on_call(g.route.receiver, self.config.rosters, now, self.is_working_time)
        content = _digest(
            receiver,
            *(f"{a.fingerprint}:{a.status}:{a.starts_at.isoformat()}" for a in alerts),
        )
        changed = content != g.last_content
        repeat_due = (
            bool(firing)
            and g.last_sent_at is not None
            and now - g.last_sent_at >= g.route.repeat_interval
        )
        if not changed and not repeat_due:
            return None
        g.repeats = 0 if changed else g.repeats + 1
        reason: NotificationReason = "group" if changed else "repeat"
        g.last_content, g.last_sent_at = content, now
        g.notified_firing = (g.notified_firing | {s.alert.fingerprint for s in firing}) - {
            a.fingerprint for a in resolved
        }
        for s in firing:
            if s.first_notified_at is None:
                s.first_notified_at = now
                self.touched.add(s.alert.fingerprint)
        return Notification(
            id=_digest(receiver, g.key, content, str(g.repeats)),
            receiver=receiver,
            group_key=g.key,
            group_labels=g.labels,
            reason=reason,
            alerts=tuple(alerts),
            acknowledged=tuple(s.alert.fingerprint for s in firing if s.acked_by),
            created_at=now,
        )

    def escalate(self, now: datetime) -> list[Notification]:
        """Page each due escalation step of firing, unacknowledged, unsuppressed alerts,
        counted from the alert's first notification; each step fires once per incarnation."""
        out: list[Notification] = []
        for fp in sorted(self._escalating):
            s = self.alerts.get(fp)
            if s is None:
                self._escalating.discard(fp)
                continue
            a = s.alert
            if a.status != "firing" or s.acked_by:
                self._escalating.discard(fp)
                continue
            if s.suppressed or s.first_notified_at is None:
                continue
            for route in s.routes:
                esc = route.escalation
                if esc is None or a.severity not in esc.severities:
                    continue
                for i, step in enumerate(esc.steps):
                    if (route.id, i) in s.escalated or now < s.first_notified_at + step.after:
                        continue
                    s.escalated.add((route.id, i))
                    self.touched.add(fp)
                    receiver = on_call(
                        step.receiver, self.config.rosters, now, self.is_working_time
                    )
                    self.audit.append(
                        AuditEntry(now, SYSTEM, "escalation", fp, f"step {i + 1} to {receiver}")
                    )
                    out.append(
                        Notification(
                            id=_digest("escalation", route.id, fp, a.starts_at.isoformat(), str(i)),
                            receiver=receiver,
                            group_key=f"escalation:{route.id}:{fp}",
                            group_labels=dict(a.labels),
                            reason="escalation",
                            alerts=(a,),
                            escalation_step=i + 1,
                            created_at=now,
                        )
                    )
        return out

    def _forget_resolved(self, now: datetime) -> None:
        grouped = set().union(*(g.fingerprints for g in self._groups.values()))
        for fp in [fp for fp, s in self.alerts.items() if s.alert.status == "resolved"]:
            ends = self.alerts[fp].alert.ends_at
            if fp not in grouped and ends is not None and now - ends > self.resolved_retention:
                del self.alerts[fp]

    def mute_reason(self, n: Notification, now: datetime) -> str | None:
        """A reason to hold back ``n`` at delivery (the notify mute stage): every firing alert
        in it is now silenced or inhibited, and it announces no resolution."""
        if n.reason == "escalation" or any(a.status == "resolved" for a in n.alerts):
            return None
        self._update_suppression(now)
        states = [self.alerts.get(a.fingerprint) for a in n.alerts]
        if not states or not all(s is not None and s.suppressed for s in states):
            return None
        parts = sorted(
            {f"silenced by {sid}" for s in states if s for sid in s.silenced_by}
            | {f"inhibited by {fp}" for s in states if s for fp in s.inhibited_by}
        )
        return "; ".join(parts)

    # -- read model -------------------------------------------------------------------------

    def open_alerts(self) -> list[AlertState]:
        """Firing alerts, most severe first."""
        from alerts.model import SEVERITY_RANK

        firing = [s for s in self.alerts.values() if s.alert.status == "firing"]
        return sorted(firing, key=lambda s: (-SEVERITY_RANK[s.alert.severity], s.alert.starts_at))

    def next_due(self) -> datetime | None:
        """When the next group is due (escalations are checked on every tick)."""
        return min((g.next_flush for g in self._groups.values()), default=None)
