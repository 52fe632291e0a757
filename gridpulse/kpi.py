"""``gridpulse kpi``: leadership's indicators and rankings, ``gridpulse countdown``: the SLA
countdown of open cases. Read-only SQL from ``sinks.clickhouse.kpis``, run through the same
path as ``gridpulse query`` (the worker's view while it holds the embedded engine).

Tables come out readable by default (aligned columns, or one block per unit when the
columns do not fit the terminal) and as ``tsv``, ``csv`` or ``json`` for machines.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from core.settings import Settings
from gridpulse.query import run_query
from sinks.clickhouse import kpis

OutputFormat = Literal["table", "tsv", "csv", "json"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("table", "tsv", "csv", "json")


def period_bound(value: str, timezone: str) -> datetime:
    """A ``--start``/``--end`` value as an aware time: an ISO date or date-time; without an
    offset it is the city's local time (a date is its local midnight)."""
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(timezone))


def _rows(settings: Settings, sql: str) -> list[list[str]]:
    return [line.split("\t") for line in run_query(settings, sql).splitlines() if line]


def _pct(value: str) -> str:
    if value in ("", "None", "nan", "\\N"):
        return "-"
    try:
        p = kpis.percent(float(value))
    except ValueError:
        return value
    return "-" if p is None else f"{p:.2f}%"


Table = tuple[list[str], list[list[str]]]
"""A header and its rows of text cells."""


def kpi_rows(settings: Settings, level: str, start: datetime, end: datetime) -> Table:
    """Counts and rates per unit of ``level`` (rates as percentages)."""
    cols = kpis.columns(level)  # type: ignore[arg-type]
    rows = _rows(settings, kpis.kpi_sql(settings.database, level, start, end))  # type: ignore[arg-type]
    body = [
        [_pct(v) if c in kpis.RATES else v for c, v in zip(cols, row, strict=True)] for row in rows
    ]
    return list(cols), body


def ranking_rows(settings: Settings, level: str, start: datetime, end: datetime, kpi: str) -> Table:
    """Units of ``level`` ranked by ``kpi`` (only units with the minimum volume)."""
    if kpi not in kpis.RATES:
        raise ValueError(f"unknown KPI {kpi!r}; one of: {', '.join(kpis.RATES)}")
    sql = kpis.ranking_sql(settings.database, level, start, end, kpi)  # type: ignore[arg-type]
    ranked = kpis.rank(_rows(settings, sql))
    zh = kpis.RATES[kpi][2]
    body = [
        [str(r), _pct(value), str(volume), "/".join(keys)] for r, value, volume, *keys in ranked
    ]
    return ["rank", f"{kpi} ({zh})", "volume", "unit"], body


def render(table: Table, fmt: OutputFormat, width: int | None = None) -> str:
    """``table`` as text: aligned (``table``; ``width``: the terminal's), TSV, CSV or JSON
    (a list of objects keyed by column)."""
    head, rows = table
    if fmt == "tsv":
        return "".join("\t".join(r) + "\n" for r in [head, *rows])
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([head, *rows])
        return buf.getvalue()
    if fmt == "json":
        return (
            json.dumps([dict(zip(head, r, strict=True)) for r in rows], ensure_ascii=False) + "\n"
        )
    return aligned(head, rows, width or shutil.get_terminal_size().columns)


def aligned(head: list[str], rows: list[list[str]], width: int) -> str:
    """Columns padded to their widest cell, or, wider than ``width``, one block of
    ``column  value`` lines per row. An empty table says "0 rows"."""
    if not rows:
        return "  ".join(head) + "\n(0 rows)\n"
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    if sum(widths) + 2 * (len(widths) - 1) <= width:
        return "".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
            for r in [head, *rows]
        )
    name_w = max(len(h) for h in head)
    blocks = [
        "".join(f"{h.ljust(name_w)}  {v}\n" for h, v in zip(head, r, strict=True)) for r in rows
    ]
    return "\n".join(blocks)


def countdown_table(settings: Settings, limit: int) -> str:
    sql = kpis.countdown_sql(settings.database, datetime.now(UTC), limit)
    return run_query(settings, sql)
