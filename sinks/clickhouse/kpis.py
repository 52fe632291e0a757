"""KPIs of digital urban management (数字城管) as ClickHouse SQL over the case snapshots.

Every function here is pure: it returns SQL text (or post-processes rows) and never talks to a
server. The SQL reads the read-model view ``cases`` (``case_state FINAL``: one row per case,
its latest version), filtering only outside the view, and sticks to what both the embedded
engine (chdb, ClickHouse 26.x) and Debian's clickhouse-server 18.16 understand: no CTEs, no
window functions, no ``FILTER`` clauses; only ``countIf``/``avgIf``/``quantileExactIf`` and
subqueries in ``FROM``.

The formulas, and which parts of them a city can change through ``KpiDefinitions``, are
documented in ``docs/kpis.md``. In short:

- a case belongs to a period by ``opened_at`` (受理时间) in ``[start, end)``;
- rates are ``Float64`` in ``[0, 1]`` and ``nan`` when the denominator is 0 (JSON outputs,
  hence ``ChdbBackend.rows_sync``, show ``nan`` as ``null``/``None``);
- ``ratio(num, den)`` rounds a rate as published figures are (percent, 2 decimals).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.records import CASE_SUBJECT
from sinks.clickhouse.schema import CASE_TABLE, CASES_VIEW

Level = Literal["grid", "community", "street", "district", "unit", "city"]

KEYS: dict[str, tuple[str, ...]] = {
    "grid": ("district", "street", "community", "grid_code"),
    "community": ("district", "street", "community"),
    "street": ("district", "street"),
    "district": ("district",),
    "unit": ("unit",),
    "city": (),
}
"""Group-by columns of each level (a unit of a level is named by its whole path)."""

STAGES: tuple[str, ...] = ("register", "dispatch", "acknowledge", "handle", "verify", "close")
"""The timed stages, as ``late_stages`` and the SLA policy name them."""

TERMINAL: tuple[str, ...] = ("rejected", "closed", "voided")

# the (from, to) timestamps of each stage's duration; "close" also requires closed not forced
_SPANS: dict[str, tuple[str, str]] = {
    "register": ("opened_at", "registered_at"),
    "dispatch": ("registered_at", "dispatched_at"),
    "acknowledge": ("dispatched_at", "acknowledged_at"),
    "handle": ("acknowledged_at", "handled_at"),
    "verify": ("handled_at", "verified_at"),
    "close": ("verified_at", "closed_at"),
}

# rate column -> (numerator column, denominator column, 中文名, English name)
RATES: dict[str, tuple[str, str, str, str]] = {
    "registration_rate": ("registered", "accepted", "立案率", "registration rate"),
    "close_rate": ("closed", "due_to_close", "结案率", "closure rate"),
    "on_time_close_rate": ("closed_on_time", "due_to_close", "按期结案率", "on-time closure rate"),
    "on_time_close_rate_unpaused": (
        "closed_on_time_unpaused",
        "due_unpaused",
        "按期结案率(不含缓办)",
        "on-time closure rate, never paused",
    ),
    "handle_rate": ("handled", "dispatched", "处置率", "handling rate"),
    "on_time_handle_rate": ("handled_on_time", "dispatched", "按期处置率", "on-time handling rate"),
    "rework_rate": ("reworked", "handled", "返工率", "rework rate"),
    "extension_rate": ("extended", "registered", "延期率", "extension rate"),
    "on_time_ack_rate": (
        "acknowledged_on_time",
        "dispatched",
        "及时签收率",
        "on-time acknowledgement rate",
    ),
    "response_rate": (
        "hotline_acknowledged_on_time",
        "hotline_dispatched",
        "响应率",
        "hotline response rate",
    ),
    "resolution_rate": (
        "hotline_resolved",
        "hotline_accepted",
        "解决率",
        "hotline resolution rate",
    ),
    "satisfaction_rate": (
        "hotline_satisfied",
        "hotline_rated",
        "满意率",
        "hotline satisfaction rate",
    ),
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class KpiDefinitions(BaseModel):
    """The rules where cities differ. Defaults follow the common 数字城管 assessment rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exclude_voided: bool = True
    """Voided cases (作废: duplicates, transfers out, invalid reports — our lifecycle voids all
    of them) are left out of every count and denominator except the ``voided`` column."""
    due_rule: Literal["closed_or_overdue", "registered"] = "closed_or_overdue"
    """Which registered cases are due to close (应结案):
    ``closed_or_overdue``: closed, or still open but past a deadline — the current stage's
    deadline passed before the cut-off, or a stage already finished late (a case that can no
    longer close on time); ``registered``: every registered case."""
    forced_counts_as_closed: bool = True
    """A force-closed case (强制结案) counts as closed for 结案率."""
    forced_counts_on_time: bool = False
    """A force-closed case can count as closed on time for 按期结案率."""
    on_time_stages: tuple[str, ...] = STAGES
    """A closed case is on time when none of these stages finished late (all by default;
    e.g. ``("handle",)`` to judge only the 处置时限)."""
    ever_paused_from: Literal["case_events", "snapshot"] = "case_events"
    """Where "the case was ever paused" is read: applied ``pause`` events in ``case_events``,
    or the snapshot (``pause_count``/``paused``; these only describe the current stage, so
    they are 0 for every ended case — use only where ``case_events`` is not kept)."""
    satisfied_ratings: tuple[str, ...] = ("satisfied", "basically_satisfied")
    """Ratings counted as satisfied for 满意率 (some cities count only ``satisfied``)."""
    hotline_source: str = "hotline"
    min_volume: int = Field(default=30, ge=0)
    """Rankings list only units whose KPI denominator is at least this."""

    @field_validator("on_time_stages")
    @classmethod
    def _known_stages(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(v) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; known: {STAGES}")
        return v


# --- helpers ---------------------------------------------------------------------------------


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


def _str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _epoch(t: datetime) -> int:
    if t.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
    return int(t.timestamp())


def _ts(t: datetime) -> str:
    return f"toDateTime({_epoch(t)})"


def _set(cond: bool | str) -> str:
    return cond if isinstance(cond, str) else ("1" if cond else "0")


def _reached(col: str) -> str:
    return f"(toUInt32({col}) > 0)"


def _not_late(stages: Sequence[str]) -> str:
    """None of ``stages`` is in the comma-separated ``late_stages``."""
    if not stages:
        return "1"
    parts = [f"position(concat(',', late_stages, ','), ',{_ident(s)},') = 0" for s in stages]
    return "(" + " AND ".join(parts) + ")"


def _count(cond: str) -> str:
    return f"toUInt32(countIf({cond}))"  # UInt32: JSON outputs quote 64-bit integers


def _rate(num: str, den: str) -> str:
    return f"if({den} = 0, nan, {num} / {den})"


def columns(level: Level) -> list[str]:
    """The column names of ``kpi_sql(…, level, …)``, in order."""
    return [*KEYS[level], *_METRICS]


def ratio(num: float, den: float) -> float | None:
    """``num / den`` as a percentage rounded half-up to 2 decimals, as published figures are
    (33,928 / 36,314 -> 93.43); None when ``den`` is 0."""
    if not den:
        return None
    pct = Decimal(num) * 100 / Decimal(den)
    return float(pct.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def percent(rate: float | None) -> float | None:
    """A rate from the SQL (0..1, nan/None when undefined) as a rounded percentage."""
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return None
    return float((Decimal(repr(float(rate))) * 100).quantize(Decimal("0.01"), ROUND_HALF_UP))


# --- KPIs ------------------------------------------------------------------------------------


def _flags(db: str, start: datetime, end: datetime, defs: KpiDefinitions, cutoff: datetime) -> str:
    """Per case of the period (latest version): the flags the aggregates count."""
    keep = "(voided = 0)" if defs.exclude_voided else "1"
    closed = "(stage = 'closed')"
    forced_ok = "1" if defs.forced_counts_as_closed else "(forced = 0)"
    forced_on_time = "1" if defs.forced_counts_on_time else "(forced = 0)"
    reg = _reached("registered_at")
    if defs.due_rule == "registered":
        due = reg
    else:
        open_ = "(stage NOT IN ('rejected', 'closed', 'voided'))"
        overdue = (
            f"({_reached('stage_deadline')} AND stage_deadline < {_ts(cutoff)}"
            " OR late_stages != '')"
        )
        due = f"({reg} AND ({closed} OR voided = 1 OR ({open_} AND {overdue})))"
    if defs.ever_paused_from == "case_events":
        paused = (
            f"(case_id IN (SELECT case_id FROM {db}.{CASE_TABLE} "
            "WHERE action = 'pause' AND outcome = 'applied'))"
        )
    else:
        paused = "(pause_count > 0 OR paused = 1)"
    sat = ", ".join(_str(r) for r in defs.satisfied_ratings) or "''"
    hot = f"(source = {_str(defs.hotline_source)})"
    cols = [
        f"{keep} AS f_keep",
        f"{hot} AS f_hot",
        f"{reg} AS f_reg",
        f"{due} AS f_due",
        f"({closed} AND {forced_ok}) AS f_closed",
        f"({closed} AND {forced_on_time} AND {_not_late(defs.on_time_stages)}) AS f_on_time",
        f"{paused} AS f_paused",
        f"{_reached('dispatched_at')} AS f_disp",
        f"({_reached('acknowledged_at')} AND {_not_late(['acknowledge'])}) AS f_ack_on_time",
        f"{_reached('handled_at')} AS f_hdl",
        f"({_reached('handled_at')} AND {_not_late(['handle'])}) AS f_hdl_on_time",
        "(rework_count > 0) AS f_rework",
        "(extension_count > 0) AS f_ext",
        f"({closed} AND forced = 0) AS f_resolved",
        "(rating != '') AS f_rated",
        f"(rating IN ({sat})) AS f_sat",
    ]
    for stage, (a, b) in _SPANS.items():
        ok = f"{_reached(a)} AND {_reached(b)}"
        if stage == "close":
            ok += " AND forced = 0"
        cols.append(f"({ok}) AS f_{stage}_ok")
        cols.append(f"toInt64(toUInt32({b})) - toInt64(toUInt32({a})) AS f_{stage}_s")
    keys = ", ".join(sorted({k for ks in KEYS.values() for k in ks}))
    return (
        f"SELECT {keys}, voided, {', '.join(cols)} "
        f"FROM {db}.{CASES_VIEW} "
        f"WHERE opened_at >= {_ts(start)} AND opened_at < {_ts(end)}"
    )


def _aggregates() -> list[tuple[str, str]]:
    out = [
        ("accepted", _count("f_keep")),
        ("voided", _count("voided = 1")),
        ("registered", _count("f_keep AND f_reg")),
        ("due_to_close", _count("f_keep AND f_due")),
        ("closed", _count("f_keep AND f_due AND f_closed")),
        ("closed_on_time", _count("f_keep AND f_due AND f_on_time")),
        ("due_unpaused", _count("f_keep AND f_due AND NOT f_paused")),
        ("closed_on_time_unpaused", _count("f_keep AND f_due AND f_on_time AND NOT f_paused")),
        ("dispatched", _count("f_keep AND f_disp")),
        ("acknowledged_on_time", _count("f_keep AND f_disp AND f_ack_on_time")),
        ("handled", _count("f_keep AND f_disp AND f_hdl")),
        ("handled_on_time", _count("f_keep AND f_disp AND f_hdl_on_time")),
        ("reworked", _count("f_keep AND f_hdl AND f_rework")),
        ("extended", _count("f_keep AND f_reg AND f_ext")),
        ("hotline_accepted", _count("f_keep AND f_hot")),
        ("hotline_dispatched", _count("f_keep AND f_hot AND f_disp")),
        ("hotline_acknowledged_on_time", _count("f_keep AND f_hot AND f_disp AND f_ack_on_time")),
        ("hotline_resolved", _count("f_keep AND f_hot AND f_resolved")),
        ("hotline_rated", _count("f_keep AND f_hot AND f_rated")),
        ("hotline_satisfied", _count("f_keep AND f_hot AND f_rated AND f_sat")),
    ]
    for name, (num, den, _zh, _en) in RATES.items():
        out.append((name, _rate(num, den)))
    for stage in STAGES:
        ok, s = f"f_keep AND f_{stage}_ok", f"toFloat64(f_{stage}_s)"
        out.append((f"{stage}_n", _count(ok)))
        out.append((f"{stage}_mean_s", f"if({stage}_n = 0, nan, avgIf({s}, {ok}))"))
        out.append((f"{stage}_p90_s", f"if({stage}_n = 0, nan, quantileExactIf(0.9)({s}, {ok}))"))
    return out


_METRICS: tuple[str, ...] = tuple(name for name, _ in _aggregates())


def kpi_sql(
    db: str,
    level: Level,
    start: datetime,
    end: datetime,
    defs: KpiDefinitions | None = None,
    *,
    now: datetime | None = None,
) -> str:
    """Counts and rates per unit of ``level`` (``city``: one row) for the cases opened in
    ``[start, end)``. Columns: ``columns(level)``. Open cases are due when their deadline
    passed before ``min(end, now)`` (``now`` defaults to ``end``)."""
    defs = defs or KpiDefinitions()
    if level not in KEYS:
        raise ValueError(f"unknown level {level!r}; one of {sorted(KEYS)}")
    cutoff = end if now is None else min(end, now)
    keys = KEYS[level]
    select = [*keys, *(f"{expr} AS {name}" for name, expr in _aggregates())]
    sql = f"SELECT {', '.join(select)} FROM ({_flags(_ident(db), start, end, defs, cutoff)})"
    if keys:
        sql += f" GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}"
    return sql


def volume_column(kpi: str) -> str:
    """The column a ranking's minimum volume applies to: a rate's denominator, a duration's
    case count, a count itself."""
    if kpi in RATES:
        return RATES[kpi][1]
    for suffix in ("_mean_s", "_p90_s"):
        if kpi.endswith(suffix) and kpi[: -len(suffix)] in STAGES:
            return kpi[: -len(suffix)] + "_n"
    if kpi in _METRICS:
        return kpi
    raise ValueError(f"unknown KPI {kpi!r}; one of {list(_METRICS)}")


def ranking_sql(
    db: str,
    level: Level,
    start: datetime,
    end: datetime,
    kpi: str,
    defs: KpiDefinitions | None = None,
    descending: bool = True,
    *,
    now: datetime | None = None,
) -> str:
    """Units of ``level`` ordered by ``kpi`` (best first when ``descending``), only those
    whose volume (``volume_column(kpi)``) is at least ``defs.min_volume`` and whose KPI is
    defined. Columns: value, volume, then the level's keys; number them with ``rank``."""
    defs = defs or KpiDefinitions()
    vol = volume_column(kpi)
    keys = KEYS[level]
    order = "DESC" if descending else "ASC"
    inner = kpi_sql(db, level, start, end, defs, now=now)
    cols = ", ".join([f"{kpi} AS value", f"{vol} AS volume", *keys])
    return (
        f"SELECT {cols} FROM ({inner}) "
        f"WHERE volume >= {int(defs.min_volume)} AND NOT isNaN(value) "
        f"ORDER BY value {order}, volume DESC" + "".join(f", {k}" for k in keys)
    )


def rank(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Number the rows of ``ranking_sql`` (already ordered) by their first column, ties
    sharing a rank (1, 2, 2, 4): ``(rank, *row)``."""
    out: list[tuple[Any, ...]] = []
    prev: Any = object()
    current = 0
    for i, row in enumerate(rows, start=1):
        if row[0] != prev:
            current, prev = i, row[0]
        out.append((current, *row))
    return out


# --- SLA countdown ---------------------------------------------------------------------------

COUNTDOWN_COLUMNS: tuple[str, ...] = (
    "case_id",
    "stage",
    "stage_started_at",
    "stage_deadline",
    "remaining_s",
    "paused",
    "stage_limit_unit",
    "urgent",
    "source",
    *CASE_SUBJECT,
    "opened_at",
)
_LATEST = [c for c in COUNTDOWN_COLUMNS if c not in ("case_id", "remaining_s")]
_FILTERABLE = frozenset(
    {"district", "street", "community", "grid_code", "unit", "source", "category", "stage"}
)


def countdown_sql(
    db: str, now: datetime, limit: int = 100, filters: Mapping[str, str] | None = None
) -> str:
    """Open cases (not rejected/closed/voided) with their current stage's deadline and the
    seconds left until it (negative: overdue), most urgent first; cases whose stage has no
    deadline come last with ``remaining_s`` NULL. Paused cases keep their frozen deadline
    and are flagged ``paused``. ``filters``: equality on district/street/community/…"""
    inner = f"SELECT case_id, {', '.join(_LATEST)} FROM {_ident(db)}.{CASES_VIEW}"
    where = [f"stage NOT IN ({', '.join(_str(s) for s in TERMINAL)})"]
    for col, value in (filters or {}).items():
        if col not in _FILTERABLE:
            raise ValueError(f"cannot filter on {col!r}; one of {sorted(_FILTERABLE)}")
        where.append(f"{col} = {_str(value)}")
    remaining = (
        f"if(toUInt32(stage_deadline) = 0, NULL, "
        f"toInt32(toInt64(toUInt32(stage_deadline)) - {_epoch(now)}))"
    )
    cols = [f"{remaining} AS remaining_s" if c == "remaining_s" else c for c in COUNTDOWN_COLUMNS]
    return (
        f"SELECT {', '.join(cols)} FROM ({inner}) WHERE {' AND '.join(where)} "
        f"ORDER BY toUInt32(stage_deadline) = 0, remaining_s, case_id LIMIT {int(limit)}"
    )


def as_dicts(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows of a query as dicts (e.g. ``as_dicts(columns("street"), rows)``)."""
    return [dict(zip(names, row, strict=True)) for row in rows]
