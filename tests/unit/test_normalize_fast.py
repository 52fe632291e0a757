"""The plain-dict fast path for sensor messages gives exactly what the pydantic path gives:
the same rows, the same dead letters; and whatever it is unsure of, it leaves to pydantic."""

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from core.city import load_city
from core.events import SensorReading
from core.records import EVENT_COLUMNS
from core.settings import REPO_ROOT
from streams.normalize import (
    Rules,
    Source,
    _event_row,
    normalize_message,
    normalize_validated,
    plain_epoch_s,
    plain_sensor,
    reading_rows,
    sensor_table,
)
from streams.pipeline import events_frame

CITY = load_city(REPO_ROOT / "tests" / "fixtures" / "tiny_city.yaml")
RULES = Rules(max_future_skew_s=300, max_age_s=30 * 86400, caller_salt=b"salt")
NOW = datetime(2025, 5, 6, 9, 30, tzinfo=UTC)
SRC = Source("t", 0, 42, NOW.timestamp())
AWARE: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


def reading(i: int = 0, **kw: object) -> dict:
    base = {
        "v": 1,
        "type": "sensor.reading",
        "event_id": f"s{i}",
        "occurred_at": "2025-05-06T17:29:58.125+08:00",
        "sensor_id": "S-wl-1",
        "kind": "water_level",
        "value": 1.5,
        "unit": "m",
    }
    return {**base, **kw}


def envelope(readings: list, **kw: object) -> dict:
    return {
        "v": 1,
        "type": "sensor.envelope",
        "gateway_id": "gw-1",
        "sent_at": "2025-05-06T09:29:59Z",
        "readings": readings,
        **kw,
    }


def wire(doc: object) -> bytes:
    # HUGE stands for a number literal JSON has but Python's json module does not write
    return json.dumps(doc, ensure_ascii=False).replace('"HUGE"', "1e999").encode()


def fast(payload: bytes):
    return plain_sensor(CITY, payload, SRC, RULES)


def same(payload: bytes, stream: str = "sensor"):
    """``normalize_message`` equals the pydantic reference; returns the result."""
    got = normalize_message(CITY, stream, payload, SRC, RULES)
    ref = normalize_validated(CITY, stream, payload, SRC, RULES)
    assert (got.events, got.cases, got.dead) == (ref.events, ref.cases, ref.dead)
    return got


def test_valid_envelope_takes_the_fast_path_with_the_same_rows():
    noise = reading(1, sensor_id="S-noise-1", kind="noise", value=55, unit="dB")
    payload = wire(envelope([reading(0), noise, reading(2)]))
    assert fast(payload) is not None
    out = same(payload)
    assert [r[EVENT_COLUMNS.index("src_index")] for r in out.events] == [0, 1, 2]
    assert out.dead == []
    assert isinstance(out.events[1][EVENT_COLUMNS.index("value")], float)


@pytest.mark.parametrize(
    "bad,code",
    [
        (dict(sensor_id="S-missing"), "unknown_sensor"),
        (dict(kind="noise"), "sensor_kind_mismatch"),
        (dict(unit="cm"), "unit_mismatch"),
        (dict(value=99.0), "impossible_value"),
        (dict(value=-1), "impossible_value"),
        (dict(occurred_at="2025-03-01T00:00:00Z"), "too_old"),
        (dict(occurred_at="2025-05-06T10:30:00.5Z"), "impossible_time"),
    ],
)
def test_a_rejected_reading_gets_the_same_dead_letter(bad, code):
    readings = [reading(0), reading(1, **bad), reading(2)]
    payload = wire(envelope(readings))
    assert fast(payload) is not None
    out = same(payload)
    [dead] = out.dead
    assert (dead[4], dead[5]) == (1, code)
    assert dead[7] == SensorReading(**readings[1]).model_dump_json().encode()
    assert len(out.events) == 2


