"""Turn validated wire messages into normalized rows, or say why they cannot be ingested.

Pure functions over the city model: grid resolution (code, point-in-polygon, sensor
registry, or the explicit UNLOCATED bucket), category checks, impossible times and values,
caller-id hashing. No I/O: the agent feeds messages in, the sink takes rows out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from gridpulse.city import UNLOCATED_PATH, City, GridPath
from streams.events import (
    CaseEvent,
    HotlineRequest,
    Location,
    Rejection,
    SensorEnvelope,
    SensorReading,
    SupervisorReport,
    decode,
)

EVENT_COLUMNS = (
    "event_time", "record_time", "source", "event_id", "ref_id",
    "district", "street", "community", "grid_code", "located_by",
    "category", "subcategory", "sensor_id", "value", "unit",
    "reporter_id", "caller_hash", "channel", "lon", "lat", "text",
    "src_topic", "src_partition", "src_offset", "src_index",
)  # fmt: skip

CASE_COLUMNS = (
    "event_time", "record_time", "event_id", "case_id", "action", "grid_code", "category",
    "unit", "actor", "deadline", "rating", "note", "source", "event_ms",
    "src_topic", "src_partition", "src_offset", "src_index",
)  # fmt: skip

DEAD_LETTER_COLUMNS = (
    "record_time", "src_topic", "src_partition", "src_offset", "src_index",
    "reason_code", "reason", "payload",
)  # fmt: skip

NAN = float("nan")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from: its topic-partition-offset and record time."""

    topic: str
    partition: int
    offset: int
    record_s: float


