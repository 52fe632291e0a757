"""Routing, grouping, timing, silences, inhibition, acknowledgement and escalation (pure)."""

from alerts.dispatch.config import DispatchConfig
from alerts.dispatch.dispatcher import AlertState, AuditEntry, Dispatcher, Suppression
from alerts.dispatch.matchers import Matcher
from alerts.dispatch.route import Route

__all__ = [
    "AlertState",
    "AuditEntry",
    "DispatchConfig",
    "Dispatcher",
    "Matcher",
    "Route",
    "Suppression",
]
