"""The live terminal view of ``gridpulse run``: throughput, lag, top grids and categories.

It only reads: the worker's ``/stats/`` view and read-only SQL through ``/query/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from core.settings import Settings
from gridpulse.live_alerts import alerts_panel
from gridpulse.query import query_headers

TOP_N = 8


@dataclass(frozen=True)
class ViewQueries:
    """The SQL behind the panels, over the latest ``minutes`` of event time (the simulator may
    run faster than the wall clock, so "latest" is relative to the newest bucket)."""

    db: str
    minutes: int = 15

    def top(self, column: str) -> str:
        return (
            f"SELECT {column}, sum(n) AS events FROM {self.db}.counts_1m "
            f"WHERE bucket >= (SELECT max(bucket) FROM "
            f"{self.db}.counts_1m) - INTERVAL {self.minutes} MINUTE "
            f"GROUP BY {column} ORDER BY events DESC, {column} LIMIT {TOP_N}"
        )

    def dead(self) -> str:
        return (
            f"SELECT reason_code, count() FROM {self.db}.dead_letters "
            "GROUP BY reason_code ORDER BY count() DESC"
        )


WARNINGS_SQL = (
    "SELECT severity, kind, if(grid_code != '', grid_code, if(community != '', community, "
    "street)) AS place, category, round(observed, 1), round(expected, 1) "
    "FROM {db}.active_warnings ORDER BY indexOf(['critical', 'major', 'minor', 'info'], "
    "severity), updated_at DESC LIMIT 8"
)
"""The live view's active early warnings, most severe first."""


def warnings_panel(sql: Callable[[str], list[list[str]]], db: str) -> Table:
    """Active early warnings: severity, kind, place, category, observed vs expected."""
    t = Table(title="active warnings", show_edge=False)
    for column in ("severity", "kind", "where", "category", "seen", "expected"):
        t.add_column(column, justify="right" if column in ("seen", "expected") else "left")
    for row in sql(WARNINGS_SQL.format(db=db)):
        t.add_row(*row[:6])
    return t


def not_fetching(fetch: dict[str, list[str]]) -> str:
    """The worker's partitions Faust holds back, and why ("" when none): paused during a
    rebalance, or its stream buffer full (backpressure while ClickHouse is slow)."""
    why = {"paused": "paused", "buffer_full": "buffer full"}
    return ", ".join(f"{len(fetch[k])} {label}" for k, label in why.items() if fetch.get(k))


def _tsv(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines() if line]


class LiveView:
    def __init__(self, settings: Settings) -> None:
        self.base = f"http://{settings.worker.web_host}:{settings.worker.web_port}"
        self.q = ViewQueries(settings.database)
        self.client = httpx.Client(timeout=5, headers=query_headers(settings))

    def _sql(self, sql: str) -> list[list[str]]:
        r = self.client.post(f"{self.base}/query/", json={"sql": sql})
        return _tsv(r.text) if r.status_code == 200 else [["error", r.text.strip()[:60]]]

    def render(self) -> Group | Panel:
        try:
            stats = self.client.get(f"{self.base}/stats/").json()
        except (httpx.HTTPError, ValueError) as exc:
            return Panel(f"waiting for the worker at {self.base} … ({type(exc).__name__})")
        head = Table.grid(padding=(0, 2))
        lag = sum(stats["lag"].values())
        sink = stats["sink"]
        head.add_row(
            f"[b]{stats['events_per_s']:,.0f}[/] events/s",
            f"[b]{stats['messages_per_s']:,.0f}[/] msgs/s",
            f"lag [b]{lag:,}[/]",
            f"events [b]{stats['events']:,}[/]",
            f"dead-lettered [b red]{stats['dead_lettered']:,}[/]",
            f"batch {stats['last_batch_ms']:.0f} ms",
        )
        if sink["waiting_for_store_s"]:
            head.add_row(
                f"[b red]ClickHouse unavailable for {sink['waiting_for_store_s']}s: "
                f"{sink['last_error'][:80]}[/]"
            )
        held = not_fetching(stats.get("fetch", {}))
        if held and lag:
            head.add_row(f"[yellow]not fetching: {held}[/]")
        tables = Table.grid(padding=(0, 4))
        panels = []
        for title, column in (
            ("top grids", "grid_code"),
            ("top categories", "subcategory"),
            ("by source", "source"),
        ):
            t = Table(title=f"{title} (last {self.q.minutes} min)", show_edge=False)
            t.add_column(column)
            t.add_column("events", justify="right")
            for row in self._sql(self.q.top(column)):
                t.add_row(*row[:2])
            panels.append(t)
        dead = Table(title="dead letters by reason", show_edge=False)
        dead.add_column("reason")
        dead.add_column("n", justify="right")
        for row in self._sql(self.q.dead()):
            dead.add_row(*row[:2])
        panels.append(dead)
        panels.append(alerts_panel(self._sql, self.q.db))
        panels.append(warnings_panel(self._sql, self.q.db))
        tables.add_row(*panels)
        return Group(Panel(head, title="gridpulse live"), tables)

    def run(self, refresh_s: float = 1.0) -> None:
        with Live(self.render(), refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(refresh_s)
                live.update(self.render())
