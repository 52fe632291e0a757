"""Sensor rules in the worker (``streams.sensor_warnings``) on the real embedded engine: a
water level crossing a band warns once; a restarted worker rebuilds from the stored readings
without publishing it again; a silent sensor fires from the timer, never during a backlog."""

import asyncio
import json

import pandas as pd

from core.records import EVENT_COLUMNS
from core.settings import REPO_ROOT, Settings
from gridpulse.store import store_layout, store_schema
from sinks.clickhouse.backend import ChdbBackend
from streams.pipeline import events_frame
from streams.sensor_warnings import SensorWatch
from streams.warnings import WarningOutlet

T0 = 1_790_000_000  # an epoch second
SENSOR = "S-wl-1"
STEP = 300  # the water level's expected interval


def readings(values: list[float], first_offset: int, topic: str) -> pd.DataFrame:
    rows = []
    for i, value in enumerate(values):
        at = T0 + (first_offset + i) * STEP
        row = dict.fromkeys(EVENT_COLUMNS, "")
        row.update(
            event_time=float(at),
            record_time=float(at),
            source="sensor",
            event_id=f"wl-{first_offset + i}",
            grid_code="T01S01C001G01",
            sensor_id=SENSOR,
            value=value,
            unit="m",
            lon=120.005,
            lat=30.005,
            src_topic=topic,
            src_partition=0,
            src_offset=first_offset + i,
            src_index=0,
        )
        rows.append(tuple(row[c] for c in EVENT_COLUMNS))
    return events_frame(rows)


def test_sensor_rules_warn_once_survive_a_restart_and_wait_out_a_backlog(tmp_path) -> None:
    settings = Settings(city_file=REPO_ROOT / "tests" / "fixtures" / "tiny_city.yaml")
    backend = ChdbBackend(tmp_path / "chdb")
    try:
        asyncio.run(_run(settings, backend))
    finally:
        backend.close_sync()


async def _run(settings: Settings, backend: ChdbBackend) -> None:
    backend.migrate_sync(store_schema(settings))
    layout = store_layout(settings)
    topic = settings.topics.sensor
    sent: list[dict] = []

    async def send(topic_name, key, value, ts, headers):
        sent.append(json.loads(value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    progress_at = [0]

    def progress(now: float) -> list[tuple[str, int, int, bool]]:
        return [(topic, 0, progress_at[0], False)]

    def watch() -> SensorWatch:
        return SensorWatch(
            settings, backend, WarningOutlet(settings, backend, layout, send), progress
        )

    first = readings([0.05, 0.06, 0.05, 0.35, 0.36], 0, topic)
    stored = first.assign(ingested_at=T0, late=0)
    backend.insert_sync("events", stored.reindex(columns=list(layout.table("events").columns)))
    w1 = watch()
    await w1.on_stored(first)
    thresholds = [w for w in sent if w["kind"] == "sensor_threshold"]
    assert [(w["revision"], w["status"], w["severity"]) for w in thresholds] == [
        (0, "firing", "major")
    ]
    assert thresholds[0]["sensor_id"] == SENSOR
    assert thresholds[0]["where"]["grid_code"] == "T01S01C001G01"
    await w1.on_stored(first)  # redelivered: nothing new
    assert len([w for w in sent if w["kind"] == "sensor_threshold"]) == 1

    published = len(sent)
    w2 = watch()  # a restarted worker: rebuilt from the stored readings and warnings
    await w2.on_stored(readings([0.37], 5, topic))
    assert len(sent) == published, sent[published:]

    last = T0 + 5 * STEP
    progress_at[0] = last + 2 * STEP  # a backlog: the partition is read only this far
    assert await w2.tick(last + 100 * STEP) == []
    progress_at[0] = last + 3 * STEP + 1
    silent = await w2.tick(last + 100 * STEP)
    assert [(w.kind, w.sensor_id, w.status) for w in silent] == [
        ("sensor_silent", SENSOR, "firing")
    ]
    assert await w2.tick(last + 200 * STEP) == []
    rows = backend.rows_sync(
        f"SELECT kind, revision, count() FROM {backend.db}.warning_log GROUP BY kind, revision"
    )
    assert all(int(n) == 1 for _, _, n in rows)
    assert {(k, int(r)) for k, r, _ in rows} >= {("sensor_threshold", 0), ("sensor_silent", 0)}


def test_the_seasonal_method_flags_an_unusual_value_inside_the_bands(tmp_path) -> None:
    import math
    import random

    settings = Settings(city_file=REPO_ROOT / "tests" / "fixtures" / "tiny_city.yaml")
    backend = ChdbBackend(tmp_path / "chdb")
    try:
        backend.migrate_sync(store_schema(settings))
        layout = store_layout(settings)
        sent: list[dict] = []

        async def send(topic_name, key, value, ts, headers):
            sent.append(json.loads(value))
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

        rng = random.Random(4)
        days = 3
        n = days * 86_400 // STEP
        values = [
            0.06 + 0.02 * math.sin(2 * math.pi * i * STEP / 86_400) + rng.gauss(0, 0.002)
            for i in range(n)
        ]
        values.append(0.13)  # below the first band (0.15) and the rate limit, far off its pattern
        frame = readings(values, 0, settings.topics.sensor)

        async def run() -> None:
            watch = SensorWatch(
                settings,
                backend,
                WarningOutlet(settings, backend, layout, send),
                lambda now: [],
            )
            await watch.on_stored(frame)

        asyncio.run(run())
        anomalies = [w for w in sent if w["kind"] == "sensor_anomaly"]
        assert [(w["sensor_id"], w["status"], w["observed"]) for w in anomalies] == [
            (SENSOR, "firing", 0.13)
        ]
        assert not [w for w in sent if w["kind"] == "sensor_threshold"]
    finally:
        backend.close_sync()
