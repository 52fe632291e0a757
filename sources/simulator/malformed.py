"""Deliberately malformed input, for the dead-letter path.

``bad_fraction`` of all emitted messages are bad, each labelled (``SimEmission.bad_kind``)
with the rejection code the decoder (``DECODE_KINDS``) or the worker's normalization
(``WORKER_KINDS``) gives it. A bad message follows the good one it was derived from, on the
same stream, with the same key and record time.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from core.events import CaseEvent, SensorReading, SupervisorReport, decode, encode
from sources.simulator.sampling import pick
from sources.simulator.world import SimEmission, World, ms_of

DECODE_KINDS = frozenset({"empty", "bad_json", "schema", "wrong_topic"})
"""Bad kinds ``core.events.decode`` rejects (with that rejection code)."""
WORKER_KINDS = frozenset(
    {"unknown_grid", "unknown_sensor", "unknown_category", "impossible_time", "impossible_value"}
)
"""Bad kinds that decode but the worker's normalization rejects (with that code)."""


class Malformed:
    """Mixes bad messages (random stream ``bad``) in among the good ones."""

    def __init__(self, world: World) -> None:
        self.w = world

    def mix(self, good: list[SimEmission]) -> list[SimEmission]:
        """Insert bad messages so that they are ``bad_fraction`` of everything emitted."""
        f = self.w.cfg.bad_fraction
        if f <= 0 or not good:
            return good
        rng = self.w.rng["bad"]
        hits = rng.random(len(good)) < f / (1 - f)
        out: list[SimEmission] = []
        for em, hit in zip(good, hits.tolist(), strict=True):
            out.append(em)
            if hit:
                out.append(self._bad(em, rng))
        return out

    def _bad(self, em: SimEmission, rng: np.random.Generator) -> SimEmission:
        weights = self.w.cfg.bad_kinds
        kind = pick(rng, {k: w for k, w in weights.items() if self._applies(k, em.stream)})
        payload = self._bad_payload(kind, em, rng)
        return SimEmission(
            record_ts=em.record_ts,
            stream=em.stream,
            key=em.key,
            payload=payload,
            message=None,
            bad_kind=kind,
        )

    @staticmethod
    def _applies(kind: str, stream: str) -> bool:
        if kind in ("unknown_sensor", "impossible_value"):
            return stream == "sensor"
        if kind == "unknown_category":
            return stream in ("inspector", "hotline")
        if kind == "unknown_grid":
            return stream in ("inspector", "hotline", "case")
        return True

    def _bad_payload(self, kind: str, em: SimEmission, rng: np.random.Generator) -> bytes:
        if kind == "empty":
            return b""
        if kind == "bad_json":
            return em.payload[: max(1, len(em.payload) // 2)]
        if kind == "schema":
            doc = json.loads(em.payload)
            doc.pop("gateway_id" if doc["type"] == "sensor.envelope" else "event_id")
            return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        record_ms = ms_of(em.record_ts)
        event_id = self.w.next_id("bad")
        if kind == "wrong_topic":
            other = "case" if em.stream != "case" else "inspector"
            return self._template(other, event_id, record_ms)
        if em.stream == "sensor":
            return self._bad_reading(kind, event_id, record_ms, rng)
        msg = em.message if em.message is not None else decode(em.stream, em.payload)
        update: dict[str, Any] = {"event_id": event_id}
        if kind == "unknown_grid":
            update |= {"grid": "ZZ99S99C999G99", "location": None}
        elif kind == "unknown_category":
            update["category"] = "unknown.nonexistent"
        elif kind == "impossible_time":
            future_ms = record_ms + int(self.w.cfg.bad_future_s * 1000)
            update["occurred_at"] = self.w.fmt.datetime(future_ms)
        return encode(msg.model_copy(update=update))

    def _bad_reading(
        self, kind: str, event_id: str, record_ms: int, rng: np.random.Generator
    ) -> bytes:
        city = self.w.city
        s = city.sensors[int(rng.integers(len(city.sensors)))]
        k = city.sensor_kind_index[s.kind]
        value, sensor_id, when = k.min, s.id, record_ms
        if kind == "unknown_sensor":
            sensor_id = f"S-unknown-{int(rng.integers(10_000)):04d}"
        elif kind == "impossible_value":
            value = k.max + abs(k.max - k.min) + 1.0
        elif kind == "impossible_time":
            when = record_ms + int(self.w.cfg.bad_future_s * 1000)
        return encode(
            SensorReading(
                event_id=event_id,
                occurred_at=self.w.fmt.datetime(when),
                sensor_id=sensor_id,
                kind=s.kind,
                value=value,
                unit=k.unit,
            )
        )

    def _template(self, stream: str, event_id: str, record_ms: int) -> bytes:
        """A valid message of ``stream`` (to be sent on another stream's topic)."""
        when = self.w.fmt.datetime(record_ms)
        if stream == "case":
            return encode(
                CaseEvent(event_id=event_id, occurred_at=when, case_id=event_id, action="accept")
            )
        sub = self.w.subs["inspector"][0]
        return encode(
            SupervisorReport(
                event_id=event_id,
                occurred_at=when,
                report_id=event_id,
                grid=self.w.grids[0].code,
                category=sub,
                reporter_id="inspector-patrol",
            )
        )
