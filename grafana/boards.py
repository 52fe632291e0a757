"""The three boards as Python: Operations, SLA & on-call, Leadership.

Each board is a ``Board`` of ``PanelSpec``s whose targets are ``Query`` objects over the
public read model (``counts_*``, ``late_counts``, ``cases``, ``sla_alerts``, the warning views
and the on-call views, whose SQL is in ``grafana.alerting_panels``) and the clean raw tables
(``events``, ``dead_letters``). ``dashboard(board, lang, db)`` turns one into the typed
dashboard model that ``grafana.build`` writes as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grafana import alerting_panels as ap
from grafana import kpi_panels as kp
from grafana.catalogue import Lang, text
from grafana.city import CityMap
from grafana.model import (
    Dashboard,
    FieldConfig,
    FieldDefaults,
    GridPos,
    Link,
    Override,
    Panel,
    PanelType,
    Target,
    Templating,
    Threshold,
    Thresholds,
    TimeWindow,
    Variable,
    VariableOption,
)
from grafana.query import DB, FORMAT_CODES, Format, Query, Select, sql_string, var_in
from sinks.clickhouse.kpis import TERMINAL

TAG = "gridpulse"
DEFAULT_DB = "gridpulse"
SOURCES = ("inspector", "sensor", "hotline")


@dataclass(frozen=True, slots=True)
class RateTarget:
    """A rate's target: green at or beyond ``green``, orange from ``orange``; ``higher``
    says which direction is better."""

    green: float
    orange: float
    higher: bool = True

    def thresholds(self) -> Thresholds:
        if self.higher:
            steps = [
                Threshold(color="red", value=None),
                Threshold(color="orange", value=self.orange),
                Threshold(color="green", value=self.green),
            ]
        else:
            steps = [
                Threshold(color="green", value=None),
                Threshold(color="orange", value=self.green),
                Threshold(color="red", value=self.orange),
            ]
        return Thresholds(steps=steps)


TARGETS: dict[str, RateTarget] = {
    "on_time_close_rate": RateTarget(95, 90),
    "close_rate": RateTarget(95, 90),
    "rework_rate": RateTarget(5, 10, higher=False),
    "satisfaction_rate": RateTarget(90, 80),
    "response_rate": RateTarget(95, 90),
    "resolution_rate": RateTarget(90, 80),
    "registration_rate": RateTarget(95, 90),
}
"""Thresholds of the rate panels (percent), e.g. 按期结案率 ≥ 95 % green."""


@dataclass(frozen=True, slots=True)
class PanelSpec:
    """A panel: catalogue title key, type, queries, width × height, display options."""

    title: str
    type: PanelType
    queries: tuple[Query, ...]
    w: int = 12
    h: int = 8
    unit: str | None = None
    decimals: int | None = None
    thresholds: Thresholds | None = None
    options: dict[str, Any] = field(default_factory=dict)
    overrides: tuple[Override, ...] = ()
    color: dict[str, Any] | None = None
    custom: dict[str, Any] | None = None
    max_data_points: int | None = None


@dataclass(frozen=True, slots=True)
class VarSpec:
    name: str
    label: str  # catalogue key
    query: str | None = None  # SQL with {db}; None for the custom source list
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Board:
    key: str
    uid: str
    title: str  # catalogue key
    refresh: str
    time_from: str
    time_to: str
    variables: tuple[VarSpec, ...]
    panels: tuple[PanelSpec, ...]


# --- shared pieces -----------------------------------------------------------------------


def _filters(names: Sequence[str]) -> list[str]:
    column = {"grid": "grid_code"}
    return [var_in(column.get(n, n), n) for n in names]


def _var_query(column: str, table: str, parents: Sequence[str]) -> str:
    where = _filters(parents)
    sel = Select([f"DISTINCT {column}"], f"{DB}.{table}", where=where, order_by=[column])
    return sel.sql().replace("\n", " ")


def _interval_time(col: str) -> str:
    """Start of the panel interval holding ``col`` (UTC epoch buckets; 18.16-safe)."""
    return f"toDateTime(intDiv(toUInt32({col}), $__interval_s) * $__interval_s)"


def _stat_options(fields: str = "", text_mode: str = "value") -> dict[str, Any]:
    return {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": fields, "values": False},
        "colorMode": "background",
        "graphMode": "none",
        "textMode": text_mode,
        "justifyMode": "auto",
        "orientation": "auto",
    }


_TABLE = {
    "showHeader": True,
    "cellHeight": "sm",
    "footer": {"show": False, "reducer": ["sum"], "countRows": False, "fields": ""},
}
_TS = {
    "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": []},
    "tooltip": {"mode": "multi", "sort": "desc"},
}
_BARGAUGE = {
    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
    "orientation": "horizontal",
    "displayMode": "gradient",
    "showUnfilled": True,
    "valueMode": "color",
    "namePlacement": "auto",
    "sizing": "auto",
    "minVizHeight": 16,
    "minVizWidth": 8,
    "maxVizHeight": 300,
}


def _count_thresholds(orange: float, red: float) -> Thresholds:
    return Thresholds(
        steps=[
            Threshold(color="green", value=None),
            Threshold(color="orange", value=orange),
            Threshold(color="red", value=red),
        ]
    )


def _value_map(values: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A value mapping: raw value -> (shown text, colour)."""
    return {
        "type": "value",
        "options": {
            v: {"text": t, "color": c, "index": i} for i, (v, (t, c)) in enumerate(values.items())
        },
    }


