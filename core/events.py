"""Wire models of the ingest streams (pydantic v2, versioned by ``v``).

These are the contract on the topics: producers (the simulator, replay importers, real
gateways) emit them as JSON; the worker validates every message against them. A message on
the sensor topic may be a single ``SensorReading`` or a gateway ``SensorEnvelope`` holding
many readings.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from core.types import CODE_MAX, CODE_PATTERN, CaseAction

SCHEMA_VERSION = 1

# limits shared with the plain-dict fast path of ``streams.normalize`` (one source of truth)
ID_MAX, UNIT_MAX, MAX_READINGS = 128, 32, 100_000

Code = Annotated[str, Field(min_length=1, max_length=CODE_MAX, pattern=CODE_PATTERN)]
Id = Annotated[str, Field(min_length=1, max_length=ID_MAX)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = 1


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)


class SupervisorReport(_Wire):
    """A grid inspector's patrol finding (监督员上报)."""

    type: Literal["inspector.report"] = "inspector.report"
    event_id: Id
    occurred_at: AwareDatetime
    report_id: Id
    grid: Code | None = None
    category: Code
    location: Location | None = None
    reporter_id: Id
    text: str = Field(default="", max_length=4000)


class SensorReading(_Wire):
    """One IoT measurement; the sensor registry in the city config says its grid."""

    type: Literal["sensor.reading"] = "sensor.reading"
    event_id: Id
    occurred_at: AwareDatetime
    sensor_id: Id
    kind: Code
    value: float
    unit: str = Field(max_length=UNIT_MAX)

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("value must be a finite number")
        return v


class SensorEnvelope(_Wire):
    """Many readings from one gateway in one message (the high-rate path)."""

    type: Literal["sensor.envelope"] = "sensor.envelope"
    gateway_id: Id
    sent_at: AwareDatetime
    readings: list[SensorReading] = Field(min_length=1, max_length=MAX_READINGS)


Channel = Literal["phone", "app", "web", "wechat", "sms", "email", "walk_in", "other"]


class HotlineRequest(_Wire):
    """A citizen request to the 12345-style hotline. ``caller_id`` is hashed, never stored."""

    type: Literal["hotline.request"] = "hotline.request"
    event_id: Id
    occurred_at: AwareDatetime
    request_id: Id
    channel: Channel
    category: Code
    location: Location | None = None
    address: str | None = Field(default=None, max_length=500)
    grid: Code | None = None
    caller_id: str | None = Field(default=None, max_length=128)
    text: str = Field(default="", max_length=4000)


class CaseEvent(_Wire):
    """A transition in a case's lifecycle (accept -> register -> dispatch -> ... -> close)."""

    type: Literal["case.event"] = "case.event"
    event_id: Id
    occurred_at: AwareDatetime
    case_id: Id
    action: CaseAction
    grid: Code | None = None
    category: Code | None = None
    unit: str | None = Field(default=None, max_length=128)
    actor: str | None = Field(default=None, max_length=128)
    deadline: AwareDatetime | None = None
    rating: Literal["satisfied", "basically_satisfied", "dissatisfied"] | None = None
    # the stream that opened the case (set on ``accept``; follow-ups are for hotline cases)
    source: Literal["inspector", "hotline", "sensor", "other"] | None = None
    note: str = Field(default="", max_length=4000)


class CaseEnvelope(_Wire):
    """Many case events for one case-topic partition in one message. Workers send the
    ``accept`` events they derive from a checkpoint's reports and requests this way (one
    message per partition instead of one per case), so opening a case costs the case agent
    no per-message consumer work; each event keeps its own id, time and case."""

    type: Literal["case.envelope"] = "case.envelope"
    events: list[CaseEvent] = Field(min_length=1, max_length=MAX_READINGS)


class SlaAlert(BaseModel):
    """A warning, breach or escalation of a case stage's deadline, as published on the SLA
    topic (``<prefix>.sla.events``, key = case id) and stored in ``sla_events``.
    ``alert_id`` is deterministic: redelivered or re-fired alerts carry the same id."""

    alert_id: str
    kind: str
    level: int
    fraction: float
    case_id: str
    stage: str
    stage_seq: int
    due_at: datetime
    fired_at: datetime
    deadline: datetime
    stage_started_at: datetime
    grid: str
    category: str
    unit: str
    urgent: bool
    source: str


IngestMessage = Annotated[
    SupervisorReport | SensorReading | SensorEnvelope | HotlineRequest | CaseEvent | CaseEnvelope,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(IngestMessage)

# which message types each stream's topic accepts
STREAM_TYPES: dict[str, frozenset[str]] = {
    "inspector": frozenset({"inspector.report"}),
    "sensor": frozenset({"sensor.reading", "sensor.envelope"}),
    "hotline": frozenset({"hotline.request"}),
    "case": frozenset({"case.event", "case.envelope"}),
}


class Rejection(Exception):
    """Why a message cannot be ingested: a stable ``code`` plus a readable ``reason``."""

    def __init__(self, code: str, reason: str, index: int | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.index = index


def decode(stream: str, payload: bytes | None) -> Any:
    """Parse and validate one message of ``stream``; raise ``Rejection`` on bad input."""
    if payload is None or len(payload) == 0:
        raise Rejection("empty", "message has no value")
    try:
        msg = _ADAPTER.validate_json(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        kind = first["type"]
        code = "bad_json" if kind in ("json_invalid", "json_type") else "schema"
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise Rejection(code, f"{loc}: {first['msg']}{more}") from None
    allowed = STREAM_TYPES[stream]
    if msg.type not in allowed:
        raise Rejection(
            "wrong_topic", f"message type {msg.type!r} does not belong on the {stream} stream"
        )
    return msg


def encode(msg: BaseModel) -> bytes:
    return msg.model_dump_json(exclude_none=True).encode()
