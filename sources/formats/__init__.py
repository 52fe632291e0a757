"""Declarative import formats: how a city's 311-style export maps to gridpulse.

A format is a YAML file in this directory (or anywhere, by path) validated into
``ImportFormat`` at load. Supporting another city's export (NYC "Due Date", Boston
``sla_target_dt``, Baltimore ``DueDate``, an Open311 GeoReport v2 feed...) means writing a
new YAML file, not new code. Every key is described in ``docs/formats.md``.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta, timezone
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
Reader = Literal["csv", "open311"]
UnknownGrid = Literal["dead_letter", "locate"]
"""A grid code the city does not know: send it as is (the worker dead-letters it,
``unknown_grid``) or drop it and let the worker locate the request by its point."""
CHANNELS: frozenset[str] = frozenset(get_args(Channel))

# a subcategory code is "<group>.<name>", lower snake case, and must also be a wire `Code`
SUBCATEGORY_RE = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
# grid codes rendered from the template must be wire `Code`s (see core.events.Code)
GRID_CODE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# the only placeholder a grid template may use: the raw cell value
TEMPLATE_FIELD = "value"


ISO8601 = "iso8601"
"""``datetime_format`` keyword: ISO 8601 (``2021-01-04T14:05:49-05:00``, ``…Z``, a date, or a
naive local time), parsed with ``datetime.fromisoformat``."""
DIRECTIVE_RE = re.compile(r"%(.)")
# strptime directives a format may use; each is exercised by the round-trip samples below
DATE_DIRECTIVES = frozenset("YymdbBjaA")
TIME_DIRECTIVES = frozenset("HIMSfpz")
# the samples every format must round-trip: morning and afternoon, midnight and noon, a day
# above 12 (catches %d/%m swaps), two-digit fields with leading zeros and none
ROUND_TRIP_SAMPLES = (
    datetime(2018, 1, 2, 9, 4, 5, 123000),
    datetime(2019, 11, 28, 13, 6, 56, 456000),
    datetime(2020, 12, 31, 0, 0, 7, 0),
    datetime(2021, 7, 14, 12, 30, 59, 999000),
    datetime(2022, 10, 9, 23, 59, 1, 500),
)
SAMPLE_OFFSET = timezone(timedelta(hours=-5))


def _precision(directives: set[str]) -> str:
    """The finest field a strptime format carries: ``f``, ``S``, ``M``, ``H`` or ``d``."""
    for field_ in ("f", "S", "M"):
        if field_ in directives:
            return field_
    return "H" if directives & {"H", "I"} else "d"


def _truncate(t: datetime, precision: str) -> datetime:
    """``t`` without the fields finer than ``precision``."""
    fields = ("d", "H", "M", "S", "f")
    keep = fields.index(precision)
    return t.replace(
        hour=t.hour if keep >= 1 else 0,
        minute=t.minute if keep >= 2 else 0,
        second=t.second if keep >= 3 else 0,
        microsecond=t.microsecond if keep >= 4 else 0,
    )


def check_datetime_format(v: str) -> str:
    """Validate a strptime format (or ``iso8601``): known directives only, a whole date, no
    ``%H`` with ``%p`` (the 12-hour marker would be ignored: 01:06 PM read as 01:06), no ``%I``
    without ``%p``, no minutes without hours, and every sample time round-trips at the
    format's own precision (day, hour, minute, second or microsecond)."""
    if v == ISO8601:
        return v
    directives = set(DIRECTIVE_RE.findall(v)) - {"%"}
    unknown = sorted(directives - DATE_DIRECTIVES - TIME_DIRECTIVES)
    if unknown:
        raise ValueError(f"datetime format {v!r}: unsupported directive(s) {unknown}")
    has_day = bool({"m", "b", "B"} & directives and "d" in directives) or "j" in directives
    if not ({"Y", "y"} & directives and has_day):
        raise ValueError(f"datetime format {v!r} cannot round-trip a whole date (year, month, day)")
    if "H" in directives and "p" in directives:
        raise ValueError(
            f"datetime format {v!r} mixes %H with %p: use %I with %p (12-hour clock) or %H alone"
        )
    if "I" in directives and "p" not in directives:
        raise ValueError(f"datetime format {v!r} uses %I without %p: afternoon times are lost")
    if ("M" in directives and not {"H", "I"} & directives) or (
        "S" in directives and "M" not in directives
    ):
        raise ValueError(f"datetime format {v!r} skips a field (minutes need hours, seconds too)")
    precision = _precision(directives)
    aware = "z" in directives
    for sample in ROUND_TRIP_SAMPLES:
        t = _truncate(sample.replace(tzinfo=SAMPLE_OFFSET) if aware else sample, precision)
        text = t.strftime(v)
        try:
            ok = datetime.strptime(text, v) == t
        except (ValueError, re.error):  # re.error: a directive strptime cannot take twice
            ok = False
        if not ok:
            raise ValueError(f"datetime format {v!r} does not round-trip {t} (as {text!r})")
    return v


