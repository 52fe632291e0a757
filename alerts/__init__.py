"""Alerts: SLA events and early warnings to on-call coordinators (``docs/alerts.md``).

``alerts.model`` (alerts, topic contracts), ``alerts.dispatch`` (routing, grouping, silences,
inhibition, acknowledgement, escalation; pure), ``alerts.notify`` (delivery stages, outbox,
retries; ``alerts.notify.webhook`` signs and posts), ``alerts.receiver`` (reference receiver),
``alerts.api`` (HTTP API).
"""
