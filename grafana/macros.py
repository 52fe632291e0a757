"""Expand panel SQL the way Grafana and the official ClickHouse plugin do before it reaches
the server, so tests and renders run exactly what a board would send.

Two passes, in the plugin's order:

1. **Front end** (``grafana/clickhouse-datasource``, ``src/data/CHDatasource.ts``,
   ``applyTemplateVariables``): ``$__conditionalAll(phrase, $var)`` becomes ``1=1`` when the
   variable's current value is ``$__all`` or empty, else ``phrase``; then Grafana's template
   service replaces ``$var``, ``${var}``, ``[[var]]`` and ``${var:format}``. Without a format
   the plugin's ``format`` callback applies: an array (multi-value or "All") becomes
   ``'a','b'`` (joined with ``','``, no escaping), a single value is inserted as is.
   ``${var:singlequote}`` quotes every value and escapes ``'`` as ``\\'``; ``:csv`` joins with
   ``,``; ``:sqlstring`` doubles ``'``. "All" without a custom all value stands for every
   option's value; with ``allValue`` that text is inserted unformatted.
2. **Back end** (``pkg/macros/macros.go``, applied through ``sqlds``):

   ======================== ==========================================================
   ``$__fromTime``           ``toDateTime(<from unix seconds>)``
   ``$__toTime``             ``toDateTime(<to unix seconds>)``
   ``$__fromTime_ms``        ``fromUnixTimestamp64Milli(<from ms>)`` (same for ``_toTime_ms``)
   ``$__timeFilter(c)``      ``c >= toDateTime(from) AND c <= toDateTime(to)``
   ``$__timeFilter_ms(c)``   ``c >= fromUnixTimestamp64Milli(from) AND c <= …(to)``
   ``$__dateFilter(c)``      ``c >= toDate('YYYY-MM-DD') AND c <= toDate('YYYY-MM-DD')``
   ``$__dateTimeFilter(d,t)`` ``(d >= toDate(..) AND d <= toDate(..)) AND (t >= … AND t <= …)``
   ``$__timeInterval(c)``    ``toStartOfInterval(toDateTime(c), INTERVAL <s> second)``
   ``$__interval_s``         ``<s>`` = ``max(interval seconds, 1)`` truncated to an integer
   ======================== ==========================================================

   Dates of ``$__dateFilter`` are formatted in UTC (Go's ``time.Time`` of the request range).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

ALL = "$__all"


@dataclass(frozen=True, slots=True)
class TimeRange:
    """The dashboard's time picker range, in Unix milliseconds (Grafana's resolution)."""

    from_ms: int
    to_ms: int

    @classmethod
    def of(cls, start: datetime, end: datetime) -> TimeRange:
        return cls(int(start.timestamp() * 1000), int(end.timestamp() * 1000))

    @property
    def from_s(self) -> int:
        return self.from_ms // 1000  # Go's time.Unix(): floor to seconds

    @property
    def to_s(self) -> int:
        return self.to_ms // 1000


@dataclass(frozen=True, slots=True)
class VariableValue:
    """A template variable's current selection: one value, several (multi-value), or "All"
    (``ALL``) which stands for ``options`` unless ``all_value`` is set."""

    current: str | Sequence[str]
    options: Sequence[str] = field(default_factory=tuple)
    all_value: str | None = None

    @property
    def is_all(self) -> bool:
        cur = self.current
        if isinstance(cur, str):
            return cur in (ALL, "")
        return ALL in cur or len(cur) == 0

    def resolved(self) -> str | list[str]:
        """What the template service formats: a string, or a list of values."""
        if self.is_all:
            return self.all_value if self.all_value is not None else list(self.options)
        return self.current if isinstance(self.current, str) else list(self.current)


# --- front end: template variables -------------------------------------------------------

VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)  # Grafana's templateSrv variable regex (public/app/features/variables/utils.ts)


def _singlequote(v: str) -> str:
    return "'" + v.replace("'", "\\'") + "'"


def format_value(value: str | list[str], fmt: str | None) -> str:
    """Grafana's value formats used in SQL, and the ClickHouse plugin's default."""
    values = [value] if isinstance(value, str) else value
    if fmt is None:  # the plugin's format callback
        return value if isinstance(value, str) else "'" + "','".join(value) + "'"
    if fmt == "singlequote":
        return ",".join(_singlequote(v) for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "raw":
        return value if isinstance(value, str) else ",".join(values)
    raise ValueError(f"unsupported variable format {fmt!r}")


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the call whose ``(`` is at ``open_paren`` (commas at depth 1 split) and
    the index after its ``)``."""
    depth, last, args = 0, open_paren + 1, []
    for i in range(open_paren, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[last:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(sql[last:i])
            last = i + 1
    raise ValueError(f"unbalanced parentheses after {sql[open_paren - 20 : open_paren]!r}")


def apply_conditional_all(sql: str, variables: Mapping[str, VariableValue]) -> str:
    """``$__conditionalAll(phrase, $var)``: ``1=1`` when ``var`` is "All" or empty."""
    macro = "$__conditionalAll("
    idx = sql.rfind(macro)
    while idx != -1:
        args, end = _macro_args(sql, idx + len(macro) - 1)
        if len(args) != 2:
            raise ValueError(f"$__conditionalAll takes 2 arguments, got {len(args)}")
        phrase = args[0]
        m = re.search(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+", args[1].strip())
        if m and m.group(0) in variables and variables[m.group(0)].is_all:
            phrase = "1=1"
        sql = sql[:idx] + phrase + sql[end:]
        idx = sql.rfind(macro)
    return sql


def replace_variables(sql: str, variables: Mapping[str, VariableValue]) -> str:
    """Grafana's template service with the plugin's format callback; unknown names (the
    plugin's ``$__`` macros among them) stay as they are."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        if name not in variables:
            return m.group(0)
        var = variables[name]
        if var.is_all and var.all_value is not None:
            return var.all_value
        return format_value(var.resolved(), fmt)

    return VARIABLE.sub(sub, sql)


# --- back end: the plugin's macros -------------------------------------------------------


def _dt(seconds: int) -> str:
    return f"toDateTime({seconds})"


def _dt64(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms})"


def _date(seconds: int) -> str:
    return "toDate('" + datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d") + "')"


def _one(name: str, args: list[str]) -> str:
    if len(args) != 1:
        raise ValueError(f"$__{name}: expected 1 argument, received {len(args)}")
    return args[0].strip()


def _expand_macro(name: str, args: list[str] | None, tr: TimeRange, interval_s: int) -> str:
    f, t = tr.from_s, tr.to_s
    if name == "fromTime":
        return _dt(f)
    if name == "toTime":
        return _dt(t)
    if name == "fromTime_ms":
        return _dt64(tr.from_ms)
    if name == "toTime_ms":
        return _dt64(tr.to_ms)
    if name == "interval_s":
        return str(interval_s)
    a = args or []
    if name == "timeFilter":
        c = _one(name, a)
        return f"{c} >= {_dt(f)} AND {c} <= {_dt(t)}"
    if name == "timeFilter_ms":
        c = _one(name, a)
        return f"{c} >= {_dt64(tr.from_ms)} AND {c} <= {_dt64(tr.to_ms)}"
    if name == "dateFilter":
        c = _one(name, a)
        return f"{c} >= {_date(f)} AND {c} <= {_date(t)}"
    if name in ("dateTimeFilter", "dt"):
        if len(a) != 2:
            raise ValueError(f"$__{name}: expected 2 arguments, received {len(a)}")
        d, c = a[0].strip(), a[1].strip()
        return (
            f"({d} >= {_date(f)} AND {d} <= {_date(t)}) AND ({c} >= {_dt(f)} AND {c} <= {_dt(t)})"
        )
    if name == "timeInterval":
        c = _one(name, a)
        return f"toStartOfInterval(toDateTime({c}), INTERVAL {interval_s} second)"
    raise ValueError(f"unknown macro $__{name}")


MACROS = (
    "fromTime_ms",
    "toTime_ms",
    "fromTime",
    "toTime",
    "timeFilter_ms",
    "timeFilter",
    "dateTimeFilter",
    "dateFilter",
    "dt",
    "timeInterval",
    "interval_s",
)
_TAKES_ARGS = {"timeFilter", "timeFilter_ms", "dateFilter", "dateTimeFilter", "dt", "timeInterval"}
_MACRO = re.compile(r"\$__(" + "|".join(MACROS) + r")\b")


def expand_macros(sql: str, tr: TimeRange, interval_ms: int) -> str:
    """The plugin's back-end macros (see the module docstring for each expansion)."""
    interval_s = max(interval_ms // 1000, 1)
    out, pos = [], 0
    for m in _MACRO.finditer(sql):
        if m.start() < pos:
            continue
        name = m.group(1)
        out.append(sql[pos : m.start()])
        if name in _TAKES_ARGS:
            if m.end() >= len(sql) or sql[m.end()] != "(":
                raise ValueError(f"$__{name} needs arguments")
            args, end = _macro_args(sql, m.end())
            out.append(_expand_macro(name, args, tr, interval_s))
            pos = end
        else:
            out.append(_expand_macro(name, None, tr, interval_s))
            pos = m.end()
    out.append(sql[pos:])
    return "".join(out)


def expand(
    sql: str,
    time_range: TimeRange,
    variables: Mapping[str, VariableValue] | None = None,
    interval_ms: int = 60_000,
) -> str:
    """The SQL the ClickHouse server receives for a panel target: front-end variables
    first, then the back-end macros. Raises on a ``$__`` macro left unexpanded."""
    variables = variables or {}
    sql = apply_conditional_all(sql, variables)
    sql = replace_variables(sql, variables)
    sql = expand_macros(sql, time_range, interval_ms)
    left = re.search(r"\$\{?\w+", sql)
    if left:
        raise ValueError(f"unexpanded reference {left.group(0)!r} in panel SQL")
    return sql


# Grafana's rangeutil.roundInterval above one second: (below this many ms, use this interval)
_ROUNDED = (
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
)


def panel_interval_ms(tr: TimeRange, max_data_points: int) -> int:
    """``$__interval`` of a panel with ``maxDataPoints``: the range over the points, rounded
    as Grafana rounds it (``rangeutil.roundInterval``; a day and more stays 1 d)."""
    raw = (tr.to_ms - tr.from_ms) / max(max_data_points, 1)
    return next((to for below, to in _ROUNDED if raw < below), 86_400_000)
