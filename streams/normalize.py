"""Turn validated wire messages into normalized rows, or say why they cannot be ingested.

Pure functions over the city model: grid resolution (code, point-in-polygon, sensor
registry, or the explicit UNLOCATED bucket), category checks, impossible times and values,
caller-id hashing. No I/O: the agent feeds messages in, the sink takes rows out.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from core.city import UNLOCATED_PATH, City, GridPath, Sensor, SensorKind
from core.events import (
    ID_MAX,
    MAX_READINGS,
    UNIT_MAX,
    CaseEvent,
    HotlineRequest,
    Location,
    Rejection,
    SensorEnvelope,
    SensorReading,
    SupervisorReport,
    decode,
)
from core.records import EVENT_COLUMNS
from core.types import CODE_MAX, CODE_PATTERN

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
    """HMAC-SHA256 of a caller id keyed by ``salt`` (first 32 hex digits; "" for none): lets
    repeat callers be counted within one key period, never re-identified without the key."""
    if not caller_id:
        return ""
    return hmac.new(salt, caller_id.encode(), hashlib.sha256).hexdigest()[:32]


def time_bounds(record_s: float, rules: Rules) -> tuple[float, float]:
    """The earliest and latest occurrence time a record reaching the broker at ``record_s``
    may claim."""
    return record_s - rules.max_age_s, record_s + rules.max_future_skew_s


def check_time(occurred_s: float, record_s: float, rules: Rules) -> None:
    earliest, latest = time_bounds(record_s, rules)
    if occurred_s > latest:
        raise Rejection(
            "impossible_time",
            f"occurred_at is {occurred_s - record_s:.0f}s after the record reached the broker "
            f"(limit {rules.max_future_skew_s}s)",
        )
    if occurred_s < earliest:
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
    occurred_s: float,
    event_id: str,
    src: Source,
    index: int,
    source: str,
    path: GridPath,
    located_by: str,
    category: str,
    subcategory: str,
    *,
    ref_id: str = "",
    sensor_id: str = "",
    value: float = NAN,
    unit: str = "",
    reporter_id: str = "",
    caller_hash: str = "",
    channel: str = "",
    lonlat: tuple[float, float] = (NAN, NAN),
    text: str = "",
) -> tuple[Any, ...]:
    return (
        occurred_s,
        src.record_s,
        source,
        event_id,
        ref_id,
        path.district,
        path.street,
        path.community,
        path.grid,
        located_by,
        category,
        subcategory,
        sensor_id,
        value,
        unit,
        reporter_id,
        caller_hash,
        channel,
        lonlat[0],
        lonlat[1],
        text,
        src.topic,
        src.partition,
        src.offset,
        index,
    )


def normalize_report(city: City, msg: SupervisorReport, src: Source, rules: Rules) -> tuple:
    occurred_s = msg.occurred_at.timestamp()
    check_time(occurred_s, src.record_s, rules)
    category = check_category(city, msg.category, "inspector")
    path, how = resolve_grid(city, msg.grid, msg.location, rules.defer_locate)
    return _event_row(
        occurred_s,
        msg.event_id,
        src,
        0,
        "inspector",
        path,
        how,
        category,
        msg.category,
        ref_id=msg.report_id,
        reporter_id=msg.reporter_id,
        lonlat=_loc(msg.location),
        text=msg.text,
    )


def normalize_hotline(city: City, msg: HotlineRequest, src: Source, rules: Rules) -> tuple:
    occurred_s = msg.occurred_at.timestamp()
    check_time(occurred_s, src.record_s, rules)
    category = check_category(city, msg.category, "hotline")
    path, how = resolve_grid(city, msg.grid, msg.location, rules.defer_locate)
    return _event_row(
        occurred_s,
        msg.event_id,
        src,
        0,
        "hotline",
        path,
        how,
        category,
        msg.category,
        ref_id=msg.request_id,
        caller_hash=hash_caller(msg.caller_id, rules.caller_salt),
        channel=msg.channel,
        lonlat=_loc(msg.location),
        text=msg.text,
    )


class SensorFacts(NamedTuple):
    """What a registered sensor's readings are checked against and stored with."""

    sensor: Sensor
    spec: SensorKind
    district: str
    street: str
    community: str
    grid: str
    subcategory: str