@dataclass(slots=True)
class Normalized:
    """Rows produced from one message (an envelope gives many)."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    cases: list[tuple[Any, ...]] = field(default_factory=list)
    dead: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rules:
    """The validation limits, taken from the settings object."""

    max_future_skew_s: int
    max_age_s: int
    caller_salt: bytes
    # leave point-in-polygon to the caller, who resolves a whole batch at once
    # (``locate_pending``); rows then carry grid PENDING until it does
    defer_locate: bool = False


PENDING = GridPath(district="", street="", community="", grid="~pending")

def hash_caller(caller_id: str | None, salt: bytes) -> str:
    """Salted SHA-256 of a caller id: lets repeat callers be counted, never re-identified."""
    if not caller_id:
        return ""
    return hashlib.sha256(salt + caller_id.encode()).hexdigest()[:32]


def check_time(occurred_s: float, record_s: float, rules: Rules) -> None:
    if occurred_s > record_s + rules.max_future_skew_s:
        raise Rejection(
            "impossible_time",
            f"occurred_at is {occurred_s - record_s:.0f}s after the record reached the broker "
            f"(limit {rules.max_future_skew_s}s)",
        )
    if occurred_s < record_s - rules.max_age_s:
        raise Rejection(
            "too_old",
            f"occurred_at is {(record_s - occurred_s) / 86400:.1f} days before the record "
            f"(limit {rules.max_age_s / 86400:.0f} days)",
        )


def resolve_grid(
    city: City, code: str | None, loc: Location | None, defer: bool = False
) -> tuple[GridPath, str]:
    """A grid code wins; else the polygon holding the point; else UNLOCATED. Unknown codes
    are an error (the reporter's device is misconfigured), points outside are not."""
    if code is not None:
        path = city.grid_paths.get(code)
        if path is None:
            raise Rejection("unknown_grid", f"grid code {code!r} is not in city {city.code}")
        return path, "code"
    if loc is not None:
        if defer:
            return PENDING, "point"
        found = city.locator.locate(loc.lon, loc.lat)
        if found is not None:
            return city.grid_paths[found], "point"
        return UNLOCATED_PATH, "outside"
    return UNLOCATED_PATH, "none"


def check_category(city: City, code: str, stream: str) -> str:
    """The top-level category of subcategory ``code``, if ``stream`` may report it."""
    entry = city.subcategories.get(code)
    if entry is None:
        raise Rejection("unknown_category", f"category {code!r} is not in city {city.code}")
    cat, sub = entry
    if stream not in sub.streams:
        raise Rejection(
            "category_not_for_stream", f"category {code!r} is not reported by the {stream} stream"
        )
    return cat.code


def _loc(loc: Location | None) -> tuple[float, float]:
    return (loc.lon, loc.lat) if loc is not None else (NAN, NAN)


def _event_row(
    msg: Any, src: Source, index: int, source: str, path: GridPath, located_by: str,
    category: str, subcategory: str, *, ref_id: str = "", sensor_id: str = "",
    value: float = NAN, unit: str = "", reporter_id: str = "", caller_hash: str = "",
    channel: str = "", lonlat: tuple[float, float] = (NAN, NAN), text: str = "",
) -> tuple[Any, ...]:  # fmt: skip
    return (
        msg.occurred_at.timestamp(), src.record_s, source, msg.event_id, ref_id,
        path.district, path.street, path.community, path.grid, located_by,
        category, subcategory, sensor_id, value, unit,
        reporter_id, caller_hash, channel, lonlat[0], lonlat[1], text,
        src.topic, src.partition, src.offset, index,
    )  # fmt: skip


def normalize_report(city: City, msg: SupervisorReport, src: Source, rules: Rules) -> tuple:
    check_time(msg.occurred_at.timestamp(), src.record_s, rules)
    category = check_category(city, msg.category, "inspector")
    path, how = resolve_grid(city, msg.grid, msg.location, rules.defer_locate)
    return _event_row(
        msg, src, 0, "inspector", path, how, category, msg.category,
        ref_id=msg.report_id, reporter_id=msg.reporter_id, lonlat=_loc(msg.location),
        text=msg.text,
    )  # fmt: skip


def normalize_hotline(city: City, msg: HotlineRequest, src: Source, rules: Rules) -> tuple:
    check_time(msg.occurred_at.timestamp(), src.record_s, rules)
    category = check_category(city, msg.category, "hotline")
    path, how = resolve_grid(city, msg.grid, msg.location, rules.defer_locate)
    return _event_row(
        msg, src, 0, "hotline", path, how, category, msg.category,
        ref_id=msg.request_id, caller_hash=hash_caller(msg.caller_id, rules.caller_salt),
        channel=msg.channel, lonlat=_loc(msg.location), text=msg.text,
    )  # fmt: skip


def normalize_reading(
    city: City, msg: SensorReading, src: Source, rules: Rules, index: int
) -> tuple:
    check_time(msg.occurred_at.timestamp(), src.record_s, rules)
    sensor = city.sensor_index.get(msg.sensor_id)
    if sensor is None:
        raise Rejection("unknown_sensor", f"sensor {msg.sensor_id!r} is not registered", index)
    if sensor.kind != msg.kind:
        raise Rejection(
            "sensor_kind_mismatch",
            f"sensor {msg.sensor_id!r} is a {sensor.kind}, reading says {msg.kind}", index,
        )  # fmt: skip
    kind = city.sensor_kind_index[sensor.kind]
    if msg.unit != kind.unit:
        raise Rejection(
            "unit_mismatch", f"{kind.code} is in {kind.unit!r}, not {msg.unit!r}", index
        )
    if not kind.min <= msg.value <= kind.max:
        raise Rejection(
            "impossible_value",
            f"{kind.code} value {msg.value} outside [{kind.min}, {kind.max}] {kind.unit}", index,
        )  # fmt: skip
    path = city.grid_paths[sensor.grid]
    return _event_row(
        msg, src, index, "sensor", path, "sensor", "sensor", f"sensor.{kind.code}",
        ref_id=msg.sensor_id, sensor_id=msg.sensor_id, value=msg.value, unit=msg.unit,
        lonlat=(sensor.lon, sensor.lat),
    )  # fmt: skip


def normalize_case(city: City, msg: CaseEvent, src: Source, rules: Rules) -> tuple:
    check_time(msg.occurred_at.timestamp(), src.record_s, rules)
    if msg.grid is not None and msg.grid not in city.grid_paths:
        raise Rejection("unknown_grid", f"grid code {msg.grid!r} is not in city {city.code}")
    if msg.category is not None and msg.category not in city.subcategories:
        raise Rejection("unknown_category", f"category {msg.category!r} is not in city {city.code}")
    deadline = msg.deadline.timestamp() if msg.deadline is not None else 0.0
    return (
        msg.occurred_at.timestamp(), src.record_s, msg.event_id, msg.case_id, msg.action,
        msg.grid or "", msg.category or "", msg.unit or "", msg.actor or "", deadline,
        msg.rating or "", msg.note, msg.source or "", int(msg.occurred_at.timestamp() * 1000),
        src.topic, src.partition, src.offset, 0,
    )  # fmt: skip


def dead_row(src: Source, rej: Rejection, payload: bytes | None) -> tuple[Any, ...]:
    return (
        src.record_s, src.topic, src.partition, src.offset,
        -1 if rej.index is None else rej.index, rej.code, rej.reason, payload or b"",
    )  # fmt: skip


def normalize_message(
    city: City, stream: str, payload: bytes | None, src: Source, rules: Rules
) -> Normalized:
    """All rows one message yields. Never raises on bad input: rejections become
    dead-letter rows (a whole message, or single readings of an envelope)."""
    out = Normalized()
    try:
        msg = decode(stream, payload)
        if isinstance(msg, SensorEnvelope):
            for i, reading in enumerate(msg.readings):
                try:
                    out.events.append(normalize_reading(city, reading, src, rules, i))
                except Rejection as rej:
                    rej.index = i
                    out.dead.append(dead_row(src, rej, reading.model_dump_json().encode()))
        elif isinstance(msg, SensorReading):
            out.events.append(normalize_reading(city, msg, src, rules, 0))
        elif isinstance(msg, SupervisorReport):
            out.events.append(normalize_report(city, msg, src, rules))
        elif isinstance(msg, HotlineRequest):
            out.events.append(normalize_hotline(city, msg, src, rules))
        elif isinstance(msg, CaseEvent):
            out.cases.append(normalize_case(city, msg, src, rules))
    except Rejection as rej:
        rej.index = None
        out.dead.append(dead_row(src, rej, payload))
    return out


_GRID = EVENT_COLUMNS.index("grid_code")
_LON, _LAT = EVENT_COLUMNS.index("lon"), EVENT_COLUMNS.index("lat")
_PATH = slice(EVENT_COLUMNS.index("district"), _GRID + 2)  # district .. located_by


def locate_pending(city: City, rows: list[tuple[Any, ...]]) -> None:
    """Resolve the PENDING grids of ``rows`` in place with one vectorised polygon query."""
    todo = [i for i, r in enumerate(rows) if r[_GRID] == PENDING.grid]
    if not todo:
        return
    found = city.locator.locate_many([rows[i][_LON] for i in todo], [rows[i][_LAT] for i in todo])
    for i, code in zip(todo, found, strict=True):
        path, how = (city.grid_paths[code], "point") if code else (UNLOCATED_PATH, "outside")
        row = list(rows[i])
        row[_PATH] = (path.district, path.street, path.community, path.grid, how)
        rows[i] = tuple(row)
