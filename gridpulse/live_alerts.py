"""The live view's alerts panel: open alerts (most severe first) and failing receivers."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.table import Table

from sinks.clickhouse import alerts as alert_sql

OPEN_SHOWN = 5


def alerts_panel(sql: Callable[[str], list[list[str]]], db: str, window_s: int = 3600) -> Table:
    """A table of the first open alerts and of receivers with failed deliveries in the last
    ``window_s`` seconds, read from the alert views through ``sql``."""
    t = Table(title="alerts (open / failing receivers)", show_edge=False)
    t.add_column("what")
    t.add_column("detail")
    for row in sql(alert_sql.open_alerts_sql(db, OPEN_SHOWN)):
        if len(row) < 12:  # an error line
            t.add_row("[red]error[/]", " ".join(row)[:60])
            continue
        fp, severity, _d, street, _c, kind, case, _summary, _s, acked, _by, level = row[:12]
        ack = "acked" if acked == "1" else f"esc {level}" if level != "0" else "unacked"
        t.add_row(f"{severity} {kind}", f"{case or street} {ack} {fp[:8]}")
    since = int(time.time()) - window_s
    for row in sql(alert_sql.failing_receivers_sql(db, since)):
        if len(row) < 5:
            continue
        receiver, failures, dead, _last, error = row[:5]
        t.add_row(f"[red]{receiver}[/]", f"{failures} failed, {dead} dead: {error[:40]}")
    return t