@pytest.mark.parametrize(
    "bad,code",
    [
        ({}, None),
        (dict(sensor_id="S-missing"), "unknown_sensor"),
        (dict(value=1e6), "impossible_value"),
        (dict(occurred_at="2024-01-01T00:00:00+01:00"), "too_old"),
    ],
)
def test_single_readings_take_the_fast_path(bad, code):
    payload = wire(reading(0, **bad))
    assert fast(payload) is not None
    out = same(payload)
    assert [d[5] for d in out.dead] == ([code] if code else [])
    if code:
        assert out.dead[0][4] == -1 and out.dead[0][7] == payload


ODD_READINGS = [
    dict(extra=1),
    dict(value=True),
    dict(value=False),
    dict(value="HUGE"),  # 1e999: infinite as a double
    dict(value="1.5"),  # pydantic's lax mode takes numeric strings
    dict(value=None),
    dict(event_id=7),
    dict(event_id=""),
    dict(event_id="e" * 129),
    dict(sensor_id=["S-wl-1"]),
    dict(unit="m" * 33),
    dict(unit=None),
    dict(kind="water_level\n"),  # Python's "$" would match before the newline
    dict(kind="water level"),
    dict(kind="k" * 65),
    dict(kind=""),
    dict(v=2),
    dict(v=True),
    dict(v=1.0),
    dict(type="sensor.envelope"),
    dict(occurred_at="2025-05-06T09:29:58"),  # naive
    dict(occurred_at="2025-05-06 09:29:58Z"),
    dict(occurred_at="2025-05-06t09:29:58z"),
    dict(occurred_at="2025-05-06T09:29:58+0800"),
    dict(occurred_at="2025-05-06T09:29:58.1234567Z"),
    dict(occurred_at="2025-05-06T24:00:00Z"),
    dict(occurred_at="2025-02-30T09:29:58Z"),
    dict(occurred_at="2025-05-06T09:29:60Z"),
    dict(occurred_at="2025-05-06T09:29:58+24:00"),
    dict(occurred_at="２０２５-05-06T09:29:58Z"),
    dict(occurred_at="2025-05-06"),
    dict(occurred_at="May 6 2025 09:29"),
    dict(occurred_at=1746523798),
    dict(occurred_at="2025-05-06T09:29:58Z\n"),
]


@pytest.mark.parametrize("odd", ODD_READINGS, ids=repr)
def test_odd_readings_fall_back_to_pydantic(odd):
    payload = wire(envelope([reading(0), reading(1, **odd)]))
    assert fast(payload) is None
    same(payload)
    single = wire(reading(0, **odd))
    assert fast(single) is None
    same(single)


@pytest.mark.parametrize(
    "missing", ["event_id", "occurred_at", "sensor_id", "kind", "value", "unit"]
)
def test_a_missing_field_falls_back(missing):
    r = reading(1)
    del r[missing]
    payload = wire(envelope([reading(0), r]))
    assert fast(payload) is None
    assert same(payload).dead[0][5] == "schema"


@pytest.mark.parametrize(
    "doc",
    [
        envelope([]),
        envelope([reading()], extra=1),
        envelope([reading()], v=2),
        envelope([reading()], gateway_id=""),
        envelope([reading()], sent_at="2025-05-06T09:29:59"),
        envelope({"0": reading()}),  # type: ignore[arg-type]
        envelope([reading(), ["not", "a", "reading"]]),
        {k: v for k, v in envelope([reading()]).items() if k != "type"},
        {k: v for k, v in reading().items() if k != "type"},  # the tag is required at the top
        [envelope([reading()])],
        "sensor.envelope",
    ],
)
def test_odd_envelopes_fall_back_to_pydantic(doc):
    payload = wire(doc)
    assert fast(payload) is None
    same(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{",
        b"null",
        b'{"type": "sensor.envelope"} x',
        b"\xef\xbb\xbf{}",
        wire(envelope([reading()]))[:-1] + b",}",
        # duplicate keys: both parsers keep the last
        wire(envelope([reading()]))[:-1] + b', "gateway_id": ""}',
        wire(reading())[:-1] + b', "value": 2.5}',
        wire(reading(event_id="caf\u00e9 \U0001f600")),
        json.dumps(reading(event_id="\ud800")).encode(),  # a lone surrogate
        wire(reading()).replace(b'"s0"', b'"s\x01"'),  # a raw control character
    ],
)
def test_odd_json_gives_the_pydantic_result(payload):
    same(payload)


