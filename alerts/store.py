"""The alert stage's durable state in ClickHouse: the outbox, delivery attempts, alert states,
the audit log and silences (tables and SQL in ``sinks.clickhouse.alerts``).

:class:`ClickHouseOutbox` is the :class:`~alerts.notify.Outbox` the notifier uses: it answers
from memory (the notifier and dispatcher are synchronous) and queues every row version and
attempt; :meth:`AlertStore.save` writes the queues and the dispatcher's changed states, one
insert per table. A notification is *accepted* once its row is stored: ``due`` hands out only
stored rows, so nothing is sent that a restart could forget. :meth:`AlertStore.load` reads
back what a restarted stage needs (see :func:`restore`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import pandas as pd

from alerts.dispatch.dispatcher import AlertState, AuditEntry, Dispatcher
from alerts.dispatch.silence import Silence
from alerts.model import Alert, Notification
from alerts.notify.outbox import STATUS_AFTER, OutboxRow
from sinks.clickhouse import alerts as sql

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Backend(Protocol):
    """What the store needs of a ClickHouse backend (``sinks.clickhouse.backend``)."""

    db: str

    async def insert(self, table: str, frame: pd.DataFrame) -> None: ...

    async def rows(self, sql: str) -> list[tuple[Any, ...]]: ...


def _secs(t: datetime | None) -> int:
    return int(t.timestamp()) if t is not None else 0


def _time(secs: Any) -> datetime | None:
    s = int(secs)
    return datetime.fromtimestamp(s, UTC) if s > 0 else None


class _Versions:
    """Strictly increasing microsecond versions (ReplacingMergeTree keeps the highest)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1000)
        return self._last


@dataclass(frozen=True)
class Attempt:
    notification_id: str
    receiver: str
    attempt: int
    outcome: str
    http_status: int
    error: str
    duration_ms: float
    at: datetime


class ClickHouseOutbox:
    """The outbox over ClickHouse: rows in memory, every version queued for
    :meth:`AlertStore.save`. ``due`` offers only rows whose acceptance is stored."""

    def __init__(self) -> None:
        self._rows: dict[str, OutboxRow] = {}
        self._pending: dict[str, OutboxRow] = {}  # the pending subset of _rows
        self._stored: set[str] = set()  # ids whose accepted row is in ClickHouse
        self.queued: list[OutboxRow] = []
        self.attempts: list[Attempt] = []

    # -- restore -----------------------------------------------------------------------------

    def load(self, rows: Sequence[OutboxRow]) -> None:
        """Rows read back from ClickHouse (already stored)."""
        for r in rows:
            self._keep(r)
            self._stored.add(r.notification_id)

    def stored(self, ids: Sequence[str]) -> None:
        """These rows' versions are now in ClickHouse."""
        self._stored.update(ids)

    def _keep(self, row: OutboxRow) -> None:
        nid = row.notification_id
        # a delivered row is kept only to refuse its id again: its body is not needed
        self._rows[nid] = replace(row, payload="") if row.status == "delivered" else row
        if row.status == "pending":
            self._pending[nid] = row
        else:
            self._pending.pop(nid, None)

    def _put(self, row: OutboxRow) -> OutboxRow:
        self._keep(row)
        self.queued.append(row)
        return row

    # -- the Outbox protocol -------------------------------------------------------------------

    def accept(self, notification_id: str, receiver: str, payload: str, now: datetime) -> bool:
        if notification_id in self._rows:
            return False
        self._put(OutboxRow(notification_id, receiver, payload, "pending", 0, "", now, now, now))
        return True

    def due(self, now: datetime, limit: int) -> list[OutboxRow]:
        stored = self._stored
        rows = [
            r
            for r in self._pending.values()
            if r.next_attempt_at <= now and r.notification_id in stored
        ]
        rows.sort(key=lambda r: (r.next_attempt_at, r.created_at, r.notification_id))
        return rows[:limit]

    def record_attempt(
        self,
        notification_id: str,
        outcome: Literal["delivered", "retry", "dead"],
        error: str,
        now: datetime,
        next_attempt_at: datetime | None = None,
        http_status: int | None = None,
        duration_s: float = 0.0,
    ) -> OutboxRow:
        row = self._rows[notification_id]
        if row.status != "pending":
            return row
        if outcome == "retry" and next_attempt_at is None:
            raise ValueError("a retry needs next_attempt_at")
        status = STATUS_AFTER[outcome]
        new = replace(
            row,
            status=status,
            attempt=row.attempt + 1,
            last_error=error,
            updated_at=now,
            next_attempt_at=next_attempt_at or row.next_attempt_at,
            delivered_at=now if outcome == "delivered" else row.delivered_at,
        )
        self.attempts.append(
            Attempt(
                notification_id,
                row.receiver,
                new.attempt,
                outcome,
                http_status or 0,
                error,
                duration_s * 1000,
                now,
            )
        )
        return self._put(new)

    def settle(
        self, notification_id: str, status: Literal["muted", "dead"], reason: str, now: datetime
    ) -> OutboxRow:
        row = self._rows[notification_id]
        if row.status != "pending":
            return row
        return self._put(replace(row, status=status, last_error=reason, updated_at=now))

    def get(self, notification_id: str) -> OutboxRow | None:
        return self._rows.get(notification_id)

    def pending(self) -> list[OutboxRow]:
        return list(self._pending.values())

    def dead(self, receiver: str | None = None) -> list[OutboxRow]:
        return [
            r for r in self._rows.values() if r.status == "dead" and receiver in (None, r.receiver)
        ]

    def redrive(self, notification_ids: list[str], now: datetime) -> list[OutboxRow]:
        out = []
        for nid in notification_ids:
            row = self._rows.get(nid)
            if row is not None and row.status in ("dead", "muted"):
                out.append(
                    self._put(replace(row, status="pending", updated_at=now, next_attempt_at=now))
                )
        return out