_sensor_tables: dict[int, tuple[City, dict[str, SensorFacts]]] = {}


def sensor_table(city: City) -> dict[str, SensorFacts]:
    """``city``'s sensors by id with their kind and grid path, built once per city (the
    entry holds the city, so its id cannot be reused meanwhile)."""
    hit = _sensor_tables.get(id(city))
    if hit is None or hit[0] is not city:
        if len(_sensor_tables) >= 16:
            _sensor_tables.clear()
        table = {}
        for s in city.sensor_index.values():
            spec, path = city.sensor_kind_index[s.kind], city.grid_paths[s.grid]
            table[s.id] = SensorFacts(
                s,
                spec,
                path.district,
                path.street,
                path.community,
                path.grid,
                f"sensor.{spec.code}",
            )
        hit = _sensor_tables[id(city)] = (city, table)
    return hit[1]


# a reading's plain values: event_id, occurred_s, sensor_id, kind, value, unit
PlainReading = tuple[str, float, str, str, float, str]


def reading_values(msg: SensorReading) -> PlainReading:
    """The plain values of a validated reading, for ``reading_rows``."""
    return msg.event_id, msg.occurred_at.timestamp(), msg.sensor_id, msg.kind, msg.value, msg.unit


def reading_rows(
    sensors: dict[str, SensorFacts], src: Source, rules: Rules, readings: list[PlainReading]
) -> tuple[list[tuple[Any, ...]], list[tuple[int, Rejection]]]:
    """The event rows of a message's readings (numbered from 0), and the rejected ones by
    number: the domain checks shared by the validated (pydantic) path and the plain-dict
    fast path. One call per message keeps the per-reading work to the checks themselves."""
    rows: list[tuple[Any, ...]] = []
    rejected: list[tuple[int, Rejection]] = []
    record_s, topic, partition, offset = src.record_s, src.topic, src.partition, src.offset
    earliest, latest = time_bounds(record_s, rules)
    for index, (event_id, occurred_s, sensor_id, kind, value, unit) in enumerate(readings):
        try:
            if not earliest <= occurred_s <= latest:
                check_time(occurred_s, record_s, rules)  # raises the precise rejection
            facts = sensors.get(sensor_id)
            if facts is None:
                raise Rejection("unknown_sensor", f"sensor {sensor_id!r} is not registered", index)
            sensor, spec, district, street, community, grid, subcategory = facts
            if sensor.kind != kind:
                raise Rejection(
                    "sensor_kind_mismatch",
                    f"sensor {sensor_id!r} is a {sensor.kind}, reading says {kind}",
                    index,
                )
            if unit != spec.unit:
                raise Rejection(
                    "unit_mismatch", f"{spec.code} is in {spec.unit!r}, not {unit!r}", index
                )
            if not spec.min <= value <= spec.max:
                raise Rejection(
                    "impossible_value",
                    f"{spec.code} value {value} outside [{spec.min}, {spec.max}] {spec.unit}",
                    index,
                )
        except Rejection as rej:
            rejected.append((index, rej))
            continue
        # the layout of ``_event_row``, spelled out: this runs once per reading
        rows.append(
            (
                occurred_s,
                record_s,
                "sensor",
                event_id,
                sensor_id,
                district,
                street,
                community,
                grid,
                "sensor",
                "sensor",
                subcategory,
                sensor_id,
                value,
                unit,
                "",
                "",
                "",
                sensor.lon,
                sensor.lat,
                "",
                topic,
                partition,
                offset,
                index,
            )
        )
    return rows, rejected


