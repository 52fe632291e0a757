"""Alerts: rules, routing (dispatch) and delivery (notify) of SLA warnings, breaches and
anomalies to on-call coordinators. Consumes the `sla.events` topic; built in the next issue."""
