"""Panel SQL for the case KPIs, made by calling ``sinks.clickhouse.kpis`` so a panel shows
exactly what ``gridpulse kpi`` prints for the same period.

The KPI functions take a database name and aware datetimes; they are called with a sentinel
database and sentinel instants whose literals (``toDateTime(<epoch>)``) are then replaced by
the plugin's ``$__fromTime`` / ``$__toTime``: the KPI text is otherwise untouched. Rates are
shown as published (``kpis.ratio``: percent, half-up to 2 decimals), computed in SQL from the
KPI's own numerator and denominator with integer arithmetic, so the value equals
``kpis.percent(rate)`` — what ``gridpulse kpi`` prints — digit for digit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from grafana.query import DB
from sinks.clickhouse import kpis

_DB = "gridpulse_panel_sentinel"
_PREV = datetime.fromtimestamp(1_000_000_000, UTC)
_FROM = datetime.fromtimestamp(1_100_000_000, UTC)
_TO = datetime.fromtimestamp(1_200_000_000, UTC)
_NOW = datetime.fromtimestamp(1_300_000_000, UTC)

FROM_TIME = "$__fromTime"
TO_TIME = "$__toTime"
PREVIOUS_FROM = "toDateTime(2 * toUInt32($__fromTime) - toUInt32($__toTime))"
"""Start of the period of the same length just before the dashboard's range."""


def _template(sql: str, *, previous: bool = False) -> str:
    """Sentinels -> ``{db}`` and the plugin's time macros; refuses leftovers."""
    sql = sql.replace(f"{_DB}.", f"{DB}.")
    if previous:
        pairs = [(_PREV, PREVIOUS_FROM), (_FROM, FROM_TIME)]
    else:
        pairs = [(_FROM, FROM_TIME), (_TO, TO_TIME)]
    for t, macro in pairs:
        literal = f"toDateTime({int(t.timestamp())})"
        if literal not in sql:
            raise ValueError(f"KPI SQL no longer renders instants as {literal}")
        sql = sql.replace(literal, macro)
    for t in (_PREV, _FROM, _TO, _NOW):
        if str(int(t.timestamp())) in sql or _DB in sql:
            raise ValueError("KPI SQL holds an instant or database the panel cannot template")
    return sql


def kpi(level: kpis.Level, *, previous: bool = False) -> str:
    """``kpis.kpi_sql`` for the dashboard's range (or the period just before it)."""
    start, end = (_PREV, _FROM) if previous else (_FROM, _TO)
    return _template(kpis.kpi_sql(_DB, level, start, end), previous=previous)


def ranking(level: kpis.Level, kpi_name: str, descending: bool) -> str:
    """``kpis.ranking_sql`` for the dashboard's range."""
    return _template(kpis.ranking_sql(_DB, level, _FROM, _TO, kpi_name, descending=descending))


def countdown(limit: int = 1_000_000) -> str:
    """``kpis.countdown_sql`` as of the range's end (``now`` for a live board)."""
    sql = kpis.countdown_sql(_DB, _NOW, limit).replace(f"{_DB}.", f"{DB}.")
    literal = str(int(_NOW.timestamp()))
    if sql.count(literal) != 1:
        raise ValueError("countdown SQL no longer holds `now` once as epoch seconds")
    return sql.replace(literal, "toInt64(toUInt32($__toTime))")


def published_percent(num: str, den: str) -> str:
    """``kpis.ratio(num, den)`` in SQL: ``round_half_up(10000·num/den) / 100``, NaN when
    ``den`` is 0 (integers only, so no float rounding differs from the Python figure)."""
    return f"if({den} = 0, nan, intDiv({num} * 20000 + {den}, {den} * 2) / 100)"


def rate_percent(rate: str) -> str:
    """The published percentage of a KPI rate column, from its numerator and denominator."""
    num, den, _zh, _en = kpis.RATES[rate]
    return published_percent(num, den)


def stat_with_change(rate: str) -> str:
    """One row: ``current`` (the range), ``previous`` (the period of equal length before)
    and ``change`` in percentage points, all as published percentages."""
    pct = rate_percent(rate)
    cur = f"SELECT 1 AS period, {pct} AS pct FROM ({kpi('city')})"
    prev = f"SELECT 0 AS period, {pct} AS pct FROM ({kpi('city', previous=True)})"
    return (
        "SELECT anyIf(pct, period = 1) AS current, anyIf(pct, period = 0) AS previous, "
        f"round(current - previous, 2) AS change FROM ({cur} UNION ALL {prev})"
    )


def ranking_table(level: kpis.Level, rate: str, descending: bool, limit: int) -> str:
    """The ``limit`` best (or worst) units of ``level`` by ``rate``, among units with the
    minimum volume: keys, the published percentage, the volume."""
    keys = list(kpis.KEYS[level])
    # value·volume recovers the KPI numerator (an integer count) from the ranking's columns
    pct = published_percent("toUInt64(round(value * volume))", "volume")
    order = "DESC" if descending else "ASC"
    return (
        f"SELECT {', '.join(keys)}, {pct} AS {rate}, volume "
        f"FROM ({ranking(level, rate, descending)}) "
        f"ORDER BY value {order}, volume DESC, {', '.join(keys)} LIMIT {int(limit)}"
    )


SUMMARY_COUNTS: tuple[str, ...] = (
    "accepted",
    "registered",
    "due_to_close",
    "closed",
    "closed_on_time",
    "dispatched",
    "handled",
    "reworked",
    "hotline_accepted",
)
SUMMARY_RATES: tuple[str, ...] = (
    "registration_rate",
    "on_time_close_rate",
    "close_rate",
    "rework_rate",
    "satisfaction_rate",
    "response_rate",
    "resolution_rate",
)


def summary_table(level: kpis.Level, total_label: str) -> str:
    """The monthly report table: one row per unit of ``level`` then the city row
    (``total_label``), counts and published percentages."""
    key = kpis.KEYS[level][-1]
    cols = [*SUMMARY_COUNTS, *(f"{rate_percent(r)} AS {r}" for r in SUMMARY_RATES)]

    def branch(label: str, total: int, level_: kpis.Level) -> str:
        return f"SELECT {total} AS total, {label} AS {key}, {', '.join(cols)} FROM ({kpi(level_)})"

    label = "'" + total_label.replace("'", "\\'") + "'"
    parts = [branch(f"toString({key})", 0, level), branch(label, 1, "city")]
    names = [key, *SUMMARY_COUNTS, *SUMMARY_RATES]
    return f"SELECT {', '.join(names)} FROM ({' UNION ALL '.join(parts)}) ORDER BY total, {key}"


KPI_RATES_SHOWN: Sequence[str] = (
    "on_time_close_rate",
    "close_rate",
    "rework_rate",
    "satisfaction_rate",
    "response_rate",
    "resolution_rate",
)
