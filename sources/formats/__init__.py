"""Declarative import formats: how a city's 311-style CSV export maps to gridpulse.

A format is a YAML file in this directory (or anywhere, by path) validated into
``ImportFormat`` at load. Supporting another city's export (NYC "Due Date", Boston
``sla_target_dt``, Baltimore ``DueDate``...) means writing a new YAML file, not new code.
"""

from __future__ import annotations

import re
import string
from datetime import datetime
from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.events import Channel
from core.types import TimeZoneName

FORMATS_DIR = Path(__file__).resolve().parent

NormalizedStatus = Literal["closed", "open", "cancelled", "referred", "transferred", "duplicate"]
VOID_LIKE: frozenset[str] = frozenset({"cancelled", "referred", "transferred", "duplicate"})
"""Normalized statuses whose cases end voided, not closed (see ``sources.replay``)."""
TimeColumn = Literal["created", "closed", "due", "updated"]
CHANNELS: frozenset[str] = frozenset(get_args(Channel))

# a subcategory code is "<group>.<name>", lower snake case, and must also be a wire `Code`
SUBCATEGORY_RE = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
# grid codes rendered from the template must be wire `Code`s (see core.events.Code)
GRID_CODE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# the only placeholder a grid template may use: the raw cell value
TEMPLATE_FIELD = "value"


def _check_datetime_format(v: str) -> str:
    sample = datetime(2018, 1, 2, 13, 4, 5)
    try:
        ok = datetime.strptime(sample.strftime(v), v) == sample
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"datetime format {v!r} does not round-trip a timestamp")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Columns(_Strict):
    """Source column names. ``id``, ``created`` and ``category`` are required; the rest optional."""

    id: str = Field(min_length=1)
    created: str = Field(min_length=1)
    category: str = Field(min_length=1)
    channel: str | None = None
    status: str | None = None
    closed: str | None = None
    due: str | None = None
    updated: str | None = None
    grid: str | None = None
    lat: str | None = None
    lon: str | None = None
    address: list[str] = []
    caller_id: str | None = None

    @model_validator(mode="after")
    def _lat_lon_together(self) -> Columns:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("columns.lat and columns.lon must be given together")
        return self

    def mapped(self) -> list[str]:
        """Every source column this format reads (each must exist in an export)."""
        single = [getattr(self, n) for n in type(self).model_fields if n != "address"]
        return [c for c in single if c is not None] + list(self.address)


class CategoryMapping(_Strict):
    """Source category value -> subcategory code; unmapped values go to ``other`` (reported)."""

    groups: dict[str, str] = Field(min_length=1, description="group code -> display name")
    map: dict[str, str] = Field(min_length=1, description="source value -> subcategory code")
    other: str

    @model_validator(mode="after")
    def _codes(self) -> CategoryMapping:
        for code in [*self.map.values(), self.other]:
            if not SUBCATEGORY_RE.match(code):
                raise ValueError(f"subcategory code {code!r} is not '<group>.<name>' snake case")
            group = code.split(".", 1)[0]
            if group not in self.groups:
                raise ValueError(f"subcategory {code!r}: group {group!r} not in categories.groups")
        return self

    def subcategory_names(self) -> dict[str, str]:
        """Every subcategory code this format can emit, named after its first source value."""
        names: dict[str, str] = {}
        for value, code in self.map.items():
            names.setdefault(code, value)
        names.setdefault(self.other, "Other")
        return names


class ImportFormat(_Strict):
    """How one 311-style CSV export maps onto ``HotlineRequest`` messages."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = ""
    timezone: TimeZoneName
    datetime_format: str = Field(min_length=1, description="strptime format of date columns")
    datetime_formats: dict[TimeColumn, str] = Field(
        default={}, description="per-column override of datetime_format (e.g. a date-only due)"
    )
    columns: Columns
    status_map: dict[str, NormalizedStatus] = {}
    categories: CategoryMapping
    channel_map: dict[str, Channel] = {}
    channel_default: Channel = "other"
    grid_template: str = "{value}"

    @field_validator("datetime_format")
    @classmethod
    def _round_trips(cls, v: str) -> str:
        return _check_datetime_format(v)

    @field_validator("datetime_formats")
    @classmethod
    def _each_round_trips(cls, v: dict[str, str]) -> dict[str, str]:
        for fmt in v.values():
            _check_datetime_format(fmt)
        return v

    @field_validator("grid_template")
    @classmethod
    def _one_placeholder(cls, v: str) -> str:
        fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
        if fields != [TEMPLATE_FIELD]:
            raise ValueError(f"grid_template must use exactly one {{{TEMPLATE_FIELD}}} placeholder")
        return v

    @model_validator(mode="after")
    def _maps_need_columns(self) -> ImportFormat:
        if self.status_map and self.columns.status is None:
            raise ValueError("status_map given but columns.status is not")
        if self.channel_map and self.columns.channel is None:
            raise ValueError("channel_map given but columns.channel is not")
        for role in self.datetime_formats:
            if getattr(self.columns, role) is None:
                raise ValueError(f"datetime_formats.{role} given but columns.{role} is not")
        return self

    def time_format(self, role: TimeColumn) -> str:
        """The strptime format of one time column (its override, else ``datetime_format``)."""
        return self.datetime_formats.get(role, self.datetime_format)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def grid_code(self, value: str) -> str | None:
        """The grid code for a raw grid cell, or None if the cell is empty or renders badly."""
        value = value.strip()
        if not value:
            return None
        code = self.grid_template.format(value=value)
        return code if GRID_CODE_RE.match(code) else None


def load_format(name_or_path: str | Path) -> ImportFormat:
    """Load a format by bundled name (``"la311"``) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = FORMATS_DIR / f"{name_or_path}.yaml"
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return ImportFormat.model_validate(data)
