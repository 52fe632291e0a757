"""Every tunable of a simulation: rates, profiles, sensor models, seeds (``SimConfig``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator

EventStream = Literal["inspector", "hotline"]

# hourly profiles (value at hh:00, linear in between, local time); normalised to mean 1
INSPECTOR_HOURS = [
    0.02,
    0.02,
    0.02,
    0.02,
    0.02,
    0.05,
    0.1,
    0.4,
    1.6,
    2.3,
    2.3,
    2.0,
    0.7,
    0.6,
    1.9,
    2.3,
    2.3,
    1.9,
    0.7,
    0.3,
    0.2,
    0.1,
    0.05,
    0.02,
]
HOTLINE_HOURS = [
    0.25,
    0.15,
    0.1,
    0.08,
    0.08,
    0.12,
    0.3,
    0.7,
    1.3,
    1.8,
    1.9,
    1.7,
    1.2,
    1.2,
    1.6,
    1.7,
    1.6,
    1.4,
    1.1,
    1.0,
    1.0,
    0.8,
    0.6,
    0.4,
]


class SensorModel(BaseModel):
    """How one sensor kind's readings behave."""

    baseline: float  # typical level (for sawtooth kinds: the fill reached before emptying)
    baseline_sd: float = 0.0  # spread of levels between sensors
    noise_sd: float = 0.0
    drift_sd_per_hour: float = 0.0  # random-walk drift
    diurnal_amplitude: float = 0.0  # cosine swing peaking at ``diurnal_peak_hour``
    diurnal_peak_hour: float = 14.0
    sawtooth_hours: float | None = None  # fill levels: ramp 0 -> baseline, then emptied
    spike: float = 0.0  # added during a spike incident
    decimals: int = Field(default=2, ge=0, le=6)


DEFAULT_SENSOR_MODELS: dict[str, SensorModel] = {
    "water_level": SensorModel(
        baseline=0.3, baseline_sd=0.1, noise_sd=0.01, drift_sd_per_hour=0.005, spike=1.5, decimals=3
    ),
    "manhole_tilt": SensorModel(
        baseline=1.0, baseline_sd=0.4, noise_sd=0.2, drift_sd_per_hour=0.01, spike=35.0, decimals=1
    ),
    "pm25": SensorModel(
        baseline=35.0,
        baseline_sd=8.0,
        noise_sd=3.0,
        drift_sd_per_hour=2.0,
        diurnal_amplitude=10.0,
        diurnal_peak_hour=8.0,
        spike=400.0,
        decimals=1,
    ),
    "noise": SensorModel(
        baseline=55.0,
        baseline_sd=5.0,
        noise_sd=2.0,
        drift_sd_per_hour=0.2,
        diurnal_amplitude=9.0,
        spike=35.0,
        decimals=1,
    ),
    "bin_fill": SensorModel(
        baseline=85.0, baseline_sd=5.0, noise_sd=1.0, sawtooth_hours=20.0, spike=100.0, decimals=0
    ),
}

DEFAULT_RATES: dict[str, dict[str, float]] = {
    "inspector": {
        "sanitation.overflowing_bin": 160,
        "sanitation.exposed_garbage": 200,
        "sanitation.street_cleanliness": 180,
        "facilities.broken_streetlight": 80,
        "facilities.damaged_road": 70,
        "facilities.manhole_cover": 40,
        "order.illegal_construction": 60,
        "order.street_vending": 220,
        "order.illegal_parking": 200,
        "disputes.neighbour_dispute": 30,
        "disputes.noise_complaint": 20,
        "safety.fire_hazard": 60,
        "safety.hazardous_structure": 15,
        "environment.water_logging": 20,
    },
    "hotline": {
        "sanitation.overflowing_bin": 160,
        "sanitation.exposed_garbage": 150,
        "sanitation.street_cleanliness": 100,
        "facilities.broken_streetlight": 180,
        "facilities.damaged_road": 150,
        "facilities.manhole_cover": 60,
        "order.illegal_construction": 120,
        "order.street_vending": 140,
        "order.illegal_parking": 300,
        "disputes.neighbour_dispute": 160,
        "disputes.noise_complaint": 400,
        "safety.fire_hazard": 60,
        "safety.hazardous_structure": 30,
        "environment.water_logging": 80,
        "environment.air_quality": 60,
    },
}
"""Mean events per hour (over a day) per stream and subcategory, at ``rate`` 1."""


