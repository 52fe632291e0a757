"""The sink's core promise on the real embedded engine: whatever the batch boundaries,
redeliveries and crashes between table inserts, every table ends up exact."""

import asyncio
import itertools
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridpulse.settings import REPO_ROOT, Settings
from sinks.base.sink import BatchSink, RetryPolicy
from sinks.clickhouse.backend import ChdbBackend
from streams.events import HotlineRequest, SupervisorReport, encode
from streams.pipeline import Message, Normalizer, build_tables, schema_settings

SETTINGS = Settings(city_file=REPO_ROOT / "tests" / "fixtures" / "tiny_city.yaml")
CITY = SETTINGS.city
GRIDS = [g.code for g in CITY.iter_grids()]
T0 = datetime(2025, 5, 6, 9, 0, tzinfo=UTC)
_db = itertools.count()


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    be = ChdbBackend(tmp_path_factory.mktemp("chdb"))
    yield be
    be.close_sync()


def make_messages(rng: random.Random, n: int) -> list[Message]:
    """n records over 2 partitions; some late, some malformed."""
    out, offsets = [], [0, 0]
    for i in range(n):
        part = rng.randrange(2)
        occurred = T0 + timedelta(seconds=rng.randrange(0, 900))
        delay = rng.choice([1, 5, 30, 400])  # 400 s > 120 s grace: late for its minute
        if rng.random() < 0.05:
            value = b"{broken"
        elif rng.random() < 0.5:
            value = encode(SupervisorReport(
                event_id=f"e{i}", occurred_at=occurred, report_id=f"r{i}",
                category=rng.choice(["sanitation.overflowing_bin", "sanitation.exposed_garbage"]),
                grid=rng.choice(GRIDS), reporter_id="x"))
        else:
            value = encode(HotlineRequest(
                event_id=f"e{i}", occurred_at=occurred, request_id=f"h{i}", channel="phone",
                category="disputes.neighbour", grid=rng.choice(GRIDS)))
        topic = SETTINGS.topics.inspector if b"inspector" in value else SETTINGS.topics.hotline
        out.append(Message(topic, part, offsets[part], (occurred + timedelta(seconds=delay))
                           .timestamp(), value))
        offsets[part] += 1
    # consumption order: per partition in offset order, partitions interleaved
    return out


def expected(messages):
    norm = Normalizer(SETTINGS, CITY)
    batch = norm.batch(messages)
    ev = batch.frames["events"]
    on_time, late = Counter(), Counter()
    for t, r, g, sub in zip(ev.event_time, ev.record_time, ev.grid_code, ev.subcategory,
                            strict=True):
        minute = int(t) // 60 * 60
        (late if r > minute + 60 + 120 else on_time)[(minute, g, sub)] += 1
    return on_time, late, len(batch.dead), len(ev)


async def replay(backend, messages, plan):
    """Deliver ``messages`` in chunks; each step may crash after k of the tables and rewind."""
    tables = build_tables(SETTINGS, CITY)
    sink = BatchSink(backend, tables, RetryPolicy(0.01, 0.05))
    norm = Normalizer(SETTINGS, CITY)
    pos = 0
    for size, crash_after, rewind in plan:
        if pos >= len(messages):
            break
        chunk = messages[pos:pos + size]
        batch = norm.batch(chunk)
        if crash_after is None:
            await sink.write(batch.checkpoint, batch.frames)
            pos += len(chunk)
        else:  # crash midway: some tables have the batch, the rest do not
            from sinks.base.table import CheckpointInfo
            info = CheckpointInfo(batch.checkpoint.ingested_at)
            for table in tables[:crash_after]:
                await sink._write_table(table, batch.checkpoint, batch.frames[table.source], info)
            sink = BatchSink(backend, tables, RetryPolicy(0.01, 0.05))  # restarted worker
            pos = max(0, pos - rewind)  # redelivery from an older committed offset
    while pos < len(messages):
        batch = norm.batch(messages[pos:pos + 50])
        await sink.write(batch.checkpoint, batch.frames)
        pos += 50


def rows(backend, sql):
    return backend.rows_sync(sql.format(db=backend.db))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000),
       plan=st.lists(st.tuples(st.integers(1, 80), st.one_of(st.none(), st.integers(0, 8)),
                               st.integers(0, 60)), min_size=1, max_size=12))
def test_exact_under_redelivery_and_partial_writes(backend, seed, plan):
    backend.db = f"exact{next(_db)}"
    backend.migrate_sync(schema_settings(SETTINGS))
    rng = random.Random(seed)
    messages = make_messages(rng, 300)
    # interleave partitions deterministically but not in offset-sorted global order
    want_on, want_late, want_dead, want_events = expected(messages)
    asyncio.run(replay(backend, messages, plan))

    got_on = Counter({(int(datetime.fromisoformat(b).replace(tzinfo=UTC).timestamp()) if
                       isinstance(b, str) else int(b.timestamp()), g, s): int(n)
                      for b, g, s, n in rows(backend,
        "SELECT bucket, grid_code, subcategory, sum(n) FROM {db}.event_counts_1m "
        "WHERE ledger_partition < 0 GROUP BY bucket, grid_code, subcategory HAVING sum(n) > 0")})
    assert got_on == want_on
    [[late_total]] = rows(backend, "SELECT sum(n) FROM {db}.late_event_counts "
                                   "WHERE granularity = '1m' AND ledger_partition < 0")
    assert int(late_total or 0) == sum(want_late.values())
    [[n_events, distinct]] = rows(backend, "SELECT count(), uniqExact(src_partition, src_offset)"
                                           " FROM {db}.events")
    assert int(n_events) == int(distinct) == want_events
    [[n_dead]] = rows(backend, "SELECT count() FROM {db}.dead_letters")
    assert int(n_dead) == want_dead
    # every rollup holds the same on-time + late total as the raw table
    for w in ("5m", "1h", "1d"):
        [[on]] = rows(backend, f"SELECT sum(n) FROM {{db}}.event_counts_{w} "
                               "WHERE ledger_partition < 0")
        [[lt]] = rows(backend, "SELECT sum(n) FROM {db}.late_event_counts "
                               f"WHERE granularity = '{w}' AND ledger_partition < 0")
        assert int(on or 0) + int(lt or 0) == want_events
