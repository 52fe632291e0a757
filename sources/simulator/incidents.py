"""Injected incidents, the labelled ground truth: complaint bursts, sensor spikes, silences.

Every ``incident_every_s`` window gets ``bursts`` bursts (complaints of one subcategory in a
grid and its neighbours, drawn in advance), ``spikes`` sensors reading far too high and
``silences`` sensors sending nothing. ``Incident`` records what was injected; the events
that carry an incident count towards its ``events`` (suppressed readings: ``suppressed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import cached_property
from typing import Literal

import numpy as np
from pydantic import BaseModel

from core.city import City
from sources.simulator.config import EventStream
from sources.simulator.world import PendingEvent, World


class Incident(BaseModel):
    """Ground truth of one injected incident."""

    id: str
    kind: Literal["complaint_burst", "sensor_spike", "sensor_silence"]
    start: datetime
    end: datetime
    grids: list[str] = []
    sensors: list[str] = []
    subcategory: str | None = None
    events: int = 0  # emitted events/readings carrying this incident
    suppressed: int = 0  # readings a silent sensor did not send
    grid_counts: dict[str, int] = {}
    stream_counts: dict[str, int] = {}


def adjacency(city: City) -> dict[str, list[str]]:
    """Grids sharing at least one polygon vertex (so edges too) with each grid."""
    by_vertex: dict[tuple[float, float], list[str]] = {}
    for g in city.iter_grids():
        for p in g.polygon.coordinates[0][:-1]:
            by_vertex.setdefault((p[0], p[1]), []).append(g.code)
    out: dict[str, set[str]] = {g.code: set() for g in city.iter_grids()}
    for codes in by_vertex.values():
        for c in codes:
            out[c].update(codes)
    return {c: sorted(n - {c}) for c, n in out.items()}


SensorIncident = tuple[str, int, int, int]
"""(incident id, sensor index, start ms, end ms)."""


class Incidents:
    """Plans each window's incidents (random stream ``incidents``) and keeps their truth.

    ``planned`` holds the bursts' events in time order until the event streams take them;
    ``spikes`` and ``silences`` hold the sensor incidents the sensors apply.
    """

    def __init__(self, world: World) -> None:
        self.w = world
        self.by_id: dict[str, Incident] = {}
        self.planned: list[PendingEvent] = []
        self.spikes: list[SensorIncident] = []
        self.silences: list[SensorIncident] = []

    def windows(self) -> Iterator[tuple[int, int]]:
        """The incident windows [w0, w1) covering the run."""
        every = round(self.w.cfg.incident_every_s * 1000)
        for w0 in range(self.w.t_start, self.w.t_end, every):
            yield w0, min(w0 + every, self.w.t_end)

    def due(self, t1: int) -> list[PendingEvent]:
        """Take the planned events before ``t1``."""
        out = []
        while self.planned and self.planned[0].ms < t1:
            out.append(self.planned.pop(0))
        return out

    def forget_ended(self, ms: int) -> None:
        """Drop the sensor incidents that ended by ``ms``."""
        self.silences = [x for x in self.silences if x[3] > ms]
        self.spikes = [x for x in self.spikes if x[3] > ms]

    def plan(self, w0: int, w1: int) -> None:
        """Place this window's bursts, spikes and silences; bursts' events are pre-drawn."""
        w = self.w
        cfg, rng = w.cfg, w.rng["incidents"]
        both = [c for c in w.subs["hotline"] if c in w.subs["inspector"]]
        for _ in range(cfg.bursts if both else 0):
            self._plan_burst(rng, both, *self._window(rng, cfg.burst_minutes, w0, w1))
        self.planned.sort(key=lambda e: e.ms)
        sensors = w.city.sensors
        if not (cfg.sensors and sensors):
            return
        picks = rng.permutation(len(sensors))[: cfg.spikes + cfg.silences].tolist()
        sensor_min_ms = int(cfg.incident_min_periods * cfg.sensor_period_s * 1000 / cfg.rate)
        for k, idx in enumerate(picks):
            spike = k < cfg.spikes
            kind = "spike" if spike else "silence"
            minutes = cfg.spike_minutes if spike else cfg.silence_minutes
            t0, t1 = self._window(rng, minutes, w0, w1, min_ms=sensor_min_ms)
            s = sensors[idx]
            inc = Incident(
                id=self._incident_id(kind),
                kind=f"sensor_{kind}",  # type: ignore[arg-type]
                start=w.fmt.datetime(t0),
                end=w.fmt.datetime(t1),
                grids=[s.grid],
                sensors=[s.id],
            )
            (self.spikes if spike else self.silences).append((inc.id, idx, t0, t1))
            self.by_id[inc.id] = inc

    @cached_property
    def _adjacency(self) -> dict[str, list[str]]:
        return adjacency(self.w.city)

    def _window(
        self,
        rng: np.random.Generator,
        minutes: tuple[float, float],
        w0: int,
        w1: int,
        min_ms: int = 0,
    ) -> tuple[int, int]:
        """A random sub-window of [w0, w1) lasting ``minutes`` (at least ``min_ms``; clipped)."""
        length = min(max(int(rng.uniform(*minutes) * 60_000), min_ms), w1 - w0)
        t0 = int(rng.integers(w0, w1 - length + 1))
        return t0, t0 + length

    def _incident_id(self, kind: str) -> str:
        return f"{kind}-{self.w.cfg.seed}-{len(self.by_id) + 1}"

    def _plan_burst(self, rng: np.random.Generator, subs: list[str], t0: int, t1: int) -> None:
        """Complaints of one subcategory in a grid and its neighbours over [t0, t1)."""
        w = self.w
        cfg = w.cfg
        center = w.grids[int(rng.choice(len(w.grids), p=w.grid_p))].code
        around = self._adjacency[center]
        sub = subs[int(rng.integers(len(subs)))]
        inc = Incident(
            id=self._incident_id("burst"),
            kind="complaint_burst",
            start=w.fmt.datetime(t0),
            end=w.fmt.datetime(t1),
            grids=[center, *around],
            subcategory=sub,
        )
        n = int(rng.integers(cfg.burst_events[0], cfg.burst_events[1] + 1))
        for ms in np.sort(rng.integers(t0, max(t1, t0 + 1), size=n)).tolist():
            stream: EventStream = (
                "hotline" if rng.random() < cfg.burst_hotline_share else "inspector"
            )
            at_center = rng.random() < cfg.burst_center_share or not around
            grid = center if at_center else around[int(rng.integers(len(around)))]
            self.planned.append(PendingEvent(ms, stream, sub, w.grid_index[grid], inc.id))
            inc.events += 1
            inc.grid_counts[grid] = inc.grid_counts.get(grid, 0) + 1
            inc.stream_counts[stream] = inc.stream_counts.get(stream, 0) + 1
        self.by_id[inc.id] = inc
