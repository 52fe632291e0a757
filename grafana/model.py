"""Typed models of the dashboard JSON we emit (Grafana's dashboard schema, ``schemaVersion``
39), serialised with Grafana's camelCase names. Unknown fields are refused, so a typo fails
at build time; ``tests/unit/test_grafana_boards.py`` also checks every emitted key against the
foundation SDK's dashboard types."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 39
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "gridpulse-clickhouse"
DATASOURCE_NAME = "gridpulse ClickHouse"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class DataSourceRef(_Model):
    type: str = DATASOURCE_TYPE
    uid: str = DATASOURCE_UID


class GridPos(_Model):
    h: int
    w: int
    x: int
    y: int


class Target(_Model):
    """A ClickHouse plugin query (``CHSqlQuery``): SQL editor, raw SQL, result format."""

    ref_id: str = Field(alias="refId")
    datasource: DataSourceRef = DataSourceRef()
    editor_type: Literal["sql"] = Field(default="sql", alias="editorType")
    query_type: Literal["table", "timeSeries"] = Field(alias="queryType")
    format: Literal[0, 1]
    raw_sql: str = Field(alias="rawSql")


class Threshold(_Model):
    color: str
    value: float | None


class Thresholds(_Model):
    mode: Literal["absolute", "percentage"] = "absolute"
    steps: list[Threshold]


class FieldDefaults(_Model):
    unit: str | None = None
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    thresholds: Thresholds | None = None
    color: dict[str, Any] | None = None
    custom: dict[str, Any] | None = None
    display_name: str | None = Field(default=None, alias="displayName")


class Override(_Model):
    matcher: dict[str, Any]
    properties: list[dict[str, Any]]


class FieldConfig(_Model):
    defaults: FieldDefaults = FieldDefaults()
    overrides: list[Override] = []


PanelType = Literal["timeseries", "stat", "table", "barchart", "bargauge", "geomap", "text"]


class Panel(_Model):
    id: int
    type: PanelType
    title: str
    description: str | None = None
    grid_pos: GridPos = Field(alias="gridPos")
    datasource: DataSourceRef | None = DataSourceRef()
    targets: list[Target] = []
    field_config: FieldConfig = Field(default=FieldConfig(), alias="fieldConfig")
    options: dict[str, Any] = {}
    transformations: list[dict[str, Any]] = []
    interval: str | None = None
    max_data_points: int | None = Field(default=None, alias="maxDataPoints")


class VariableOption(_Model):
    text: str | list[str]
    value: str | list[str]
    selected: bool | None = None


class Variable(_Model):
    """A template variable: ``query`` (ClickHouse SQL), ``constant`` or ``custom``."""

    name: str
    label: str | None = None
    type: Literal["query", "constant", "custom"]
    query: str | dict[str, Any] | None = None
    datasource: DataSourceRef | None = None
    current: VariableOption | None = None
    options: list[VariableOption] = []
    multi: bool = False
    include_all: bool = Field(default=False, alias="includeAll")
    all_value: str | None = Field(default=None, alias="allValue")
    refresh: Literal[0, 1, 2] | None = None
    sort: int | None = None
    hide: Literal[0, 1, 2] = 0


class Templating(_Model):
    variables: list[Variable] = Field(default=[], alias="list")


class TimeWindow(_Model):
    from_: str = Field(alias="from")
    to: str


class Link(_Model):
    title: str
    type: Literal["dashboards", "link"] = "dashboards"
    tags: list[str] = []
    as_dropdown: bool = Field(default=False, alias="asDropdown")
    include_vars: bool = Field(default=True, alias="includeVars")
    keep_time: bool = Field(default=True, alias="keepTime")


class Dashboard(_Model):
    uid: str
    title: str
    description: str | None = None
    tags: list[str] = []
    timezone: str
    refresh: str
    time: TimeWindow
    editable: bool = False
    graph_tooltip: Literal[0, 1, 2] = Field(default=1, alias="graphTooltip")
    schema_version: int = Field(default=SCHEMA_VERSION, alias="schemaVersion")
    version: int = 1
    panels: list[Panel]
    templating: Templating = Templating()
    links: list[Link] = []

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)