def parse_time(text: str, fmt: str, tz: ZoneInfo) -> datetime:
    """One cell as an aware datetime in ``tz``; raise ``ValueError`` when it does not parse.

    Naive values are wall times in ``tz``: ambiguous ones (the repeated autumn hour) resolve to
    the first occurrence and nonexistent ones (the skipped spring hour) shift forward, per
    Python's ``fold=0`` rules. Values with an offset (``%z``, ISO ``Z`` or ``±hh:mm``) keep
    their instant.
    """
    text = text.strip()
    # ISO 8601: a date alone reads as its midnight
    t = datetime.fromisoformat(text) if fmt == ISO8601 else datetime.strptime(text, fmt)
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    # via UTC: astimezone() to the datetime's own tzinfo is a no-op and would not normalize
    return t.astimezone(UTC).astimezone(tz)


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


class CategoryPattern(_Strict):
    """Values matching ``prefix`` (starts with) or ``regex`` (``re.fullmatch``) -> ``code``."""

    prefix: str | None = Field(None, min_length=1)
    regex: str | None = Field(None, min_length=1)
    code: str
    name: str = Field("", description="display name of the subcategory (default: the pattern)")

    @model_validator(mode="after")
    def _one_pattern(self) -> CategoryPattern:
        if (self.prefix is None) == (self.regex is None):
            raise ValueError("a category pattern needs exactly one of prefix or regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from None
        return self

    def matches(self, value: str) -> bool:
        if self.prefix is not None:
            return value.startswith(self.prefix)
        return re.fullmatch(self.regex or "", value) is not None

    @property
    def label(self) -> str:
        return self.name or self.prefix or self.regex or self.code


class CategoryMapping(_Strict):
    """Source category value -> subcategory code: an exact ``map`` entry first, else the first
    matching ``patterns`` entry, else ``other`` (counted in the report)."""

    groups: dict[str, str] = Field(min_length=1, description="group code -> display name")
    map: dict[str, str] = Field(default={}, description="source value -> subcategory code")
    patterns: list[CategoryPattern] = []
    other: str

    @model_validator(mode="after")
    def _codes(self) -> CategoryMapping:
        if not self.map and not self.patterns:
            raise ValueError("categories need a map or patterns (else every value is other)")
        for code in [*self.map.values(), *(p.code for p in self.patterns), self.other]:
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
        for pattern in self.patterns:
            names.setdefault(pattern.code, pattern.label)
        names.setdefault(self.other, "Other")
        return names

    def code_for(self, value: str) -> str | None:
        """The subcategory of a source value; None when neither map nor pattern knows it."""
        code = self.map.get(value)
        if code is None:
            code = next((p.code for p in self.patterns if p.matches(value)), None)
        return code


class ImportFormat(_Strict):
    """How one 311-style export (CSV, or Open311 GeoReport v2 JSON) maps onto
    ``HotlineRequest`` messages. Every key is described in ``docs/formats.md``."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = ""
    checked_against: str = Field("", description="what the column names and values came from")
    reader: Reader = "csv"
    timezone: TimeZoneName
    datetime_format: str = Field(
        min_length=1, description=f"strptime format of time columns, or {ISO8601!r}"
    )
    datetime_formats: dict[TimeColumn, str] = Field(
        default={}, description="per-column override of datetime_format (e.g. a date-only due)"
    )
    unknown_grid: UnknownGrid = "dead_letter"
    columns: Columns
    status_map: dict[str, NormalizedStatus] = {}
    categories: CategoryMapping
    channel_map: dict[str, Channel] = {}
    channel_default: Channel = "other"
    grid_template: str = "{value}"
    grid_value_pattern: str | None = Field(
        None, description="regex whose first group is the grid value (e.g. 'Ward (\\d+)')"
    )

    @field_validator("datetime_format")
    @classmethod
    def _round_trips(cls, v: str) -> str:
        return check_datetime_format(v)

    @field_validator("datetime_formats")
    @classmethod
    def _each_round_trips(cls, v: dict[str, str]) -> dict[str, str]:
        for fmt in v.values():
            check_datetime_format(fmt)
        return v

    @field_validator("grid_template")
    @classmethod
    def _one_placeholder(cls, v: str) -> str:
        fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
        if fields != [TEMPLATE_FIELD]:
            raise ValueError(f"grid_template must use exactly one {{{TEMPLATE_FIELD}}} placeholder")
        return v

    @field_validator("grid_value_pattern")
    @classmethod
    def _one_group(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            groups = re.compile(v).groups
        except re.error as exc:
            raise ValueError(f"grid_value_pattern {v!r} does not compile: {exc}") from None
        if groups != 1:
            raise ValueError(f"grid_value_pattern {v!r} must have exactly one group")
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
        if self.unknown_grid == "locate" and self.columns.lat is None:
            raise ValueError("unknown_grid: locate needs columns.lat and columns.lon")
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
        if self.grid_value_pattern is not None and value:
            found = re.fullmatch(self.grid_value_pattern, value)
            value = (found.group(1) or "").strip() if found else ""
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