def _severity_cells(lang: Lang) -> Override:
    """The ``severity`` column: values in the catalogue's words, cells in the severity's colour."""
    names = {s: (text(f"severity.{s}", lang), c) for s, c in ap.SEVERITY_COLORS.items()}
    return Override(
        matcher={"id": "byName", "options": "severity"},
        properties=[
            {"id": "custom.cellOptions", "value": {"type": "color-background"}},
            {"id": "mappings", "value": [_value_map(names)]},
        ],
    )


def _unit(column: str, unit: str, regex: bool = False) -> Override:
    matcher = {"id": "byRegexp" if regex else "byName", "options": column}
    return Override(matcher=matcher, properties=[{"id": "unit", "value": unit}])


# --- Operations ----------------------------------------------------------------------------

OPS_FILTERS = ("district", "street", "community", "grid", "category", "source")
WARNING_FILTERS = OPS_FILTERS[:-1]  # a warning has no source


def _ops_variables() -> tuple[VarSpec, ...]:
    return (
        VarSpec("district", "var.district", _var_query("district", "counts_1d", [])),
        VarSpec("street", "var.street", _var_query("street", "counts_1d", ["district"])),
        VarSpec(
            "community",
            "var.community",
            _var_query("community", "counts_1d", ["district", "street"]),
        ),
        VarSpec(
            "grid",
            "var.grid",
            _var_query("grid_code", "counts_1d", ["district", "street", "community"]),
        ),
        VarSpec("category", "var.category", _var_query("category", "counts_1d", [])),
        VarSpec("source", "var.source", None, SOURCES),
    )


def _counts(
    columns: Sequence[str],
    *,
    group_by: Sequence[str],
    order_by: Sequence[str],
    limit: int | None = None,
    table: str = "counts_1m",
) -> Select:
    return Select(
        columns,
        f"{DB}.{table}",
        where=["$__timeFilter(bucket)", *_filters(OPS_FILTERS)],
        group_by=group_by,
        order_by=order_by,
        limit=limit,
    )


def _map_panel(city: CityMap) -> PanelSpec:
    codes = "[" + ", ".join(sql_string(g.grid_code) for g in city.grids) + "]"
    lats = "[" + ", ".join(f"{g.lat:.6f}" for g in city.grids) + "]"
    lons = "[" + ", ".join(f"{g.lon:.6f}" for g in city.grids) + "]"
    sel = _counts(
        [
            "grid_code",
            f"transform(grid_code, {codes}, {lats}, nan) AS latitude",
            f"transform(grid_code, {codes}, {lons}, nan) AS longitude",
            "sum(n) AS events",
        ],
        group_by=["grid_code"],
        order_by=["events DESC"],
    )
    lat = sum(g.lat for g in city.grids) / len(city.grids)
    lon = sum(g.lon for g in city.grids) / len(city.grids)
    options = {
        "view": {
            "id": "coords",
            "lat": round(lat, 4),
            "lon": round(lon, 4),
            "zoom": 12,
            "allLayers": True,
        },
        "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
        "basemap": {"type": "default", "name": "Basemap", "config": {}},
        "layers": [
            {
                "type": "markers",
                "name": "grids",
                "tooltip": True,
                "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
                "config": {
                    "showLegend": True,
                    "style": {
                        "size": {"field": "events", "fixed": 5, "min": 4, "max": 18},
                        "color": {"field": "events"},
                        "opacity": 0.7,
                    },
                },
            }
        ],
        "tooltip": {"mode": "details"},
    }
    return PanelSpec(
        "ops.map",
        "geomap",
        (Query.of(sel, format="table", columns=("grid_code", "latitude", "longitude", "events")),),
        w=12,
        h=14,
        options=options,
        color={"mode": "continuous-GrYlRd"},
    )


