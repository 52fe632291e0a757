"""What ``gridpulse simulate`` and ``gridpulse replay`` do: build emissions, publish them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.settings import Settings


def topic_map(settings: Settings) -> dict[str, str]:
    t = settings.topics
    return {"inspector": t.inspector, "sensor": t.sensor, "hotline": t.hotline, "case": t.case}


def simulate(
    settings: Settings,
    *,
    seed: int,
    duration_s: float,
    speed: float,
    rate: float,
    start: datetime | None = None,
    truth_path: str | None = None,
    envelopes: bool = True,
    bad_fraction: float | None = None,
) -> dict[str, Any]:
    from sources.publish import publish
    from sources.simulator import SimConfig, Simulator

    cfg: dict[str, Any] = {
        "seed": seed,
        "duration_s": duration_s,
        "rate": rate,
        "envelopes": envelopes,
        "start": start or datetime.now(UTC),
    }
    if bad_fraction is not None:
        cfg["bad_fraction"] = bad_fraction
    sim = Simulator(settings.city, SimConfig(**cfg))
    stats = publish(
        sim.emissions(),
        topic_map(settings),
        settings.bootstrap_servers,
        speed=speed or None,
        max_rate=None,
    )
    if truth_path:
        sim.write_truth(Path(truth_path))
    return stats.as_dict()


def replay(settings: Settings, file: str, fmt_name: str, speed: float = 0.0) -> str:
    from sources.formats import load_format
    from sources.publish import publish
    from sources.replay import read_export, report_text

    batch = read_export(file, load_format(fmt_name), cases=True)  # requests + case lifecycle
    # requests first: the worker opens each case from its request, and lifecycle events that
    # reach the case agent before that are recorded as illegal (the case is rebuilt right
    # when the accept arrives, but the first outcome stays in case_events)
    stats = [
        publish(
            [e for e in batch.emissions if (e.stream == "case") == lifecycle],
            topic_map(settings),
            settings.bootstrap_servers,
            speed=speed or None,
            max_rate=None,
        ).as_dict()
        for lifecycle in (False, True)
    ]
    return f"{report_text(batch.report)}\npublished requests: {stats[0]}\nlifecycle: {stats[1]}"