def normalize_case(city: City, msg: CaseEvent, src: Source, rules: Rules, index: int = 0) -> tuple:
    """A validated case-event row; ``index`` is its place in a ``CaseEnvelope``."""
    check_time(msg.occurred_at.timestamp(), src.record_s, rules)
    if msg.grid is not None and msg.grid not in city.grid_paths:
        raise Rejection("unknown_grid", f"grid code {msg.grid!r} is not in city {city.code}")
    if msg.category is not None and msg.category not in city.subcategories:
        raise Rejection("unknown_category", f"category {msg.category!r} is not in city {city.code}")
    deadline = msg.deadline.timestamp() if msg.deadline is not None else 0.0
    return (
        msg.occurred_at.timestamp(),
        src.record_s,
        msg.event_id,
        msg.case_id,
        msg.action,
        msg.grid or "",
        msg.category or "",
        msg.unit or "",
        msg.actor or "",
        deadline,
        msg.rating or "",
        msg.note,
        msg.source or "",
        int(msg.occurred_at.timestamp() * 1000),
        src.topic,
        src.partition,
        src.offset,
        index,
    )


def dead_row(src: Source, rej: Rejection, payload: bytes | None) -> tuple[Any, ...]:
    return (
        src.record_s,
        src.topic,
        src.partition,
        src.offset,
        -1 if rej.index is None else rej.index,
        rej.code,
        rej.reason,
        payload or b"",
    )


def normalize_message(
    city: City, stream: str, payload: bytes | None, src: Source, rules: Rules
) -> Normalized:
    """All rows one message yields. Never raises on bad input: rejections become
    dead-letter rows (a whole message, or single readings of an envelope).

    Sensor messages that are plainly valid skip pydantic (``plain_sensor``); everything
    else, and every sensor message the fast path is unsure of, is validated by pydantic."""
    if stream == "sensor" and payload:
        out = plain_sensor(city, payload, src, rules)
        if out is not None:
            return out
    return normalize_validated(city, stream, payload, src, rules)


def normalize_validated(
    city: City, stream: str, payload: bytes | None, src: Source, rules: Rules
) -> Normalized:
    """``normalize_message`` through the pydantic models: the reference for every input."""
    out = Normalized()
    try:
        msg = decode(stream, payload)
        if isinstance(msg, SensorEnvelope):
            readings = msg.readings
            rows, rejected = reading_rows(
                sensor_table(city), src, rules, [reading_values(r) for r in readings]
            )
            out.events.extend(rows)
            for i, rej in rejected:
                rej.index = i
                out.dead.append(dead_row(src, rej, readings[i].model_dump_json().encode()))
        elif isinstance(msg, SensorReading):
            rows, rejected = reading_rows(sensor_table(city), src, rules, [reading_values(msg)])
            if rejected:
                raise rejected[0][1]
            out.events.extend(rows)
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


# -- the plain-dict fast path for sensor messages ------------------------------------------
# A conservative structural check on the ``orjson`` document: whatever it accepts, the
# pydantic models accept too, with the same values. It may refuse more than pydantic does;
# such messages just take the validated path (and get its exact dead letters).