def _warning_panels(lang: Lang) -> tuple[PanelSpec, PanelSpec]:
    """Active warnings: a stat per severity, and the list with evidence, most severe first."""
    where = _filters(WARNING_FILTERS)
    colored = tuple(
        Override(
            matcher={"id": "byName", "options": s},
            properties=[
                {"id": "color", "value": {"mode": "fixed", "fixedColor": c}},
                {"id": "displayName", "value": text(f"severity.{s}", lang)},
            ],
        )
        for s, c in ap.SEVERITY_COLORS.items()
    )
    tb: Format = "table"
    return (
        PanelSpec(
            "ops.warnings_active",
            "stat",
            (
                Query.of(
                    ap.active_by_severity(where), format=tb, columns=ap.ACTIVE_BY_SEVERITY_COLUMNS
                ),
            ),
            w=6,
            h=10,
            unit="short",
            options={**_stat_options(text_mode="value_and_name"), "orientation": "horizontal"},
            overrides=colored,
        ),
        PanelSpec(
            "ops.warnings",
            "table",
            (Query.of(ap.active_warnings(where), format=tb, columns=ap.ACTIVE_COLUMNS),),
            w=18,
            h=10,
            options=_TABLE,
            overrides=(_severity_cells(lang),),
        ),
    )


def operations(city: CityMap, lang: Lang = "both") -> Board:
    rate = _counts(
        [f"{_interval_time('bucket')} AS time", "source", "sum(n) / $__interval_s AS events_per_s"],
        group_by=["time", "source"],
        order_by=["time", "source"],
    )
    total = _counts(["sum(n) AS events"], group_by=[], order_by=[])
    late = Select(
        ["sum(n) AS late_events"],
        f"{DB}.late_counts",
        where=["granularity = '1m'", "$__timeFilter(bucket)", *_filters(OPS_FILTERS)],
    )
    late_ts = Select(
        [f"{_interval_time('bucket')} AS time", "source", "sum(n) AS late_events"],
        f"{DB}.late_counts",
        where=["granularity = '1m'", "$__timeFilter(bucket)", *_filters(OPS_FILTERS)],
        group_by=["time", "source"],
        order_by=["time", "source"],
    )
    dead = Select(
        ["count() AS dead_letters"], f"{DB}.dead_letters", where=["$__timeFilter(ingested_at)"]
    )
    dead_by = Select(
        ["reason_code", "count() AS dead_letters"],
        f"{DB}.dead_letters",
        where=["$__timeFilter(ingested_at)"],
        group_by=["reason_code"],
        order_by=["dead_letters DESC", "reason_code"],
    )
    by_street = _counts(
        [
            "district",
            "street",
            "sum(n) AS events",
            *(f"sumIf(n, source = '{s}') AS {s}" for s in SOURCES),
        ],
        group_by=["district", "street"],
        order_by=["events DESC", "district", "street"],
    )
    by_community = _counts(
        [
            "street",
            "community",
            "sum(n) AS events",
            *(f"sumIf(n, source = '{s}') AS {s}" for s in SOURCES),
        ],
        group_by=["street", "community"],
        order_by=["events DESC", "street", "community"],
        limit=20,
    )
    by_grid = _counts(
        ["grid_code", "sum(n) AS events"],
        group_by=["grid_code"],
        order_by=["events DESC", "grid_code"],
        limit=15,
    )
    last_hour = "toUInt32(bucket) > toUInt32($__toTime) - 3600"
    prev_hour = (
        "toUInt32(bucket) > toUInt32($__toTime) - 7200 AND "
        "toUInt32(bucket) <= toUInt32($__toTime) - 3600"
    )
    rising = Select(
        [
            "category",
            "subcategory",
            f"sumIf(n, {last_hour}) AS last_hour",
            f"sumIf(n, {prev_hour}) AS previous_hour",
            "toInt64(last_hour) - toInt64(previous_hour) AS change",
        ],
        f"{DB}.counts_1m",
        where=[
            "toUInt32(bucket) > toUInt32($__toTime) - 7200",
            "bucket <= $__toTime",
            *_filters(OPS_FILTERS),
        ],
        group_by=["category", "subcategory"],
        having=["last_hour > 0"],
        order_by=["change DESC", "last_hour DESC", "subcategory"],
        limit=10,
    )
    delay = "toInt64(toUInt32(ingested_at)) - toInt64(toUInt32(record_time))"
    ingest = Select(
        [
            f"{_interval_time('ingested_at')} AS time",
            f"quantile(0.5)({delay}) AS p50_s",
            f"quantile(0.95)({delay}) AS p95_s",
            f"max({delay}) AS max_s",
        ],
        f"{DB}.events",
        where=["$__timeFilter(ingested_at)", *_filters(OPS_FILTERS)],
        group_by=["time"],
        order_by=["time"],
    )
    by_kind = ap.warnings_by_kind(_filters(WARNING_FILTERS), _interval_time("started_at"))
    ts: Format = "time_series"
    tb: Format = "table"
    panels = (
        PanelSpec(
            "ops.total",
            "stat",
            (Query.of(total, format=tb, columns=("events",)),),
            w=6,
            h=4,
            unit="short",
            options=_stat_options(),
            thresholds=Thresholds(steps=[Threshold(color="blue", value=None)]),
        ),
        PanelSpec(
            "ops.late",
            "stat",
            (Query.of(late, format=tb, columns=("late_events",)),),
            w=6,
            h=4,
            unit="short",
            options=_stat_options(),
            thresholds=_count_thresholds(100, 1000),
        ),
        PanelSpec(
            "ops.dead",
            "stat",
            (Query.of(dead, format=tb, columns=("dead_letters",)),),
            w=6,
            h=4,
            unit="short",
            options=_stat_options(),
            thresholds=_count_thresholds(1, 100),
        ),
        PanelSpec(
            "ops.dead_by_reason",
            "bargauge",
            (Query.of(dead_by, format=tb, columns=("reason_code", "dead_letters")),),
            w=6,
            h=4,
            unit="short",
            options=_BARGAUGE,
            thresholds=_count_thresholds(1, 100),
        ),
        *_warning_panels(lang),
        PanelSpec(
            "ops.rate",
            "timeseries",
            (
                Query.of(
                    rate, format=ts, columns=("time", "source", "events_per_s"), time_column="time"
                ),
            ),
            w=16,
            h=8,
            unit="suffix: events/s",
            options=_TS,
            max_data_points=300,
            custom={
                "drawStyle": "line",
                "fillOpacity": 15,
                "stacking": {"mode": "normal", "group": "A"},
                "lineWidth": 1,
                "showPoints": "never",
            },
        ),
        PanelSpec(
            "ops.rising",
            "table",
            (
                Query.of(
                    rising,
                    format=tb,
                    columns=("category", "subcategory", "last_hour", "previous_hour", "change"),
                ),
            ),
            w=8,
            h=8,
            options=_TABLE,
        ),
        _map_panel(city),
        PanelSpec(
            "ops.by_grid",
            "bargauge",
            (Query.of(by_grid, format=tb, columns=("grid_code", "events")),),
            w=12,
            h=14,
            unit="short",
            options=_BARGAUGE,
            color={"mode": "continuous-GrYlRd"},
            thresholds=Thresholds(steps=[Threshold(color="green", value=None)]),
        ),
        PanelSpec(
            "ops.by_street",
            "table",
            (Query.of(by_street, format=tb, columns=("district", "street", "events", *SOURCES)),),
            w=12,
            h=8,
            options=_TABLE,
        ),
        PanelSpec(
            "ops.by_community",
            "table",
            (
                Query.of(
                    by_community, format=tb, columns=("street", "community", "events", *SOURCES)
                ),
            ),
            w=12,
            h=8,
            options=_TABLE,
        ),
        PanelSpec(
            "ops.ingest_delay",
            "timeseries",
            (
                Query.of(
                    ingest,
                    format=ts,
                    columns=("time", "p50_s", "p95_s", "max_s"),
                    time_column="time",
                ),
            ),
            w=12,
            h=8,
            unit="s",
            options=_TS,
            max_data_points=200,
        ),
        PanelSpec(
            "ops.late_rate",
            "timeseries",
            (
                Query.of(
                    late_ts,
                    format=ts,
                    columns=("time", "source", "late_events"),
                    time_column="time",
                ),
            ),
            w=12,
            h=8,
            unit="short",
            options=_TS,
            max_data_points=200,
            custom={
                "drawStyle": "bars",
                "fillOpacity": 60,
                "stacking": {"mode": "normal", "group": "A"},
            },
        ),
        PanelSpec(
            "ops.warnings_by_kind",
            "timeseries",
            (Query.of(by_kind, format=ts, columns=ap.BY_KIND_COLUMNS, time_column="time"),),
            w=24,
            h=7,
            unit="short",
            options=_TS,
            max_data_points=24,
            custom={
                "drawStyle": "bars",
                "fillOpacity": 70,
                "stacking": {"mode": "normal", "group": "A"},
            },
        ),
    )
    return Board(
        "operations",
        "gridpulse-operations",
        "board.operations",
        "30s",
        "now-6h",
        "now",
        _ops_variables(),
        panels,
    )


