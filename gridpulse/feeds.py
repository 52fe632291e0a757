"""What ``gridpulse simulate`` and ``gridpulse replay`` do: build emissions, publish them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import Settings

if TYPE_CHECKING:
    from sources.replay import ReplayBatch


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


class ReplayMismatch(ValueError):
    """The format and the city disagree: publishing would only fill the dead-letter topic."""


def prepare_replay(settings: Settings, file: str, fmt_name: str) -> tuple[ReplayBatch, list[str]]:
    """Read an export against the configured city: the batch and what makes the format and
    the city disagree (categories the city lacks, grid codes of which it knows none)."""
    from sources.cityimport import pairing_problems
    from sources.formats import load_format
    from sources.replay import grid_problems, read_export

    fmt = load_format(fmt_name)
    city = settings.city
    batch = read_export(file, fmt, cases=True, city=city)  # requests + case lifecycle
    return batch, pairing_problems(fmt, city) + grid_problems(batch.report, city)


def replay(
    settings: Settings, file: str, fmt_name: str, speed: float = 0.0, *, dry_run: bool = False
) -> str:
    """Check an export against the city, then (unless ``dry_run``) publish it; the report.

    Raises ``ReplayMismatch`` on a format/city disagreement before anything is published and
    ``sources.publish.BrokerUnavailable`` when no broker answers."""
    from sources.publish import check_broker, publish
    from sources.replay import report_text

    batch, problems = prepare_replay(settings, file, fmt_name)
    text = report_text(batch.report)
    listed = "".join(f"\n  - {p}" for p in problems)
    if dry_run and problems:
        raise ReplayMismatch(f"{text}\nformat/city problems:{listed}\ndry run: nothing published")
    if dry_run:
        return f"{text}\nformat and city agree\ndry run: nothing published"
    if problems:
        raise ReplayMismatch(f"{text}\nnot published, the format and the city disagree:{listed}")
    check_broker(settings.bootstrap_servers)
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
    return f"{text}\npublished requests: {stats[0]}\nlifecycle: {stats[1]}"
