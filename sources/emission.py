"""What every source (simulator, replay importers) hands to the publisher."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

StreamKind = Literal["inspector", "sensor", "hotline", "case"]


@dataclass(frozen=True, slots=True)
class Emission:
    """One message to publish: its record time (the Kafka timestamp), stream, key and bytes.

    ``message`` is the validated wire model, or None for deliberately malformed input, in
    which case ``bad_kind`` names the rejection the worker is expected to give it.
    """

    record_ts: datetime
    stream: StreamKind
    key: bytes
    payload: bytes
    message: BaseModel | None = None
    bad_kind: str | None = None