# --- SLA & on-call -------------------------------------------------------------------------

SLA_FILTERS = ("district", "street", "category", "source")
ALERT_FILTERS = SLA_FILTERS[:-1]  # an alert has no source
_COUNTDOWN_ORDER = ["toUInt32(stage_deadline) = 0", "remaining_s", "case_id"]


def _sla_variables() -> tuple[VarSpec, ...]:
    return (
        VarSpec("district", "var.district", _var_query("district", "cases", [])),
        VarSpec("street", "var.street", _var_query("street", "cases", ["district"])),
        VarSpec("category", "var.category", _var_query("category", "cases", [])),
        VarSpec("source", "var.source", None, SOURCES),
    )


def _last_24h(col: str) -> list[str]:
    return [f"toUInt32({col}) > toUInt32($__toTime) - 86400", f"{col} <= $__toTime"]


def _oncall_panels(lang: Lang) -> tuple[PanelSpec, ...]:
    """Open alerts with ack status and escalation level, time to ack, webhook deliveries."""
    where = _filters(ALERT_FILTERS)
    tb: Format = "table"
    ack = Override(
        matcher={"id": "byName", "options": "acknowledged"},
        properties=[
            {"id": "custom.cellOptions", "value": {"type": "color-text"}},
            {
                "id": "mappings",
                "value": [
                    _value_map(
                        {"0": (text("ack.no", lang), "red"), "1": (text("ack.yes", lang), "green")}
                    )
                ],
            },
        ],
    )
    level = Override(
        matcher={"id": "byName", "options": "escalation_level"},
        properties=[
            {"id": "custom.cellOptions", "value": {"type": "color-text"}},
            {"id": "thresholds", "value": _count_thresholds(1, 2).model_dump()},
        ],
    )
    attention = Override(
        matcher={"id": "byRegexp", "options": "/^(unacknowledged|escalated)$/"},
        properties=[{"id": "thresholds", "value": _count_thresholds(1, 10).model_dump()}],
    )
    dead = Override(
        matcher={"id": "byRegexp", "options": "/^(gave_up|dead)$/"},
        properties=[
            {"id": "custom.cellOptions", "value": {"type": "color-text"}},
            {"id": "thresholds", "value": _count_thresholds(1, 1).model_dump()},
        ],
    )
    return (
        PanelSpec(
            "sla.oncall",
            "stat",
            (Query.of(ap.oncall_totals(where), format=tb, columns=ap.ONCALL_COLUMNS),),
            w=8,
            h=6,
            options=_stat_options(text_mode="value_and_name"),
            thresholds=Thresholds(steps=[Threshold(color="blue", value=None)]),
            overrides=(attention,),
        ),
        PanelSpec(
            "sla.ack_time",
            "table",
            (Query.of(ap.ack_times(where), format=tb, columns=ap.ACK_COLUMNS),),
            w=16,
            h=6,
            options=_TABLE,
            overrides=(_severity_cells(lang), _unit("/_s$/", "s", regex=True)),
        ),
        PanelSpec(
            "sla.open_alerts",
            "table",
            (Query.of(ap.open_alerts(where), format=tb, columns=ap.OPEN_COLUMNS),),
            w=24,
            h=10,
            options=_TABLE,
            overrides=(_severity_cells(lang), ack, level, _unit("open_s", "s")),
        ),
        PanelSpec(
            "sla.delivery_failures",
            "timeseries",
            (
                Query.of(
                    ap.failures_over_time(),
                    format="time_series",
                    columns=ap.FAILURE_TS_COLUMNS,
                    time_column="time",
                ),
            ),
            w=12,
            h=8,
            unit="short",
            options=_TS,
            custom={
                "drawStyle": "bars",
                "fillOpacity": 70,
                "stacking": {"mode": "normal", "group": "A"},
            },
        ),
        PanelSpec(
            "sla.deliveries",
            "table",
            (Query.of(ap.deliveries_by_receiver(), format=tb, columns=ap.RECEIVER_COLUMNS),),
            w=12,
            h=8,
            options=_TABLE,
            overrides=(dead, _unit("failed_pct", "percent")),
        ),
        PanelSpec(
            "sla.receivers",
            "table",
            (Query.of(ap.receiver_status(), format=tb, columns=ap.RECEIVER_STATUS_COLUMNS),),
            w=10,
            h=7,
            options=_TABLE,
            overrides=(dead,),
        ),
        PanelSpec(
            "sla.dead_deliveries",
            "table",
            (Query.of(ap.dead_deliveries(), format=tb, columns=ap.DEAD_COLUMNS),),
            w=14,
            h=7,
            options=_TABLE,
        ),
    )