_READING = "sensor.reading"
_READING_KEYS = frozenset(SensorReading.model_fields)
_READING_VALUES = itemgetter("event_id", "occurred_at", "sensor_id", "kind", "value", "unit")
_ENVELOPE_KEYS = frozenset(SensorEnvelope.model_fields)
# fullmatch: pydantic's (Rust) ``$`` ends the text, Python's ``$`` also matches before a "\n"
_CODE = re.compile(CODE_PATTERN)
# A time is read only in this strict ISO-8601 form, which pydantic and
# ``datetime.fromisoformat`` both accept and read alike: date and time to the second with
# every field in range (19 characters), then a tail of an optional 1-6 digit fraction and
# an explicit offset ("Z" or +-HH:MM).
_TIME_HEAD = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]")
_TIME_TAIL = re.compile(r"(?:\.([0-9]{1,6}))?(Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_CACHE_MAX = 65_536
_tails: dict[str, tuple[int, str]] = {}  # tail -> (fraction in microseconds, offset)
_seconds: dict[str, int] = {}  # head + offset -> microseconds since the epoch
_codes_ok: set[str] = set()


def _bounded_put(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def plain_epoch_s(text: object) -> float | None:
    """``AwareDatetime(text).timestamp()`` for a strict ISO-8601 time with an offset; None
    for anything else. ``datetime.fromisoformat`` reads each distinct second (+ offset) once,
    the fraction is added in integer microseconds and divided as ``timestamp`` does, so the
    result is bit-identical; both parts are cached, as a gateway's times share them."""
    if type(text) is not str:
        return None
    head, tail = text[:19], text[19:]
    parts = _tails.get(tail)
    if parts is None:
        m = _TIME_TAIL.fullmatch(tail)
        if m is None:
            return None
        fraction, offset = m.groups()
        parts = (int(fraction.ljust(6, "0")) if fraction else 0, offset)
        _bounded_put(_tails, tail, parts)
    micros, offset = parts
    key = head + offset
    base = _seconds.get(key)
    if base is None:
        if _TIME_HEAD.fullmatch(head) is None:
            return None
        try:
            dt = datetime.fromisoformat(key)
        except ValueError:  # e.g. no such day
            return None
        if dt.tzinfo is None:
            return None
        base = (dt - _EPOCH) // _US
        _bounded_put(_seconds, key, base)
    return (base + micros) / 1_000_000


def _new_code(x: str) -> bool:
    """Whether ``x`` is a valid ``Code`` (remembered when it is)."""
    if 0 < len(x) <= CODE_MAX and _CODE.fullmatch(x) is not None:
        if len(_codes_ok) < _CACHE_MAX:
            _codes_ok.add(x)
        return True
    return False


def _plain_id(x: object) -> bool:
    return type(x) is str and 0 < len(x) <= ID_MAX


def plain_readings(docs: list[Any]) -> list[PlainReading] | None:
    """The plain values of reading documents that ``SensorReading`` certainly accepts with
    these values; None if any one is in doubt. One loop with local names: per reading."""
    out: list[PlainReading] = []
    keys, values, codes, epoch_s, isfinite = (
        _READING_KEYS,
        _READING_VALUES,
        _codes_ok,
        plain_epoch_s,
        math.isfinite,
    )
    for doc in docs:
        if type(doc) is not dict or not keys.issuperset(doc):
            return None
        try:
            event_id, occurred_at, sensor_id, kind, value, unit = values(doc)
        except KeyError:
            return None
        if len(doc) > 6:  # "v" or "type" given
            v = doc.get("v", 1)
            if type(v) is not int or v != 1 or doc.get("type", _READING) != _READING:
                return None
        if type(event_id) is not str or type(sensor_id) is not str or type(unit) is not str:
            return None
        if not (0 < len(event_id) <= ID_MAX and 0 < len(sensor_id) <= ID_MAX):
            return None
        if len(unit) > UNIT_MAX or type(kind) is not str:
            return None
        if kind not in codes and not _new_code(kind):
            return None
        if type(value) is int:  # never bool: ``type`` is exact
            value = float(value)
        elif type(value) is not float or not isfinite(value):
            return None
        occurred_s = epoch_s(occurred_at)
        if occurred_s is None:
            return None
        out.append((event_id, occurred_s, sensor_id, kind, value, unit))
    return out


def plain_sensor(city: City, payload: bytes, src: Source, rules: Rules) -> Normalized | None:
    """The rows of a sensor reading or envelope that is plainly valid, parsed by ``orjson``
    and built without pydantic; None when the validated path must decide."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict:
        return None
    kind = doc.get("type")
    if kind == _READING:
        plain = plain_readings([doc])
        if plain is None:
            return None
        out = Normalized()
        rows, rejected = reading_rows(sensor_table(city), src, rules, plain)
        out.events.extend(rows)
        for _, rej in rejected:
            rej.index = None
            out.dead.append(dead_row(src, rej, payload))
        return out
    if kind != "sensor.envelope" or not _ENVELOPE_KEYS.issuperset(doc):
        return None
    v, readings = doc.get("v", 1), doc.get("readings")
    if type(v) is not int or v != 1 or not _plain_id(doc.get("gateway_id")):
        return None
    if plain_epoch_s(doc.get("sent_at")) is None:
        return None
    if type(readings) is not list or not 0 < len(readings) <= MAX_READINGS:
        return None
    plain = plain_readings(readings)
    if plain is None:
        return None
    out = Normalized()
    out.events, rejected = reading_rows(sensor_table(city), src, rules, plain)
    for i, rej in rejected:
        rej.index = i
        # the validated path's payload: the reading as its model writes it
        model = SensorReading.model_validate(readings[i])
        out.dead.append(dead_row(src, rej, model.model_dump_json().encode()))
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
