"""The read-only ClickHouse user Grafana connects as, as SQL for a migration.

Only servers with SQL-driven access control (ClickHouse 20.4 and later) can run it; Debian's
18.16 and the embedded engine (chdb: no user directory) cannot, so the caller gates it with
``supports_sql_users``. The password is never written: the statements carry its SHA-256.
"""

from __future__ import annotations

import hashlib
import re

from grafana.readmodel import ALERT_VIEWS, RAW_TABLES, VIEWS, WARNING_VIEWS

USER = "gridpulse_grafana"
PASSWORD_ENV = "GRIDPULSE_GRAFANA_PASSWORD"

READ_TABLES: tuple[str, ...] = (*VIEWS, *WARNING_VIEWS, *ALERT_VIEWS, *RAW_TABLES, "case_state")
"""What the boards read: the read-model views (counts, cases, SLA alerts, warnings, on-call),
the clean raw tables, and ``case_state``, which the KPI SQL of ``sinks.clickhouse.kpis``
reads directly (``FINAL``). Never the alert stage's own tables: the outbox payloads and the
alert JSON stay out of Grafana."""

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def supports_sql_users(version: str) -> bool:
    """``CREATE USER``/``GRANT`` exist from ClickHouse 20.4 on."""
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    return parts >= (20, 4)


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


def read_only_user_sql(
    db: str, password: str, user: str = USER, tables: tuple[str, ...] = READ_TABLES
) -> list[str]:
    """Statements that create (or reset) ``user`` with ``SELECT`` on ``db.<table>`` for each
    of ``tables`` and nothing else. Re-running them is harmless: the user's password and
    grants are set again, other grants revoked. ``readonly = 2`` forbids writes and DDL while
    letting the plugin set ``max_execution_time`` per query."""
    if not password:
        raise ValueError(f"empty password for {user} (set {PASSWORD_ENV})")
    db, user = _ident(db), _ident(user)
    digest = hashlib.sha256(password.encode("utf-8")).hexdigest()
    auth = f"IDENTIFIED WITH sha256_hash BY '{digest}'"
    return [
        f"CREATE USER IF NOT EXISTS {user} {auth} DEFAULT DATABASE {db} SETTINGS readonly = 2",
        f"ALTER USER {user} {auth} DEFAULT DATABASE {db} SETTINGS readonly = 2",
        f"REVOKE ALL ON *.* FROM {user}",
        *(f"GRANT SELECT ON {db}.{_ident(t)} TO {user}" for t in tables),
    ]