def sla(lang: Lang = "both") -> Board:
    open_cases = f"({kp.countdown()})"
    countdown_cols = (
        "case_id",
        "stage",
        "remaining_s",
        "stage_deadline",
        "paused",
        "urgent",
        "source",
        "street",
        "community",
        "grid_code",
        "subcategory",
        "unit",
    )
    countdown = Select(
        countdown_cols,
        open_cases,
        where=_filters(SLA_FILTERS),
        order_by=_COUNTDOWN_ORDER,
        limit=200,
    )
    totals = Select(
        [
            "count() AS open_cases",
            "countIf(remaining_s < 0) AS overdue",
            "countIf(remaining_s >= 0 AND remaining_s < 3600) AS due_within_1h",
        ],
        open_cases,
        where=_filters(SLA_FILTERS),
    )
    by_stage = Select(
        [
            "stage",
            "countIf(remaining_s >= 0 OR remaining_s IS NULL) AS within_limit",
            "countIf(remaining_s < 0) AS overdue",
        ],
        open_cases,
        where=_filters(SLA_FILTERS),
        group_by=["stage"],
        order_by=["overdue DESC", "stage"],
    )
    alert_where = [
        "kind IN ('breach', 'escalation')",
        *_last_24h("fired_at"),
        *_filters(SLA_FILTERS),
    ]
    alerts_ts = Select(
        ["toStartOfHour(fired_at) AS time", "kind", "count() AS alerts"],
        f"{DB}.sla_alerts",
        where=alert_where,
        group_by=["time", "kind"],
        order_by=["time", "kind"],
    )
    alert_list = Select(
        [
            "fired_at",
            "kind",
            "level",
            "case_id",
            "stage",
            "deadline",
            "street",
            "community",
            "category",
            "unit",
        ],
        f"{DB}.sla_alerts",
        where=alert_where,
        order_by=["fired_at DESC", "alert_id"],
        limit=200,
    )
    by_unit = Select(
        [
            "unit",
            "countIf(kind = 'breach') AS breaches",
            "countIf(kind = 'escalation') AS escalations",
        ],
        f"{DB}.sla_alerts",
        where=alert_where,
        group_by=["unit"],
        order_by=["breaches DESC", "escalations DESC", "unit"],
        limit=20,
    )
    tb: Format = "table"
    remaining = Override(
        matcher={"id": "byName", "options": "remaining_s"},
        properties=[
            {"id": "unit", "value": "s"},
            {"id": "custom.cellOptions", "value": {"type": "color-background"}},
            {
                "id": "thresholds",
                "value": Thresholds(
                    steps=[
                        Threshold(color="red", value=None),
                        Threshold(color="orange", value=0),
                        Threshold(color="green", value=3600),
                    ]
                ).model_dump(),
            },
        ],
    )
    panels = (
        PanelSpec(
            "sla.open",
            "stat",
            (Query.of(totals, format=tb, columns=("open_cases", "overdue", "due_within_1h")),),
            w=8,
            h=5,
            options=_stat_options(text_mode="value_and_name"),
            thresholds=Thresholds(steps=[Threshold(color="blue", value=None)]),
        ),
        PanelSpec(
            "sla.by_stage",
            "barchart",
            (Query.of(by_stage, format=tb, columns=("stage", "within_limit", "overdue")),),
            w=16,
            h=5,
            options={
                "orientation": "horizontal",
                "stacking": "normal",
                "showValue": "auto",
                "xField": "stage",
                "legend": {
                    "showLegend": True,
                    "displayMode": "list",
                    "placement": "right",
                    "calcs": [],
                },
            },
        ),
        PanelSpec(
            "sla.countdown",
            "table",
            (Query.of(countdown, format=tb, columns=countdown_cols),),
            w=24,
            h=12,
            options=_TABLE,
            overrides=(remaining,),
        ),
        PanelSpec(
            "sla.alerts_24h",
            "timeseries",
            (
                Query.of(
                    alerts_ts,
                    format="time_series",
                    columns=("time", "kind", "alerts"),
                    time_column="time",
                ),
            ),
            w=12,
            h=8,
            options=_TS,
            custom={
                "drawStyle": "bars",
                "fillOpacity": 70,
                "stacking": {"mode": "normal", "group": "A"},
            },
        ),
        PanelSpec(
            "sla.by_unit",
            "table",
            (Query.of(by_unit, format=tb, columns=("unit", "breaches", "escalations")),),
            w=12,
            h=8,
            options=_TABLE,
        ),
        PanelSpec(
            "sla.alert_list",
            "table",
            (
                Query.of(
                    alert_list,
                    format=tb,
                    columns=(
                        "fired_at",
                        "kind",
                        "level",
                        "case_id",
                        "stage",
                        "deadline",
                        "street",
                        "community",
                        "category",
                        "unit",
                    ),
                ),
            ),
            w=24,
            h=10,
            options=_TABLE,
        ),
        *_oncall_panels(lang),
    )
    return Board(
        "sla", "gridpulse-sla", "board.sla", "1m", "now-24h", "now", _sla_variables(), panels
    )


