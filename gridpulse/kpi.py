"""``gridpulse kpi``: leadership's indicators and rankings, ``gridpulse countdown``: the SLA
countdown of open cases. Read-only SQL from ``sinks.clickhouse.kpis``, run through the same
path as ``gridpulse query`` (the worker's view while it holds the embedded engine)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.settings import Settings
from gridpulse.query import run_query
from sinks.clickhouse import kpis


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


def kpi_table(settings: Settings, level: str, start: datetime, end: datetime) -> str:
    """Counts and rates per unit of ``level`` (rates as percentages)."""
    cols = kpis.columns(level)  # type: ignore[arg-type]
    rows = _rows(settings, kpis.kpi_sql(settings.database, level, start, end))  # type: ignore[arg-type]
    out = ["\t".join(cols)]
    for row in rows:
        out.append(
            "\t".join(_pct(v) if c in kpis.RATES else v for c, v in zip(cols, row, strict=True))
        )
    return "\n".join(out) + "\n"


def ranking_table(settings: Settings, level: str, start: datetime, end: datetime, kpi: str) -> str:
    """Units of ``level`` ranked by ``kpi`` (only units with the minimum volume)."""
    if kpi not in kpis.RATES:
        raise ValueError(f"unknown KPI {kpi!r}; one of: {', '.join(kpis.RATES)}")
    sql = kpis.ranking_sql(settings.database, level, start, end, kpi)  # type: ignore[arg-type]
    ranked = kpis.rank(_rows(settings, sql))
    zh = kpis.RATES[kpi][2]
    out = [f"rank\t{kpi} ({zh})\tvolume\tunit"]
    for r, value, volume, *keys in ranked:
        out.append(f"{r}\t{_pct(value)}\t{volume}\t{'/'.join(keys)}")
    return "\n".join(out) + "\n"


def countdown_table(settings: Settings, limit: int) -> str:
    sql = kpis.countdown_sql(settings.database, datetime.now(UTC), limit)
    return run_query(settings, sql)
