"""The merge loop: ``Simulator`` runs the parts chunk by chunk and emits in record-time order."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from pathlib import Path

from core.city import City
from sources.simulator.cases import CaseLifecycles
from sources.simulator.config import SimConfig
from sources.simulator.events import EventStreams
from sources.simulator.incidents import Incident, Incidents
from sources.simulator.malformed import Malformed
from sources.simulator.sensors import Sensors
from sources.simulator.world import SimEmission, World, ms_of


class Simulator:
    """Iterate to get the city's emissions in record-time order (deterministic by seed).

    Simulated time advances in chunks of ``chunk_s``: each chunk's messages (events, sensor
    messages, due case events, bad messages) go on a heap by record time, and everything
    recorded before the chunk's end leaves it. Runs once.
    """

    def __init__(self, city: City, config: SimConfig | None = None) -> None:
        self.city = city
        self.cfg = config or SimConfig()
        self.world = world = World(city, self.cfg)
        self.incidents = Incidents(world)
        self.cases = CaseLifecycles(world)
        self.events = EventStreams(world, self.cases)
        self.sensors = Sensors(world, self.incidents)
        self.malformed = Malformed(world)
        self._started = False

    def __iter__(self) -> Iterator[SimEmission]:
        if self._started:
            raise RuntimeError("a Simulator runs once: make a new one to replay the same seed")
        self._started = True
        return self._run()

    def emissions(self) -> Iterator[SimEmission]:
        """The same as iterating the simulator."""
        return iter(self)

    def truth(self) -> list[Incident]:
        """The injected incidents; event counts are final once iteration has finished."""
        return list(self.incidents.by_id.values())

    def write_truth(self, path: str | Path) -> None:
        """The injected incidents as JSON lines."""
        with open(path, "w", encoding="utf-8") as fh:
            for inc in self.truth():
                fh.write(inc.model_dump_json() + "\n")

    def _run(self) -> Iterator[SimEmission]:
        w = self.world
        heap: list[tuple[int, int, SimEmission]] = []
        seq = 0
        step = max(1, round(self.cfg.chunk_s * 1000))
        windows = self.incidents.windows() if self.cfg.incidents else iter(())
        window = next(windows, None)
        for t0 in range(w.t_start, w.t_end, step):
            t1 = min(t0 + step, w.t_end)
            while window is not None and window[0] < t1:
                self.incidents.plan(*window)
                window = next(windows, None)
            for em in self._chunk(t0, t1):
                seq += 1
                heapq.heappush(heap, (ms_of(em.record_ts), seq, em))
            while heap and heap[0][0] < t1:
                yield heapq.heappop(heap)[2]
        while heap:
            yield heapq.heappop(heap)[2]

    def _chunk(self, t0: int, t1: int) -> list[SimEmission]:
        """The messages of [t0, t1): events, sensor messages, due case events, bad ones."""
        events = self.events.background(t0, t1)
        events.extend(self.incidents.due(t1))
        events.sort(key=lambda e: e.ms)
        good = self.events.emissions(events)
        if self.cfg.sensors and self.city.sensors:
            good.extend(self.sensors.emissions(t0, t1))
        if self.cfg.cases:
            good.extend(self.cases.emissions(t1))
        return self.malformed.mix(good)