# --- Leadership ----------------------------------------------------------------------------


def _rate_stat(rate: str) -> PanelSpec:
    t = TARGETS[rate]
    change_steps = (
        [Threshold(color="red", value=None), Threshold(color="green", value=0)]
        if t.higher
        else [Threshold(color="green", value=None), Threshold(color="red", value=0.01)]
    )
    change = Override(
        matcher={"id": "byName", "options": "change"},
        properties=[
            {"id": "unit", "value": "suffix: pp"},
            {"id": "thresholds", "value": Thresholds(steps=change_steps).model_dump()},
            {"id": "displayName", "value": "Δ"},
        ],
    )
    return PanelSpec(
        f"kpi.{rate}",
        "stat",
        (
            Query(
                kp.stat_with_change(rate), format="table", columns=("current", "previous", "change")
            ),
        ),
        w=4,
        h=5,
        unit="percent",
        decimals=2,
        thresholds=t.thresholds(),
        options=_stat_options("/^(current|change)$/", "value"),
        overrides=(change,),
    )


def leadership(lang: Lang) -> Board:
    trend = Select(
        [
            "toStartOfDay(opened_at, ${tz:singlequote}) AS time",
            "count() AS accepted",
            "countIf(stage = 'closed') AS closed",
            f"countIf(stage NOT IN ({', '.join(sql_string(s) for s in TERMINAL)})) AS still_open",
        ],
        f"{DB}.cases",
        where=["$__timeFilter(opened_at)", "voided = 0"],
        group_by=["time"],
        order_by=["time"],
    )
    by_source = Select(
        ["category", *(f"countIf(source = '{s}') AS {s}" for s in SOURCES)],
        f"{DB}.cases",
        where=["$__timeFilter(opened_at)", "voided = 0"],
        group_by=["category"],
        order_by=["category"],
    )
    rank_cols = ("district", "street", "on_time_close_rate", "volume")
    pct = {"id": "unit", "value": "percent"}
    rate_cols = Override(
        matcher={"id": "byRegexp", "options": "/_rate$/"},
        properties=[pct, {"id": "decimals", "value": 2}],
    )
    summary_cols = ("district", *kp.SUMMARY_COUNTS, *kp.SUMMARY_RATES)
    on_time = Override(
        matcher={"id": "byName", "options": "on_time_close_rate"},
        properties=[
            {"id": "custom.cellOptions", "value": {"type": "color-background"}},
            {"id": "thresholds", "value": TARGETS["on_time_close_rate"].thresholds().model_dump()},
        ],
    )
    tb: Format = "table"
    panels = (
        *(_rate_stat(r) for r in kp.KPI_RATES_SHOWN),
        PanelSpec(
            "lead.trend",
            "timeseries",
            (
                Query.of(
                    trend,
                    format="time_series",
                    columns=("time", "accepted", "closed", "still_open"),
                    time_column="time",
                ),
            ),
            w=12,
            h=8,
            options=_TS,
            custom={"drawStyle": "bars", "fillOpacity": 60, "lineWidth": 1},
        ),
        PanelSpec(
            "lead.by_source",
            "barchart",
            (Query.of(by_source, format=tb, columns=("category", *SOURCES)),),
            w=12,
            h=8,
            options={
                "orientation": "horizontal",
                "stacking": "normal",
                "showValue": "auto",
                "xField": "category",
                "legend": {
                    "showLegend": True,
                    "displayMode": "list",
                    "placement": "bottom",
                    "calcs": [],
                },
            },
        ),
        PanelSpec(
            "lead.top",
            "table",
            (
                Query(
                    kp.ranking_table("street", "on_time_close_rate", True, 10),
                    format=tb,
                    columns=rank_cols,
                ),
            ),
            w=12,
            h=8,
            options=_TABLE,
            overrides=(rate_cols, on_time),
        ),
        PanelSpec(
            "lead.bottom",
            "table",
            (
                Query(
                    kp.ranking_table("street", "on_time_close_rate", False, 10),
                    format=tb,
                    columns=rank_cols,
                ),
            ),
            w=12,
            h=8,
            options=_TABLE,
            overrides=(rate_cols, on_time),
        ),
        PanelSpec(
            "lead.summary",
            "table",
            (
                Query(
                    kp.summary_table("district", text("city_total", lang)),
                    format=tb,
                    columns=summary_cols,
                ),
            ),
            w=24,
            h=7,
            options=_TABLE,
            overrides=(rate_cols, on_time),
        ),
    )
    return Board(
        "leadership", "gridpulse-leadership", "board.leadership", "15m", "now/M", "now", (), panels
    )