def test_other_streams_are_untouched():
    payload = wire(envelope([reading()]))
    out = same(payload, "inspector")
    assert out.dead[0][5] == "wrong_topic"


def test_reading_rows_have_the_generic_event_row_layout():
    facts = sensor_table(CITY)["S-noise-1"]
    plain = ("e1", NOW.timestamp() - 1, "S-noise-1", "noise", 60.0, "dB")
    [row], [] = reading_rows(sensor_table(CITY), SRC, RULES, [plain])
    path = CITY.grid_paths[facts.grid]
    assert row == _event_row(
        NOW.timestamp() - 1,
        "e1",
        SRC,
        0,
        "sensor",
        path,
        "sensor",
        "sensor",
        "sensor.noise",
        ref_id="S-noise-1",
        sensor_id="S-noise-1",
        value=60.0,
        unit="dB",
        lonlat=(facts.sensor.lon, facts.sensor.lat),
    )


# ---------------------------------------------------------------- generated inputs

OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
NEAR = st.datetimes(
    min_value=datetime(2025, 5, 4), max_value=datetime(2025, 5, 7), timezones=st.just(UTC) | OFFSETS
)
ANY_TIME = st.datetimes(timezones=st.just(UTC) | OFFSETS)


@st.composite
def time_texts(draw: st.DrawFn, times: st.SearchStrategy[datetime] = NEAR) -> str:
    """ISO-8601 texts as gateways write them, and near misses."""
    d = draw(times)
    text = d.isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds", "auto"])))
    if d.utcoffset() == timedelta(0) and draw(st.booleans()):
        text = text[:-6] + "Z"
    if "." in text and draw(st.booleans()):  # shorter fractions: ".5"
        head, rest = text.split(".", 1)
        digits = rest[:-1] if rest.endswith("Z") else rest[:-6]
        cut = draw(st.integers(1, len(digits)))
        text = f"{head}.{digits[:cut]}{rest[len(digits) :]}"
    mutate = draw(st.sampled_from([None] * 6 + ["space", "naive", "compact", "lower", "junk"]))
    if mutate == "space":
        text = text.replace("T", " ")
    elif mutate == "naive":
        text = d.replace(tzinfo=None).isoformat()
    elif mutate == "compact" and text[-3] == ":":
        text = text[:-3] + text[-2:]
    elif mutate == "lower":
        text = text.lower()
    elif mutate == "junk":
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["0", "9", ":", "-", ".", "+", " ", "Z"])) + text[i:]
    return text


def pydantic_seconds(text: object) -> float | None:
    try:
        return AWARE.validate_python(text).timestamp()
    except ValidationError:
        return None


@settings(max_examples=2000)
@given(st.one_of(time_texts(NEAR), time_texts(ANY_TIME), st.text(max_size=40)))
def test_plain_times_are_read_exactly_as_pydantic_reads_them(text):
    seconds = plain_epoch_s(text)
    if seconds is not None:
        assert seconds == pydantic_seconds(text)
        assert AWARE.validate_json(json.dumps(text)).timestamp() == seconds


@settings(max_examples=300)
@given(NEAR)
def test_usual_times_are_read_plainly(d):
    assert plain_epoch_s(d.isoformat()) == d.timestamp()
    assert plain_epoch_s(d.isoformat(timespec="milliseconds")) == pydantic_seconds(
        d.isoformat(timespec="milliseconds")
    )


VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-1, 12),
    st.floats(0, 150),
    st.integers(-(2**70), 2**70),
    st.integers(-5, 150),
    st.booleans(),
    st.none(),
    st.sampled_from(["1.5", "HUGE", [1.0]]),
)
READINGS = st.fixed_dictionaries(
    {
        "event_id": st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(["", 1, "e" * 129])),
        "occurred_at": st.one_of(time_texts(), st.sampled_from([None, 0, "x"])),
        "sensor_id": st.sampled_from(["S-wl-1", "S-wl-1", "S-noise-1", "S-missing", "", 5]),
        "kind": st.sampled_from(
            ["water_level", "water_level", "noise", "water-level", "a\n", "", "k" * 65, None]
        ),
        "value": VALUES,
        "unit": st.sampled_from(["m", "m", "dB", "cm", "", "u" * 33, 3]),
    },
    optional={
        "v": st.sampled_from([1, 1, 2, True, 1.0]),
        "type": st.sampled_from(["sensor.reading", "sensor.reading", "sensor.envelope"]),
        "extra": st.just(1),
    },
)
GOOD_TIMES = st.builds(
    lambda d, spec: d.isoformat(timespec=spec),
    NEAR,
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
)
PLAIN_READINGS = st.fixed_dictionaries(
    {
        "event_id": st.text(min_size=1, max_size=8),
        "occurred_at": GOOD_TIMES,
        "sensor_id": st.sampled_from(["S-wl-1", "S-noise-1", "S-missing"]),
        "kind": st.sampled_from(["water_level", "noise"]),
        "value": st.one_of(st.floats(-1, 150), st.integers(-5, 150)),
        "unit": st.sampled_from(["m", "dB"]),
    },
    optional={"v": st.just(1), "type": st.just("sensor.reading")},
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(READINGS, PLAIN_READINGS), max_size=6),
    st.sampled_from(["2025-05-06T09:29:59Z", "2025-05-06T09:29:59", "gw"]),
    st.booleans(),
)
def test_generated_messages_give_the_pydantic_result(readings, sent_at, single):
    doc = readings[0] if single and readings else envelope(readings, sent_at=sent_at)
    same(wire(doc))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PLAIN_READINGS, min_size=1, max_size=6))
def test_plain_envelopes_take_the_fast_path(readings):
    payload = wire(envelope(readings))
    assert fast(payload) is not None
    same(payload)


# ---------------------------------------------------------------- the events frame


def test_events_frame_holds_the_rows_values():
    rows = []
    for stream, payload in [
        ("sensor", wire(envelope([reading(i) for i in range(3)]))),
        ("sensor", wire(reading(9, sensor_id="S-noise-1", kind="noise", value=60, unit="dB"))),
    ]:
        rows += normalize_message(CITY, stream, payload, SRC, RULES).events
    frame = events_frame(rows)
    ref = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    assert list(frame.columns) == list(EVENT_COLUMNS)
    for col in EVENT_COLUMNS:
        got, want = frame[col].tolist(), ref[col].tolist()
        assert [type(x) for x in got] == [type(x) for x in want]
        assert all(
            a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(got, want, strict=True)
        )
    numbers = {"event_time", "record_time", "value", "lon", "lat"}
    assert all(frame[c].dtype == "float64" for c in numbers)
    assert all(frame[c].dtype == "int64" for c in ("src_partition", "src_offset", "src_index"))


def test_empty_events_frame_has_the_columns():
    assert list(events_frame([]).columns) == list(EVENT_COLUMNS)
    assert len(events_frame([])) == 0


def test_events_frame_refuses_rows_of_the_wrong_width():
    row = normalize_message(CITY, "sensor", wire(reading()), SRC, RULES).events[0]
    with pytest.raises(ValueError):
        events_frame([row, row[:-1]])