# -- rows of the tables ------------------------------------------------------------------------


def outbox_frame(rows: Sequence[OutboxRow], versions: _Versions) -> pd.DataFrame:
    return pd.DataFrame(
        [
            (
                r.notification_id,
                r.receiver,
                r.payload,
                r.status,
                r.attempt,
                r.last_error,
                _secs(r.created_at),
                _secs(r.updated_at),
                _secs(r.next_attempt_at),
                _secs(r.delivered_at),
                versions.next(),
            )
            for r in rows
        ],
        columns=list(sql.OUTBOX_COLUMNS),
    )


def attempts_frame(rows: Sequence[Attempt]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            (
                a.notification_id,
                a.receiver,
                a.attempt,
                a.outcome,
                a.http_status,
                a.error,
                float(a.duration_ms),
                _secs(a.at),
            )
            for a in rows
        ],
        columns=list(sql.ATTEMPT_COLUMNS),
    )


@dataclass(frozen=True)
class StateVersion:
    """What is stored of one alert's dispatcher state (compared to find changes)."""

    alert: Alert
    first_notified_at: datetime | None
    acked_by: str
    acked_at: datetime | None
    resolved_by: str
    escalated: frozenset[tuple[str, int]]
    resolution_sent: bool

    @classmethod
    def of(cls, s: AlertState, resolution_sent: bool) -> StateVersion:
        return cls(
            s.alert,
            s.first_notified_at,
            s.acked_by,
            s.acked_at,
            s.resolved_by,
            frozenset(s.escalated),
            resolution_sent,
        )


def states_frame(rows: Sequence[StateVersion], now: datetime, versions: _Versions) -> pd.DataFrame:
    out = []
    for v in rows:
        a, lab = v.alert, v.alert.labels
        out.append(
            (
                a.fingerprint,
                lab.get("alertname", ""),
                a.status,
                a.severity,
                lab.get("district", ""),
                lab.get("street", ""),
                lab.get("community", ""),
                lab.get("grid", ""),
                lab.get("category", ""),
                lab.get("kind", ""),
                lab.get("unit", ""),
                lab.get("case", ""),
                a.annotations.get("summary", ""),
                _secs(a.starts_at),
                _secs(a.ends_at),
                _secs(v.first_notified_at),
                v.acked_by,
                _secs(v.acked_at),
                v.resolved_by,
                len(v.escalated),
                int(v.resolution_sent),
                a.model_dump_json(),
                json.dumps(sorted(v.escalated)),
                _secs(now),
                versions.next(),
            )
        )
    return pd.DataFrame(out, columns=list(sql.STATE_COLUMNS))