def boards(city: CityMap, lang: Lang = "both") -> tuple[Board, ...]:
    return operations(city, lang), sla(lang), leadership(lang)


# --- to the dashboard model ------------------------------------------------------------------


def _layout(panels: Sequence[PanelSpec]) -> list[GridPos]:
    """Left to right, wrapping at 24 columns; a row is as tall as its tallest panel."""
    out, x, y, row_h = [], 0, 0, 0
    for p in panels:
        if x + p.w > 24:
            x, y, row_h = 0, y + row_h, 0
        out.append(GridPos(h=p.h, w=p.w, x=x, y=y))
        x, row_h = x + p.w, max(row_h, p.h)
    return out


def _target(q: Query, ref: str, db_ref: str) -> Target:
    return Target(
        refId=ref,
        queryType="timeSeries" if q.format == "time_series" else "table",
        format=FORMAT_CODES[q.format],
        rawSql=q.render(db_ref),
    )


def _panel(i: int, spec: PanelSpec, pos: GridPos, lang: Lang, db_ref: str) -> Panel:
    refs = "ABCDEFGH"
    defaults = FieldDefaults(
        unit=spec.unit,
        decimals=spec.decimals,
        thresholds=spec.thresholds,
        color=spec.color,
        custom=spec.custom,
    )
    return Panel(
        id=i,
        type=spec.type,
        title=text(spec.title, lang),
        gridPos=pos,
        targets=[_target(q, refs[k], db_ref) for k, q in enumerate(spec.queries)],
        fieldConfig=FieldConfig(defaults=defaults, overrides=list(spec.overrides)),
        options=spec.options,
        maxDataPoints=spec.max_data_points,
    )


