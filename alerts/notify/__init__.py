"""Delivery of notifications: acceptance stages, the outbox, retries, per-receiver lanes."""

from alerts.notify.outbox import InMemoryOutbox, Outbox, OutboxRow
from alerts.notify.pipeline import AttemptResult, Integration, Notifier
from alerts.notify.retry import RetryPolicy

__all__ = [
    "AttemptResult",
    "InMemoryOutbox",
    "Integration",
    "Notifier",
    "Outbox",
    "OutboxRow",
    "RetryPolicy",
]
