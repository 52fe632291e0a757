"""Realistic, deterministic city streams: inspectors, sensors, the hotline and cases.

A pure generator (no I/O): ``Simulator(city, SimConfig(...))`` is an iterator of
``SimEmission``s in record-time order (the time a message reaches the broker), the same
bytes for the same seed and config. Simulated time only: pacing belongs to the publisher.

The parts, one module each, around the merge loop (``merge``):

- ``config``: every tunable (rates, profiles, sensor models, seed).
- ``world``: what the parts share (clock, named random streams, grid weights, ids).
- ``events``: inspector reports and hotline requests; ``cases``: the case lifecycles
  they open.
- ``incidents``: injected complaint bursts, sensor spikes and silences, the ground truth
  (``truth()``, ``write_truth``); their events carry the incident id.
- ``sensors``: readings with noise, swing, drift and gaps; gateways' envelopes.
- ``malformed``: ``bad_fraction`` of messages are deliberately bad, each labelled with the
  rejection code the decoder (``DECODE_KINDS``) or the worker (``WORKER_KINDS``) gives it.
"""

from sources.simulator.cases import CASE_UNITS
from sources.simulator.config import (
    DEFAULT_RATES,
    DEFAULT_SENSOR_MODELS,
    HOTLINE_HOURS,
    INSPECTOR_HOURS,
    EventStream,
    SensorModel,
    SimConfig,
)
from sources.simulator.incidents import Incident, adjacency
from sources.simulator.malformed import DECODE_KINDS, WORKER_KINDS
from sources.simulator.merge import Simulator
from sources.simulator.sampling import (
    local_clock,
    pick,
    profile_factor,
    reporting_delays,
    thinned_poisson,
)
from sources.simulator.world import EPOCH, SimEmission, TimeFormat, ms_of

__all__ = [
    "CASE_UNITS",
    "DECODE_KINDS",
    "DEFAULT_RATES",
    "DEFAULT_SENSOR_MODELS",
    "EPOCH",
    "HOTLINE_HOURS",
    "INSPECTOR_HOURS",
    "WORKER_KINDS",
    "EventStream",
    "Incident",
    "SensorModel",
    "SimConfig",
    "SimEmission",
    "Simulator",
    "TimeFormat",
    "adjacency",
    "local_clock",
    "ms_of",
    "pick",
    "profile_factor",
    "reporting_delays",
    "thinned_poisson",
]