ALL_OPTION = VariableOption(text=["All"], value=["$__all"], selected=True)


def _variable(v: VarSpec, lang: Lang, db_ref: str) -> Variable:
    if v.query is None:
        return Variable(
            name=v.name,
            label=text(v.label, lang),
            type="custom",
            query=",".join(v.values),
            multi=True,
            includeAll=True,
            current=ALL_OPTION,
            options=[
                ALL_OPTION,
                *(VariableOption(text=s, value=s, selected=False) for s in v.values),
            ],
        )
    sql = v.query.replace(DB, db_ref)
    return Variable(
        name=v.name,
        label=text(v.label, lang),
        type="query",
        query=sql,
        datasource=Panel.model_fields["datasource"].default,
        multi=True,
        includeAll=True,
        current=ALL_OPTION,
        refresh=1,
        sort=1,
    )


def _constant(name: str, value: str) -> Variable:
    opt = VariableOption(text=value, value=value, selected=True)
    return Variable(name=name, type="constant", query=value, hide=2, current=opt, options=[opt])


def dashboard(
    board: Board, lang: Lang = "both", db: str = DEFAULT_DB, timezone: str = "UTC"
) -> Dashboard:
    """The dashboard model of ``board``: SQL with ``${db}`` (a hidden constant variable
    holding ``db``) and ``${tz:singlequote}`` (the city's time zone), titles in ``lang``."""
    db_ref = "${db}"
    specs = board.panels
    panels = [
        _panel(i, s, pos, lang, db_ref)
        for i, (s, pos) in enumerate(zip(specs, _layout(specs), strict=True), start=1)
    ]
    variables = [
        _constant("db", db),
        _constant("tz", timezone),
        *(_variable(v, lang, db_ref) for v in board.variables),
    ]
    return Dashboard(
        uid=board.uid,
        title=text(board.title, lang),
        tags=[TAG],
        timezone=timezone,
        refresh=board.refresh,
        time=TimeWindow(**{"from": board.time_from}, to=board.time_to),
        panels=panels,
        templating=Templating(list=variables),
        links=[Link(title="gridpulse", tags=[TAG], asDropdown=True)],
    )
