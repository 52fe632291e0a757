"""The durability contract of delivery: the outbox.

A notification is *accepted* when its row is stored; from then on it is delivered at least
once: a worker that dies mid-delivery leaves the row ``pending`` (its in-flight attempt is not
recorded as an outcome), and whoever runs the outbox next sends it again. Rows are keyed by
notification id, which is also the ``webhook-id``, so retries and redeliveries carry the same
id and receivers can deduplicate. A delivery that exhausts its attempts becomes ``dead`` with
its last error and can be re-driven (back to ``pending``, attempts counted on).

Row fields map one to one to a table (ClickHouse ``ReplacingMergeTree(updated_at)`` ordered
by ``notification_id`` would do): notification_id, receiver, payload, attempt, status,
last_error, created_at, updated_at, next_attempt_at, delivered_at.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol

OutboxStatus = Literal["pending", "delivered", "dead", "muted"]
STATUS_AFTER: dict[str, OutboxStatus] = {
    "delivered": "delivered",
    "retry": "pending",
    "dead": "dead",
}
"""A row's status after an attempt with this outcome."""


@dataclass(frozen=True)
class OutboxRow:
    """One notification for one receiver, with its delivery state. ``payload`` is the exact
    body sent (so every attempt is signed over the same bytes)."""

    notification_id: str
    receiver: str
    payload: str
    status: OutboxStatus
    attempt: int  # attempts made so far
    last_error: str
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None = None


class Outbox(Protocol):
    """Storage for accepted notifications and their delivery outcomes.

    Implementations must make ``accept`` idempotent by ``notification_id`` and every other
    call an upsert of one row (the latest ``updated_at`` wins).
    """

    def accept(self, notification_id: str, receiver: str, payload: str, now: datetime) -> bool:
        """Store a new pending row; False (and no change) if the id is already stored."""
        ...

    def due(self, now: datetime, limit: int) -> list[OutboxRow]:
        """Pending rows whose ``next_attempt_at`` has come, oldest first."""
        ...

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
        """Count one finished attempt and store its outcome (a retry needs next_attempt_at);
        ``http_status`` (None: no answer) and ``duration_s`` describe the attempt."""
        ...

    def settle(
        self, notification_id: str, status: Literal["muted", "dead"], reason: str, now: datetime
    ) -> OutboxRow:
        """End a pending row without an attempt: ``muted`` (not sent on purpose, e.g. silenced)
        or ``dead`` (cannot be sent, e.g. its receiver is disabled), with the reason."""
        ...

    def get(self, notification_id: str) -> OutboxRow | None: ...

    def pending(self) -> list[OutboxRow]: ...

    def dead(self, receiver: str | None = None) -> list[OutboxRow]: ...

    def redrive(self, notification_ids: list[str], now: datetime) -> list[OutboxRow]:
        """Make dead (or muted) rows pending again, due now; unknown or live ids are skipped."""
        ...


class InMemoryOutbox:
    """The :class:`Outbox` in a dict (tests, single-process use). Not durable."""

    def __init__(self) -> None:
        self._rows: dict[str, OutboxRow] = {}
        self.history: list[OutboxRow] = []  # every version of every row, in order

    def _put(self, row: OutboxRow) -> OutboxRow:
        self._rows[row.notification_id] = row
        self.history.append(row)
        return row

    def accept(self, notification_id: str, receiver: str, payload: str, now: datetime) -> bool:
        if notification_id in self._rows:
            return False
        self._put(OutboxRow(notification_id, receiver, payload, "pending", 0, "", now, now, now))
        return True

    def due(self, now: datetime, limit: int) -> list[OutboxRow]:
        rows = [r for r in self.pending() if r.next_attempt_at <= now]
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
        return self._put(
            replace(
                row,
                status=status,
                attempt=row.attempt + 1,
                last_error=error,
                updated_at=now,
                next_attempt_at=next_attempt_at or row.next_attempt_at,
                delivered_at=now if outcome == "delivered" else row.delivered_at,
            )
        )

    def settle(self, notification_id, status, reason, now):
        row = self._rows[notification_id]
        if row.status != "pending":
            return row
        return self._put(replace(row, status=status, last_error=reason, updated_at=now))

    def get(self, notification_id: str) -> OutboxRow | None:
        return self._rows.get(notification_id)

    def pending(self) -> list[OutboxRow]:
        return [r for r in self._rows.values() if r.status == "pending"]

    def dead(self, receiver: str | None = None) -> list[OutboxRow]:
        return [
            r for r in self._rows.values() if r.status == "dead" and receiver in (None, r.receiver)
        ]

    def rows(self) -> list[OutboxRow]:
        return list(self._rows.values())

    def redrive(self, notification_ids: list[str], now: datetime) -> list[OutboxRow]:
        out = []
        for nid in notification_ids:
            row = self._rows.get(nid)
            if row is not None and row.status in ("dead", "muted"):
                out.append(
                    self._put(replace(row, status="pending", updated_at=now, next_attempt_at=now))
                )
        return out
