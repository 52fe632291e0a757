"""Inspector reports and hotline requests: background traffic plus the incidents' events.

Background events are a non-homogeneous Poisson process per subcategory (thinning against
hourly diurnal and weekday profiles), spread over grids by fixed gamma-distributed grid
weights; a small fraction lies outside every grid. Each event reaches the broker after a
short delay, ``late_fraction`` of them after minutes. Some open cases (``CaseLifecycles``).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape

from core.city import UNLOCATED
from core.events import HotlineRequest, Location, SupervisorReport, encode
from sources.simulator.cases import CaseLifecycles
from sources.simulator.config import EventStream
from sources.simulator.sampling import (
    local_clock,
    pick,
    profile_factor,
    reporting_delays,
    thinned_poisson,
)
from sources.simulator.world import PendingEvent, SimEmission, World


class EventStreams:
    """Draws events (random stream ``events``), places them (``points``), words them (``text``)."""

    def __init__(self, world: World, cases: CaseLifecycles) -> None:
        self.w = world
        self.cases = cases
        city = world.city
        self.community = [city.grid_paths[g.code].community for g in world.grids]
        self.community_name = {
            c.code: c.name for d in city.districts for s in d.streets for c in s.communities
        }

    @cached_property
    def geoms(self) -> list[Any]:
        geoms = [shape(g.polygon.model_dump()) for g in self.w.grids]
        for geom in geoms:
            shapely.prepare(geom)
        return geoms

    @cached_property
    def city_bounds(self) -> tuple[float, float, float, float]:
        return tuple(shapely.total_bounds(self.geoms).tolist())  # type: ignore[return-value]

    def rate_per_s(self, stream: EventStream) -> np.ndarray:
        """Mean events per second of each of the stream's subcategories."""
        cfg = self.w.cfg
        table = cfg.rates.get(stream, {})
        per_h = [table.get(c, cfg.default_rate_per_hour) for c in self.w.subs[stream]]
        return np.asarray(per_h, dtype=float) * cfg.rate / 3600.0

    def background(self, t0: int, t1: int) -> list[PendingEvent]:
        """Poisson inspector and hotline events of [t0, t1) (thinned by the profiles)."""
        w = self.w
        cfg, rng = w.cfg, w.rng["events"]
        offset = w.offset_s(t0)
        out: list[PendingEvent] = []
        for stream, hours, weekdays in (
            ("inspector", cfg.inspector_hours, cfg.inspector_weekdays),
            ("hotline", cfg.hotline_hours, cfg.hotline_weekdays),
        ):
            rates = self.rate_per_s(stream)  # type: ignore[arg-type]
            if not len(rates) or rates.sum() <= 0:
                continue
            hour_norm = np.asarray(hours, dtype=float) / np.mean(hours)
            peak = float(hour_norm.max()) * max(weekdays)

            def accept(ms: np.ndarray, hours=hours, weekdays=weekdays, peak=peak) -> np.ndarray:
                hour, dow = local_clock(ms, offset)
                return profile_factor(hour, hours) * np.asarray(weekdays)[dow] / peak

            times = thinned_poisson(rng, t0, t1, float(rates.sum()) * peak, accept)
            subs = rng.choice(len(rates), size=len(times), p=rates / rates.sum())
            grids = rng.choice(len(w.grids), size=len(times), p=w.grid_p)
            outside = rng.random(len(times)) < cfg.outside_fraction
            names = w.subs[stream]  # type: ignore[index]
            out.extend(
                PendingEvent(int(ms), stream, names[int(s)], -1 if o else int(g))  # type: ignore[arg-type]
                for ms, s, g, o in zip(times, subs, grids, outside, strict=True)
            )
        return out

    def emissions(self, events: list[PendingEvent]) -> list[SimEmission]:
        """``events`` (in time order) as wire messages, each with its reporting delay."""
        delays = reporting_delays(self.w.rng["events"], len(events), self.w.cfg)
        return [self._emission(e, int(d)) for e, d in zip(events, delays, strict=True)]

    def _point_in(self, grid: int) -> tuple[float, float]:
        """A point strictly inside the grid (after rounding to 6 decimals)."""
        rng, geom = self.w.rng["points"], self.geoms[grid]
        x0, y0, x1, y1 = geom.bounds
        while True:
            xs = np.round(rng.uniform(x0, x1, 16), 6)
            ys = np.round(rng.uniform(y0, y1, 16), 6)
            inside = np.flatnonzero(shapely.contains_xy(geom, xs, ys))
            if len(inside):
                return float(xs[inside[0]]), float(ys[inside[0]])

    def _point_outside(self) -> tuple[float, float]:
        """A point beyond the city's bounding box: outside every grid."""
        rng = self.w.rng["points"]
        x0, y0, x1, y1 = self.city_bounds
        gap = rng.uniform(*self.w.cfg.outside_margin_deg)
        side = int(rng.integers(4))
        x = [x0 - gap, x1 + gap, rng.uniform(x0, x1), rng.uniform(x0, x1)][side]
        y = [rng.uniform(y0, y1), rng.uniform(y0, y1), y0 - gap, y1 + gap][side]
        return round(float(x), 6), round(float(y), 6)

    def _emission(self, e: PendingEvent, delay_ms: int) -> SimEmission:
        w = self.w
        cfg, rng = w.cfg, w.rng["text"]
        located = e.grid >= 0
        grid = w.grids[e.grid] if located else None
        if located:
            lon, lat = self._point_in(e.grid)
        else:
            lon, lat = self._point_outside()
        when = w.fmt.datetime(e.ms)
        sub_zh = w.city.subcategories[e.sub][1].name_zh or e.sub
        place = self.community_name[self.community[e.grid]] if grid else "辖区外"
        msg: SupervisorReport | HotlineRequest
        if e.stream == "inspector":
            with_grid = located and rng.random() < cfg.inspector_grid_fraction
            with_loc = (
                not located or not with_grid or rng.random() < cfg.inspector_location_fraction
            )
            msg = SupervisorReport(
                event_id=w.next_id("ins"),
                occurred_at=when,
                report_id=w.next_id("R"),
                grid=grid.code if with_grid and grid else None,
                category=e.sub,
                location=Location(lon=lon, lat=lat) if with_loc else None,
                reporter_id=grid.owner.split()[0] if grid else "inspector-patrol",
                text=f"{sub_zh}：{grid.name if grid else place}",
            )
        else:
            with_loc = not located or rng.random() < cfg.hotline_location_fraction
            msg = HotlineRequest(
                event_id=w.next_id("hot"),
                occurred_at=when,
                request_id=w.next_id("H"),
                channel=pick(rng, cfg.channels),  # type: ignore[arg-type]
                category=e.sub,
                location=Location(lon=lon, lat=lat) if with_loc else None,
                address=f"{place}附近",
                grid=None if with_loc or not grid else grid.code,
                caller_id=self._caller(rng),
                text=f"市民反映{place}{sub_zh}",
            )
        truth = grid.code if grid else UNLOCATED
        if grid and cfg.cases and rng.random() < cfg.case_fraction:
            self.cases.open(e, msg, truth)
        return SimEmission(
            record_ts=w.fmt.datetime(e.ms + delay_ms),
            stream=e.stream,
            key=msg.grid.encode() if msg.grid else b"",
            payload=encode(msg),
            message=msg,
            truth_grid=truth,
            incidents=((e.incident, 1),) if e.incident else (),
        )

    def _caller(self, rng: np.random.Generator) -> str:
        """A fake mobile number from a Zipf-like population (some people call often)."""
        n = int(min(rng.zipf(1.3), self.w.cfg.callers)) - 1
        return f"1{38 + n % 12}{(n * 7_919_993) % 100_000_000:08d}"