def audit_frame(rows: Sequence[AuditEntry], versions: _Versions) -> pd.DataFrame:
    return pd.DataFrame(
        [(_secs(e.at), e.who, e.action, e.target, e.detail, versions.next()) for e in rows],
        columns=list(sql.AUDIT_COLUMNS),
    )


def silences_frame(rows: Sequence[Silence], versions: _Versions) -> pd.DataFrame:
    return pd.DataFrame(
        [
            (
                s.id,
                s.author,
                s.reason,
                json.dumps([str(m) for m in s.matchers]),
                _secs(s.starts_at),
                _secs(s.ends_at),
                _secs(s.created_at),
                s.expired_by,
                s.model_dump_json(),
                versions.next(),
            )
            for s in rows
        ],
        columns=list(sql.SILENCE_COLUMNS),
    )


# -- the store ---------------------------------------------------------------------------------


@dataclass
class Stored:
    """What a restarted stage reads back."""

    outbox: list[OutboxRow] = field(default_factory=list)
    states: list[StateVersion] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)


class AlertStore:
    """Saves the dispatcher's changes and the outbox's queues; loads them back on start.

    ``save`` is serialised (one at a time) and leaves whatever it could not write queued for
    the next call, so a failing insert loses nothing.
    """

    def __init__(self, backend: Backend, keep: timedelta = timedelta(days=30)) -> None:
        self.backend = backend
        self.db = backend.db
        self.keep = keep  # delivered ids are remembered (to refuse them again) this long
        self.outbox = ClickHouseOutbox()
        self._versions = _Versions()
        self._lock = asyncio.Lock()
        self._saved_states: dict[str, StateVersion] = {}
        self._saved_silences: dict[str, Silence] = {}
        self._audit_saved = 0
        self._resolution_sent: set[tuple[str, str]] = set()  # (fingerprint, ends_at)
        self._recheck: set[str] = set()  # fingerprints to compare again at the next save

    def notified(self, notifications: Sequence[Notification]) -> None:
        """Record which resolutions these (accepted) notifications announce."""
        for n in notifications:
            for a in n.alerts:
                if a.status == "resolved" and a.ends_at is not None:
                    self._resolution_sent.add((a.fingerprint, a.ends_at.isoformat()))
                    self._recheck.add(a.fingerprint)

    def _sent(self, s: AlertState) -> bool:
        a = s.alert
        ends = a.ends_at.isoformat() if a.ends_at else ""
        return a.status == "resolved" and (a.fingerprint, ends) in self._resolution_sent

    async def load(self, now: datetime, dispatcher_keep: timedelta) -> Stored:
        """Read back the outbox (to do, re-drivable, and ids delivered within ``keep``), the
        alerts firing or resolved within ``dispatcher_keep``, the silences and the audit log
        of that period. The rows read are the saved baseline."""
        since = int((now - self.keep).timestamp())
        recent = int((now - dispatcher_keep).timestamp())
        out = Stored()
        for nid, rcv, body, st, att, err, c, u, nxt, dlv in await self.backend.rows(
            sql.outbox_rows_sql(self.db, since)
        ):
            created = _time(c) or EPOCH
            out.outbox.append(
                OutboxRow(
                    str(nid),
                    str(rcv),
                    str(body),
                    str(st),  # type: ignore[arg-type]
                    int(att),
                    str(err),
                    created,
                    _time(u) or created,
                    _time(nxt) or created,
                    _time(dlv),
                )
            )
        states = await self.backend.rows(sql.alert_states_sql(self.db, recent))
        for alert, first, acked_by, acked_at, resolved_by, escalated, sent in states:
            out.states.append(
                StateVersion(
                    Alert.model_validate_json(alert),
                    _time(first),
                    str(acked_by),
                    _time(acked_at),
                    str(resolved_by),
                    frozenset((str(r), int(i)) for r, i in json.loads(escalated)),
                    bool(int(sent)),
                )
            )
        for (raw,) in await self.backend.rows(sql.silences_sql(self.db, recent)):
            out.silences.append(Silence.model_validate_json(raw))
        for at, who, action, target, detail in await self.backend.rows(
            sql.audit_sql(self.db, recent)
        ):
            out.audit.append(
                AuditEntry(_time(at) or EPOCH, str(who), action, str(target), str(detail))
            )
        self.outbox.load(out.outbox)
        self._saved_states = {v.alert.fingerprint: v for v in out.states}
        for v in out.states:
            if v.resolution_sent and v.alert.ends_at is not None:
                self._resolution_sent.add((v.alert.fingerprint, v.alert.ends_at.isoformat()))
        self._saved_silences = {s.id: s for s in out.silences}
        self._audit_saved = len(out.audit)
        return out

    async def save(self, dispatcher: Dispatcher, now: datetime) -> int:
        """Write every queued outbox version and attempt, and the dispatcher's changed alert
        states, new audit entries and changed silences; returns the rows written. Raises if
        an insert fails (what was not written stays queued)."""
        async with self._lock:
            written = 0
            ob = self.outbox
            if ob.queued:
                rows = list(ob.queued)
                await self.backend.insert(sql.OUTBOX_TABLE, outbox_frame(rows, self._versions))
                del ob.queued[: len(rows)]
                ob.stored([r.notification_id for r in rows])
                written += len(rows)
            if ob.attempts:
                attempts = list(ob.attempts)
                await self.backend.insert(sql.ATTEMPTS_TABLE, attempts_frame(attempts))
                del ob.attempts[: len(attempts)]
                written += len(attempts)
            touched = dispatcher.touched | self._recheck
            dispatcher.touched, self._recheck = set(), set()
            changed = []
            for fp in sorted(touched):
                s = dispatcher.alerts.get(fp)
                if s is None:
                    continue
                v = StateVersion.of(s, self._sent(s))
                if self._saved_states.get(fp) != v:
                    changed.append(v)
            if changed:
                try:
                    await self.backend.insert(
                        sql.STATE_TABLE, states_frame(changed, now, self._versions)
                    )
                except BaseException:
                    self._recheck |= touched
                    raise
                self._saved_states.update({v.alert.fingerprint: v for v in changed})
                written += len(changed)
            entries = dispatcher.audit[self._audit_saved :]
            if entries:
                await self.backend.insert(sql.AUDIT_TABLE, audit_frame(entries, self._versions))
                self._audit_saved += len(entries)
                written += len(entries)
            silences = [s for s in dispatcher.silences.all() if self._saved_silences.get(s.id) != s]
            if silences:
                await self.backend.insert(
                    sql.SILENCE_TABLE, silences_frame(silences, self._versions)
                )
                self._saved_silences.update({s.id: s for s in silences})
                written += len(silences)
            return written


def restore(dispatcher: Dispatcher, stored: Stored, now: datetime) -> None:
    """Rebuild a fresh dispatcher from what was stored: silences, the audit log, and each
    alert with its first notification, acknowledgement, resolution and escalation steps.

    Notification ids are deterministic, so what the rebuilt dispatcher produces again for
    content already sent is refused by the outbox: a restart does not page anyone again.
    """
    for s in stored.silences:
        dispatcher.restore_silence(s)
    dispatcher.audit.extend(stored.audit)
    for v in stored.states:
        dispatcher.restore(
            v.alert,
            now,
            first_notified_at=v.first_notified_at,
            acked_by=v.acked_by,
            acked_at=v.acked_at,
            resolved_by=v.resolved_by,
            escalated=v.escalated,
            resolution_sent=v.resolution_sent,
        )
