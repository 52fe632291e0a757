"""Pure sampling helpers: time-of-day profiles, a thinned Poisson process, weighted picks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sources.simulator.config import SimConfig


def profile_factor(hours_local: np.ndarray, hourly: list[float]) -> np.ndarray:
    """Hourly profile (normalised to mean 1) linearly interpolated at fractional hours."""
    knots = np.asarray(hourly, dtype=float)
    knots = knots / knots.mean()
    return np.interp(hours_local, np.arange(25), np.append(knots, knots[0]))


def local_clock(ms: np.ndarray, offset_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(fractional local hour, weekday Monday=0) of epoch milliseconds."""
    local_s = ms / 1000.0 + offset_s
    days = np.floor(local_s / 86_400.0)
    return (local_s - days * 86_400.0) / 3600.0, ((days + 3) % 7).astype(int)  # 1970-01-01: Thu


def thinned_poisson(
    rng: np.random.Generator, t0: int, t1: int, peak_per_s: float, accept: Any
) -> np.ndarray:
    """Sorted event times (ms) in [t0, t1) of a NHPP by thinning a homogeneous one."""
    n = rng.poisson(peak_per_s * (t1 - t0) / 1000.0)
    times = np.sort(rng.integers(t0, t1, size=n))
    if n == 0:
        return times
    return times[rng.random(n) < accept(times)]


def pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """One key of ``weights``, drawn with probability proportional to its weight."""
    keys = list(weights)
    cum = np.cumsum(np.asarray(list(weights.values()), dtype=float))
    return keys[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(keys) - 1)]


def reporting_delays(rng: np.random.Generator, n: int, cfg: SimConfig) -> np.ndarray:
    """Milliseconds from event to broker: short, or (a ``late_fraction``) minutes."""
    on_time = np.minimum(rng.exponential(cfg.delay_mean_s, n), cfg.delay_max_s)
    late = rng.uniform(*cfg.late_delay_s, n)
    return np.round(np.where(rng.random(n) < cfg.late_fraction, late, on_time) * 1000).astype(
        np.int64
    )
