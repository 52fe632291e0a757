"""A small typed ClickHouse query for panel targets (the foundation SDK has no ClickHouse
builder): SQL text assembled from named parts, with ``{db}`` standing for the database.

In the committed boards ``{db}`` becomes ``${db}``, a constant dashboard variable, so the SQL
never hard-codes the database; tests render it with their own database name instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

DB = "{db}"
"""Placeholder for the database in query text (``f"{DB}.counts_1m"``)."""

Format = Literal["table", "time_series"]

# the plugin's CHQuery.format values (src/types/sql.ts: Format enum)
FORMAT_CODES: dict[Format, Literal[0, 1]] = {"time_series": 0, "table": 1}


@dataclass(frozen=True, slots=True)
class Select:
    """``SELECT columns FROM source [WHERE …] [GROUP BY …] [HAVING …] [ORDER BY …] [LIMIT n]``;
    ``where`` parts are joined with ``AND``."""

    columns: Sequence[str]
    source: str
    where: Sequence[str] = ()
    group_by: Sequence[str] = ()
    having: Sequence[str] = ()
    order_by: Sequence[str] = ()
    limit: int | None = None

    def sql(self) -> str:
        parts = [f"SELECT {', '.join(self.columns)}", f"FROM {self.source}"]
        if self.where:
            parts.append("WHERE " + " AND ".join(f"({w})" for w in self.where))
        if self.group_by:
            parts.append("GROUP BY " + ", ".join(self.group_by))
        if self.having:
            parts.append("HAVING " + " AND ".join(f"({h})" for h in self.having))
        if self.order_by:
            parts.append("ORDER BY " + ", ".join(self.order_by))
        if self.limit is not None:
            parts.append(f"LIMIT {int(self.limit)}")
        return "\n".join(parts)

    def subquery(self) -> str:
        return f"({self.sql()})"


@dataclass(frozen=True, slots=True)
class Query:
    """One panel target: SQL text with ``{db}``, the result format, the columns the panel
    reads from the result (checked by the tests), Grafana's ``refId`` and, for a time
    series, the time column."""

    text: str
    format: Format = "table"
    columns: tuple[str, ...] = ()
    ref_id: str = "A"
    time_column: str | None = None

    @classmethod
    def of(cls, select: Select, **kw: object) -> Query:
        return cls(select.sql(), **kw)  # type: ignore[arg-type]

    def render(self, db: str) -> str:
        """The SQL with the database spelled out (``${db}`` for a dashboard)."""
        return self.text.replace(DB, db)


def var_in(column: str, var: str) -> str:
    """``column IN (…)`` on a multi-value variable, dropped to ``1=1`` when "All" is chosen
    (the plugin's ``$__conditionalAll``), so "All" costs no filter."""
    return f"$__conditionalAll({column} IN (${{{var}:singlequote}}), ${var})"


def sql_string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
