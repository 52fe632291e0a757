"""Sensor readings and the gateways' envelopes.

Sensors report every ``sensor_period_s / rate`` seconds with noise, diurnal swing, slow
drift and random gaps (fill levels ramp up and are emptied); spikes add to a sensor's
readings and silences suppress them. Gateways (one per community) batch readings into
envelopes of at most ``envelope_size``, or send single readings when ``envelopes`` is off.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from core.events import decode
from sources.simulator.config import SensorModel
from sources.simulator.incidents import Incidents
from sources.simulator.sampling import local_clock, reporting_delays
from sources.simulator.world import SimEmission, World


class Sensors:
    """Draws every sensor's readings (random stream ``sensors``) and wraps them in messages."""

    def __init__(self, world: World, incidents: Incidents) -> None:
        self.w = world
        self.incidents = incidents
        self._state: dict[str, Any] | None = None  # set up on the first readings

    def emissions(self, t0: int, t1: int) -> list[SimEmission]:
        """The messages carrying the readings of [t0, t1), one gateway flush at a time."""
        cfg = self.w.cfg
        step = round(cfg.gateway_interval_s * 1000) if cfg.envelopes else t1 - t0
        out: list[SimEmission] = []
        for a in range(t0, t1, step):
            b = min(a + step, t1)
            idx, ms, value = self._readings(a, b)
            if cfg.envelopes:
                out.extend(self._envelopes(idx, ms, value, b))
            else:
                out.extend(self._single_readings(idx, ms, value))
        return out

    def _setup(self) -> dict[str, Any]:
        w = self.w
        cfg, rng = w.cfg, w.rng["sensors"]
        sensors = w.city.sensors
        kinds = w.city.sensor_kind_index
        n = len(sensors)

        def model(kind: str) -> SensorModel:
            if kind in cfg.sensor_models:
                return cfg.sensor_models[kind]
            k = kinds[kind]
            span = k.max - k.min
            return SensorModel(baseline=k.min + 0.2 * span, noise_sd=0.01 * span, spike=0.5 * span)

        models = [model(s.kind) for s in sensors]

        def col(attr: str) -> np.ndarray:
            return np.asarray([getattr(m, attr) or 0.0 for m in models], dtype=float)

        gateways = sorted({w.city.grid_paths[s.grid].community for s in sensors})
        gw_index = {g: i for i, g in enumerate(gateways)}
        period = cfg.sensor_period_s * 1000.0 / cfg.rate
        units = {k: json.dumps(kinds[k].unit, ensure_ascii=False) for k in kinds}
        return {
            "baseline": col("baseline") + col("baseline_sd") * rng.standard_normal(n),
            "noise": col("noise_sd"),
            "drift_sd": col("drift_sd_per_hour"),
            "amp": col("diurnal_amplitude"),
            "peak": col("diurnal_peak_hour"),
            "saw": col("sawtooth_hours") * 3_600_000.0,
            "saw_phase": rng.random(n),
            "spike": col("spike"),
            "scale": 10.0 ** col("decimals"),
            "lo": np.asarray([kinds[s.kind].min for s in sensors]),
            "hi": np.asarray([kinds[s.kind].max for s in sensors]),
            "drift": np.zeros(n),
            "next": w.t_start + rng.random(n) * period,
            "period": period,
            "gw": np.asarray([gw_index[w.city.grid_paths[s.grid].community] for s in sensors]),
            "gw_ids": [f"GW-{g}" for g in gateways],
            "head": [f'{{"v":1,"type":"sensor.reading","event_id":"{s.id}@' for s in sensors],
            "tail": [f'","sensor_id":"{s.id}","kind":"{s.kind}","value":' for s in sensors],
            "unit": [f',"unit":{units[s.kind]}}}' for s in sensors],
        }

    def _readings(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sensor index, ms, value) of the readings of [a, b), gaps and silences removed."""
        st = self._state
        if st is None:
            st = self._state = self._setup()
        cfg, rng = self.w.cfg, self.w.rng["sensors"]
        period = st["period"]
        counts = np.maximum(0, np.ceil((b - st["next"]) / period)).astype(np.int64)
        idx = np.repeat(np.arange(len(counts)), counts)
        k = np.arange(len(idx)) - np.repeat(np.cumsum(counts) - counts, counts)
        ms = np.floor(st["next"][idx] + k * period).astype(np.int64)
        st["next"] = st["next"] + counts * period
        st["drift"] += (
            st["drift_sd"] * math.sqrt((b - a) / 3_600_000.0) * rng.standard_normal(len(counts))
        )
        hour, _ = local_clock(ms, self.w.offset_s(a))
        value = (
            st["baseline"][idx]
            + st["drift"][idx]
            + st["amp"][idx] * np.cos(2 * np.pi * (hour - st["peak"][idx]) / 24.0)
            + st["noise"][idx] * rng.standard_normal(len(idx))
        )
        saw = st["saw"][idx] > 0
        if saw.any():
            frac = (ms[saw] / st["saw"][idx][saw] + st["saw_phase"][idx][saw]) % 1.0
            value[saw] += st["baseline"][idx][saw] * (frac - 1.0)
        keep = rng.random(len(idx)) >= cfg.sensor_gap_fraction
        incidents = self.incidents
        incidents.forget_ended(a)
        for inc_id, s, t0, t1 in incidents.silences:
            hit = keep & (idx == s) & (ms >= t0) & (ms < t1)
            incidents.by_id[inc_id].suppressed += int(hit.sum())
            keep &= ~hit
        for _, s, t0, t1 in incidents.spikes:
            value[(idx == s) & (ms >= t0) & (ms < t1)] += st["spike"][s]
        value = np.clip(value, st["lo"][idx], st["hi"][idx])
        value = np.round(value * st["scale"][idx]) / st["scale"][idx] + 0.0
        return idx[keep], ms[keep], value[keep]

    def _spike_tags(self, idx: np.ndarray, ms: np.ndarray) -> tuple[tuple[str, int], ...]:
        tags = []
        for inc_id, s, t0, t1 in self.incidents.spikes:
            n = int(((idx == s) & (ms >= t0) & (ms < t1)).sum())
            if n:
                self.incidents.by_id[inc_id].events += n
                tags.append((inc_id, n))
        return tuple(tags)

    def _reading_json(self, idx: list[int], ms: list[int], value: list[float]) -> list[str]:
        st, fmt = self._state, self.w.fmt
        assert st is not None
        head, tail, unit = st["head"], st["tail"], st["unit"]
        return [
            f'{head[i]}{m}","occurred_at":"{fmt(m)}{tail[i]}{v!r}{unit[i]}'
            for i, m, v in zip(idx, ms, value, strict=True)
        ]

    def _envelopes(
        self, idx: np.ndarray, ms: np.ndarray, value: np.ndarray, flush_ms: int
    ) -> list[SimEmission]:
        """Per gateway, readings in time order, cut into envelopes of ``envelope_size``."""
        st, cfg, fmt = self._state, self.w.cfg, self.w.fmt
        assert st is not None
        gw = st["gw"][idx]
        order = np.lexsort((idx, ms, gw))
        idx, ms, value, gw = idx[order], ms[order], value[order], gw[order]
        starts = np.flatnonzero(np.diff(gw, prepend=-1))
        bounds: list[tuple[int, int]] = []
        for s, e in zip(starts.tolist(), [*starts[1:].tolist(), len(gw)], strict=True):
            size = cfg.envelope_size
            bounds.extend((a, min(a + size, e)) for a in range(s, e, size))
        delays = reporting_delays(self.w.rng["sensors"], len(bounds), cfg).tolist()
        parts = self._reading_json(idx.tolist(), ms.tolist(), value.tolist())
        out = []
        for (a, e), delay in zip(bounds, delays, strict=True):
            # a full envelope leaves at once, others at the flush; a late one is held back
            # by the gateway (its sent_at is late too), an on-time one is delayed in transit
            ready = int(ms[e - 1]) if e - a == cfg.envelope_size else flush_ms
            held = delay if delay > cfg.delay_max_s * 1000 else 0
            sent, record = ready + held, ready + delay
            gw_id = st["gw_ids"][int(gw[a])]
            payload = (
                f'{{"v":1,"type":"sensor.envelope","gateway_id":"{gw_id}",'
                f'"sent_at":"{fmt(sent)}","readings":[{",".join(parts[a:e])}]}}'
            ).encode()
            out.append(
                SimEmission(
                    record_ts=fmt.datetime(record),
                    stream="sensor",
                    key=gw_id.encode(),
                    payload=payload,
                    message=decode("sensor", payload) if cfg.materialize else None,
                    readings=e - a,
                    incidents=self._spike_tags(idx[a:e], ms[a:e]),
                )
            )
        return out

    def _single_readings(
        self, idx: np.ndarray, ms: np.ndarray, value: np.ndarray
    ) -> list[SimEmission]:
        st, cfg = self._state, self.w.cfg
        assert st is not None
        delays = reporting_delays(self.w.rng["sensors"], len(idx), cfg)
        parts = self._reading_json(idx.tolist(), ms.tolist(), value.tolist())
        out = []
        for k, (i, m, d) in enumerate(zip(idx.tolist(), ms.tolist(), delays.tolist(), strict=True)):
            payload = parts[k].encode()
            out.append(
                SimEmission(
                    record_ts=self.w.fmt.datetime(m + d),
                    stream="sensor",
                    key=self.w.city.sensors[i].id.encode(),
                    payload=payload,
                    message=decode("sensor", payload) if cfg.materialize else None,
                    readings=1,
                    incidents=self._spike_tags(idx[k : k + 1], ms[k : k + 1]),
                )
            )
        return out
