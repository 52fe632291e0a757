"""Duplicate clusters and repeat complaints in the worker (``streams.report_warnings``) on the
real embedded engine: three reports of one problem within metres are one cluster warning, a
caller complaining twice is a repeat complaint; a restarted worker rebuilds from the stored
events without publishing either again."""

import asyncio
import json

from core.records import EVENT_COLUMNS
from core.settings import REPO_ROOT, Settings
from gridpulse.store import store_layout, store_schema
from sinks.clickhouse.backend import ChdbBackend
from streams.pipeline import events_frame
from streams.report_warnings import ReportWatch
from streams.warnings import WarningOutlet

GRID = "T01S01C001G01"


def report_rows(settings: Settings, now: int) -> list[tuple]:
    rows = []
    spots = [  # (source, topic, lon offset in degrees ~ 1 m = 1e-5, caller)
        ("inspector", settings.topics.inspector, 0.0, ""),
        ("inspector", settings.topics.inspector, 2e-4, ""),
        ("inspector", settings.topics.inspector, 3e-4, ""),
        ("hotline", settings.topics.hotline, 0.01, "caller-hash-1"),
        ("hotline", settings.topics.hotline, 0.02, "caller-hash-1"),
    ]
    for i, (source, topic, dlon, caller) in enumerate(spots):
        row = dict.fromkeys(EVENT_COLUMNS, "")
        row.update(
            event_time=float(now - 3000 + i * 300),
            record_time=float(now - 3000 + i * 300),
            source=source,
            event_id=f"r{i}",
            grid_code=GRID,
            category="sanitation",
            subcategory="sanitation.overflowing_bin",
            caller_hash=caller,
            value=float("nan"),
            lon=120.001 + dlon,
            lat=30.001,
            src_topic=topic,
            src_partition=0,
            src_offset=i,
            src_index=0,
        )
        rows.append(tuple(row[c] for c in EVENT_COLUMNS))
    return rows


def test_clusters_and_repeats_warn_once_and_survive_a_restart(tmp_path) -> None:
    settings = Settings(city_file=REPO_ROOT / "tests" / "fixtures" / "tiny_city.yaml")
    backend = ChdbBackend(tmp_path / "chdb")
    try:
        asyncio.run(_run(settings, backend))
    finally:
        backend.close_sync()


async def _run(settings: Settings, backend: ChdbBackend) -> None:
    import time

    backend.migrate_sync(store_schema(settings))
    layout = store_layout(settings)
    sent: list[dict] = []

    async def send(topic, key, value, ts, headers):
        sent.append(json.loads(value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def progress(now: float) -> list[tuple[str, int, int, bool]]:
        return [
            (settings.topics.inspector, 0, int(now), True),
            (settings.topics.hotline, 0, int(now), True),
        ]

    owned = {(settings.topics.inspector, 0), (settings.topics.hotline, 0)}
    rows = report_rows(settings, int(time.time()))
    frame = events_frame(rows)

    def store(part) -> None:
        stored = part.assign(ingested_at=int(time.time()), late=0)
        backend.insert_sync("events", stored.reindex(columns=list(layout.table("events").columns)))

    def watch() -> ReportWatch:
        outlet = WarningOutlet(settings, backend, layout, send)
        return ReportWatch(settings, backend, outlet, progress)

    first = watch()
    await first.ensure(set())  # nothing owned yet: nothing read
    head, rest = events_frame(rows[:1]), events_frame(rows[1:])
    store(head)
    await first.on_stored(head, owned)  # the first checkpoint: state read back from the store
    assert sent == []
    store(rest)
    await first.on_stored(rest, owned)  # then streamed
    kinds = sorted((w["kind"], w["revision"], w["status"]) for w in sent)
    assert ("duplicate_cluster", 0, "firing") in kinds
    assert ("repeat_complaint", 0, "firing") in kinds
    cluster = next(w for w in sent if w["kind"] == "duplicate_cluster")
    assert sorted(cluster["evidence"]) == ["r0", "r1", "r2"]
    assert all("caller-hash-1" not in json.dumps(w) for w in sent)  # no personal data
    published = len(sent)
    await first.on_stored(frame, owned)  # redelivered: nothing new
    assert len(sent) == published

    restarted = watch()
    await restarted.tick(time.time(), owned)  # rebuilt from the stored events
    assert len(sent) == published, sent[published:]
    rows = backend.rows_sync(
        f"SELECT kind, revision, count() FROM {backend.db}.warning_log GROUP BY kind, revision"
    )
    assert all(int(n) == 1 for _, _, n in rows)