class SimConfig(BaseModel):
    """Every tunable of the simulation."""

    seed: int = 7
    start: AwareDatetime = datetime(2025, 6, 2, 0, 0, tzinfo=timezone(timedelta(hours=8)))
    duration_s: float = Field(default=3600.0, gt=0)
    rate: float = Field(default=1.0, gt=0)  # multiplies event rates and sensor reporting frequency
    chunk_s: float = Field(default=60.0, gt=0)  # simulated seconds generated at a time

    # events (inspector, hotline)
    rates: dict[str, dict[str, float]] = DEFAULT_RATES
    default_rate_per_hour: float = 20.0  # subcategories absent from ``rates``
    inspector_hours: list[float] = INSPECTOR_HOURS
    hotline_hours: list[float] = HOTLINE_HOURS
    inspector_weekdays: list[float] = [1, 1, 1, 1, 1, 0.5, 0.3]  # Monday first
    hotline_weekdays: list[float] = [1, 1, 1, 1, 1, 0.85, 0.8]
    grid_weight_shape: float = Field(default=1.5, gt=0)  # gamma shape: smaller = more uneven grids
    outside_fraction: float = Field(default=0.005, ge=0, le=1)  # events outside every grid
    outside_margin_deg: tuple[float, float] = (0.002, 0.02)
    inspector_location_fraction: float = Field(default=0.9, ge=0, le=1)
    inspector_grid_fraction: float = Field(default=0.95, ge=0, le=1)
    hotline_location_fraction: float = Field(default=0.95, ge=0, le=1)  # else the grid code
    channels: dict[str, float] = {
        "phone": 0.55,
        "app": 0.13,
        "wechat": 0.15,
        "web": 0.07,
        "sms": 0.04,
        "email": 0.01,
        "walk_in": 0.03,
        "other": 0.02,
    }
    callers: int = Field(default=50_000, ge=1)  # size of the (Zipf-like) caller population

    # record time = event time + delay
    delay_mean_s: float = Field(default=3.0, ge=0)
    delay_max_s: float = Field(default=30.0, ge=0)
    late_fraction: float = Field(default=0.02, ge=0, le=1)
    late_delay_s: tuple[float, float] = (180.0, 900.0)  # beyond the worker's 120 s grace

    # deliberately malformed messages: fraction of all emitted messages, kinds by weight
    bad_fraction: float = Field(default=0.01, ge=0, lt=1)
    bad_kinds: dict[str, float] = {
        "bad_json": 2,
        "empty": 0.5,
        "schema": 2,
        "wrong_topic": 1,
        "unknown_grid": 1,
        "unknown_sensor": 1,
        "unknown_category": 1,
        "impossible_time": 1,
        "impossible_value": 1,
    }
    bad_future_s: float = 86_400.0  # how far in the future an impossible time lies

    # sensors
    sensors: bool = True
    sensor_period_s: float = Field(default=60.0, gt=0)
    sensor_gap_fraction: float = Field(default=0.01, ge=0, le=1)
    sensor_models: dict[str, SensorModel] = DEFAULT_SENSOR_MODELS
    envelopes: bool = True
    envelope_size: int = Field(default=500, ge=1, le=5000)  # max readings per envelope (< 1 MB)
    gateway_interval_s: float = Field(default=60.0, gt=0)  # a gateway flushes at least this often
    # build ``message`` for sensor emissions (costly: ~9 µs a reading); False for benchmarks
    materialize: bool = True

    # cases
    cases: bool = True
    case_fraction: float = Field(default=0.3, ge=0, le=1)
    case_step_minutes: tuple[float, float] = (2.0, 90.0)
    case_verify_fail: float = Field(default=0.1, ge=0, le=1)
    case_ratings: dict[str, float] = {
        "satisfied": 0.7,
        "basically_satisfied": 0.2,
        "dissatisfied": 0.1,
    }

    # injected incidents
    incidents: bool = True
    incident_every_s: float = Field(
        default=21_600.0, gt=0
    )  # each such window gets the counts below
    bursts: int = Field(default=2, ge=0)
    spikes: int = Field(default=2, ge=0)
    silences: int = Field(default=2, ge=0)
    burst_minutes: tuple[float, float] = (10.0, 30.0)
    burst_events: tuple[int, int] = (20, 40)
    burst_hotline_share: float = 0.7
    burst_center_share: float = 0.5
    spike_minutes: tuple[float, float] = (5.0, 20.0)
    silence_minutes: tuple[float, float] = (15.0, 60.0)
    incident_min_periods: float = 3.0  # sensor incidents span at least this many periods

    @model_validator(mode="after")
    def _consistent(self) -> SimConfig:
        if self.sensor_period_s * 1000 / self.rate < 1:
            raise ValueError("sensor period / rate must be at least 1 ms")
        if self.sensors and self.envelopes:
            steps = self.chunk_s / self.gateway_interval_s
            if abs(steps - round(steps)) > 1e-9:
                raise ValueError("chunk_s must be a multiple of gateway_interval_s")
        if self.late_delay_s[0] <= self.delay_max_s + self.gateway_interval_s:
            raise ValueError("late delays must exceed every on-time delay")
        if len(self.inspector_hours) != 24 or len(self.hotline_hours) != 24:
            raise ValueError("hourly profiles need 24 values")
        return self

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)
