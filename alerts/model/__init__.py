"""What the alert stage works on: alerts, notifications and their input contracts
(``alert``), and configuration durations (``duration``). ``dispatch`` and ``notify`` build
on this package and on nothing else of ``alerts``."""

from alerts.model.alert import (
    ANNOTATION_NAMES,
    LABEL_NAMES,
    SEVERITY_RANK,
    Alert,
    Locate,
    Notification,
    NotificationReason,
    Severity,
    alert_from_sla,
    alert_from_warning,
    fingerprint_of,
    scrub,
)
from alerts.model.duration import Duration, parse_duration

__all__ = [
    "ANNOTATION_NAMES",
    "LABEL_NAMES",
    "SEVERITY_RANK",
    "Alert",
    "Duration",
    "Locate",
    "Notification",
    "NotificationReason",
    "Severity",
    "alert_from_sla",
    "alert_from_warning",
    "fingerprint_of",
    "parse_duration",
    "scrub",
]
