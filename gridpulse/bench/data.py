"""The benchmark's input: simulated city traffic, pre-encoded as the bytes that get published."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sources.publish import timestamp_ms
from sources.simulator import DEFAULT_RATES, SimConfig, Simulator

EVENT_RATE_SCALE = 12.0  # inspector/hotline rates x this: ~1/3 of single messages are events


@dataclass
class Wire:
    """One pre-built message: stream, key, payload bytes, event count, record time (ms)."""

    stream: str
    key: bytes
    payload: bytes
    events: int
    ts_ms: int


def _sim_config(**kw: Any) -> Any:
    rates = {s: {k: v * EVENT_RATE_SCALE for k, v in r.items()} for s, r in DEFAULT_RATES.items()}
    base = {
        "seed": 11,
        "materialize": False,
        "cases": False,
        "incidents": False,
        "bad_fraction": 0.0,
        "rates": rates,
        "duration_s": 7 * 86_400.0,
    }
    return SimConfig(**{**base, **kw})


def _wires(emissions: Iterator[Any], limit: int, count_events: bool) -> list[Wire]:
    """Take emissions until ``limit`` messages (or events, when ``count_events``)."""
    out: list[Wire] = []
    seen = 0
    for em in emissions:
        n = int(getattr(em, "readings", 0)) or 1
        out.append(Wire(em.stream, em.key, em.payload, n, timestamp_ms(em.record_ts)))
        seen += n if count_events else 1
        if seen >= limit:
            break
    return out


def single_messages(city: Any, n: int, start: datetime) -> list[Wire]:
    """``n`` single-event messages: sensor readings plus inspector/hotline events (~1/3)."""
    sim = Simulator(city, _sim_config(envelopes=False, rate=20.0, start=start))
    return _wires(sim.emissions(), n, count_events=False)


def envelope_messages(city: Any, readings: int, start: datetime) -> list[Wire]:
    """Sensor gateway envelopes (<= 500 readings) plus the city's usual events meanwhile."""
    sim = Simulator(
        city,
        _sim_config(
            envelopes=True,
            rate=1.0,
            envelope_size=500,
            start=start,
            rates=DEFAULT_RATES,
            sensor_period_s=1.5,
        ),
    )
    return _wires(sim.emissions(), readings, count_events=True)


def mix_of(wires: list[Wire]) -> dict[str, Any]:
    c = Counter(w.stream for w in wires)
    size = sum(len(w.payload) for w in wires)
    return {
        "messages": len(wires),
        "events": sum(w.events for w in wires),
        "by_stream": dict(c),
        "avg_bytes": round(size / max(len(wires), 1)),
    }
