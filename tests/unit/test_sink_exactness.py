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

from core.events import HotlineRequest, SupervisorReport, encode
from core.settings import REPO_ROOT, Settings
from gridpulse.store import store_layout, store_schema
from sinks.base import LedgerKind, SinkTable
from sinks.base.sink import BatchSink, RetryPolicy, route_groups
from sinks.base.table import CheckpointInfo, Route
from sinks.clickhouse.backend import ChdbBackend
from sinks.clickhouse.tables import COUNTS_ROUTE
from streams.pipeline import Message, Normalizer
from streams.pipeline import build_tables as _build_tables


def build_tables(settings, city):
    return _build_tables(settings, city, store_layout(settings))


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
            value = encode(
                SupervisorReport(
                    event_id=f"e{i}",
                    occurred_at=occurred,
                    report_id=f"r{i}",
                    category=rng.choice(
                        ["sanitation.overflowing_bin", "sanitation.exposed_garbage"]
                    ),
                    grid=rng.choice(GRIDS),
                    reporter_id="x",
                )
            )
        else:
            value = encode(
                HotlineRequest(
                    event_id=f"e{i}",
                    occurred_at=occurred,
                    request_id=f"h{i}",
                    channel="phone",
                    category="disputes.neighbour",
                    grid=rng.choice(GRIDS),
                )
            )
        topic = SETTINGS.topics.inspector if b"inspector" in value else SETTINGS.topics.hotline
        out.append(
            Message(
                topic, part, offsets[part], (occurred + timedelta(seconds=delay)).timestamp(), value
            )
        )
        offsets[part] += 1
    # consumption order: per partition in offset order, partitions interleaved
    return out


def expected(messages):
    norm = Normalizer(SETTINGS, CITY)
    batch = norm.batch(messages)
    ev = batch.frames["events"]
    on_time, late = Counter(), Counter()
    for t, r, g, sub in zip(
        ev.event_time, ev.record_time, ev.grid_code, ev.subcategory, strict=True
    ):
        minute = int(t) // 60 * 60
        (late if r > minute + 60 + 120 else on_time)[(minute, g, sub)] += 1
    return on_time, late, len(batch.dead), len(ev)


async def replay(backend, messages, plan, settings=SETTINGS):
    """Deliver ``messages`` in chunks; a step may crash having written any subset of the
    tables (bit i of ``crashed`` set: table i holds the chunk; a routed insert that fails
    part-way leaves any subset of its tables written) and rewind."""
    tables = build_tables(settings, CITY)
    sink = BatchSink(backend, tables, RetryPolicy(0.01, 0.05))
    norm = Normalizer(settings, CITY)
    pos = 0
    for size, crashed, rewind in plan:
        if pos >= len(messages):
            break
        chunk = messages[pos : pos + size]
        batch = norm.batch(chunk)
        if crashed is None:
            await sink.write(batch.checkpoint, batch.frames)
            pos += len(chunk)
        else:  # crash midway: some tables have the batch, the rest do not
            info = CheckpointInfo(batch.checkpoint.ingested_at)
            for i, table in enumerate(tables):
                if crashed >> i & 1:
                    await sink._write_table(
                        table, batch.checkpoint, batch.frames[table.source], info
                    )
            sink = BatchSink(backend, tables, RetryPolicy(0.01, 0.05))  # restarted worker
            pos = max(0, pos - rewind)  # redelivery from an older committed offset
    while pos < len(messages):
        batch = norm.batch(messages[pos : pos + 50])
        await sink.write(batch.checkpoint, batch.frames)
        pos += 50


def rows(backend, sql):
    return backend.rows_sync(sql.format(db=backend.db))


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 10_000),
    plan=st.lists(
        st.tuples(
            st.integers(1, 80), st.one_of(st.none(), st.integers(0, 127)), st.integers(0, 60)
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_exact_under_redelivery_and_partial_writes(backend, seed, plan):
    backend.db = f"exact{next(_db)}"
    backend.migrate_sync(store_schema(SETTINGS))
    rng = random.Random(seed)
    messages = make_messages(rng, 300)
    asyncio.run(replay(backend, messages, plan))
    check_tables(backend, messages)


def check_tables(backend, messages):
    """Every table of ``backend.db`` holds exactly what ``messages`` give."""
    want_on, want_late, want_dead, want_events = expected(messages)
    got_on = Counter(
        {
            (
                int(datetime.fromisoformat(b).replace(tzinfo=UTC).timestamp())
                if isinstance(b, str)
                else int(b.timestamp()),
                g,
                s,
            ): int(n)
            for b, g, s, n in rows(
                backend,
                "SELECT bucket, grid_code, subcategory, sum(n) FROM {db}.counts_1m "
                "GROUP BY bucket, grid_code, subcategory HAVING sum(n) > 0",
            )
        }
    )
    assert got_on == want_on
    [[late_total]] = rows(
        backend,
        "SELECT sum(n) FROM {db}.late_event_counts "
        "WHERE granularity = '1m' AND ledger_partition < 0",
    )
    assert int(late_total or 0) == sum(want_late.values())
    [[n_events, distinct]] = rows(
        backend, "SELECT count(), uniqExact(src_partition, src_offset) FROM {db}.events"
    )
    assert int(n_events) == int(distinct) == want_events
    [[n_dead]] = rows(backend, "SELECT count() FROM {db}.dead_letters")
    assert int(n_dead) == want_dead
    # every rollup holds the same on-time + late total as the raw table
    for w in ("5m", "1h", "1d"):
        [[on]] = rows(
            backend, f"SELECT sum(n) FROM {{db}}.event_counts_{w} WHERE ledger_partition < 0"
        )
        [[lt]] = rows(
            backend,
            "SELECT sum(n) FROM {db}.late_event_counts "
            f"WHERE granularity = '{w}' AND ledger_partition < 0",
        )
        assert int(on or 0) + int(lt or 0) == want_events


class FailingRoute:
    """The real engine, but an insert into the counts route reaches only the tables in
    ``reach`` (as if the store failed after routing some of the rows), then fails, ``fails``
    times; every other insert goes through."""

    def __init__(self, backend, reach, fails):
        self.backend, self.reach, self.fails = backend, reach, fails
        self.calls: list[str] = []

    async def insert(self, table, frame):
        self.calls.append(table)
        if table == COUNTS_ROUTE.name and self.fails:
            self.fails -= 1
            part = frame[frame[COUNTS_ROUTE.column].isin(self.reach)]
            if len(part):
                await self.backend.insert(table, part)
            raise ConnectionError("simulated failure while routing count rows")
        await self.backend.insert(table, frame)

    async def read_ledger(self, table, kind):
        return await self.backend.read_ledger(table, kind)


@pytest.mark.parametrize(
    "reach",
    [
        (),
        ("event_counts_1m", "event_counts_1h"),
        ("event_counts_5m", "event_counts_1d", "late_event_counts"),
    ],
)
def test_a_routed_insert_failing_part_way_stays_exact(backend, reach):
    backend.db = f"exact{next(_db)}"
    backend.migrate_sync(store_schema(SETTINGS))
    messages = make_messages(random.Random(7), 300)
    store = FailingRoute(backend, reach, fails=2)
    sink = BatchSink(store, build_tables(SETTINGS, CITY), RetryPolicy(0.01, 0.05))
    norm = Normalizer(SETTINGS, CITY)

    async def run():
        for pos in range(0, len(messages), 100):
            batch = norm.batch(messages[pos : pos + 100])
            await sink.write(batch.checkpoint, batch.frames)

    asyncio.run(run())
    check_tables(backend, messages)
    # two failed routed inserts, each followed by one insert per count table the failure
    # did not reach (those it reached already hold the checkpoint); then one routed
    # insert per checkpoint for all five
    counts = {t.name for t in build_tables(SETTINGS, CITY) if t.route is not None}
    assert len(counts) == 5
    direct = [c for c in store.calls if c in counts]
    assert store.calls.count(COUNTS_ROUTE.name) == 3
    assert sorted(direct) == sorted([c for c in counts if c not in reach] * 2)


def test_per_table_inserts_stay_exact(backend):
    """``route_counts`` off (e.g. Distributed count tables): one insert per table."""
    backend.db = f"exact{next(_db)}"
    backend.migrate_sync(store_schema(SETTINGS))
    per_table = SETTINGS.model_copy(
        update={"sink": SETTINGS.sink.model_copy(update={"route_counts": False})}
    )
    assert all(t.route is None for t in build_tables(per_table, CITY))
    messages = make_messages(random.Random(3), 300)
    asyncio.run(
        replay(backend, messages, [(70, None, 0), (40, 0b1010110, 30), (90, None, 0)], per_table)
    )
    check_tables(backend, messages)


def test_route_groups_keep_order_and_group_only_neighbours():
    r1, r2 = Route("in1", "target", ("target",)), Route("in2", "target", ("target",))
    t = [
        SinkTable(n, "events", (), LedgerKind.MAX, route=r)
        for n, r in [
            ("a", None),
            ("b", r1),
            ("c", r1),
            ("d", None),
            ("e", r1),
            ("f", r2),
            ("g", r2),
        ]
    ]
    assert [[x.name for x in g] for g in route_groups(t)] == [
        ["a"],
        ["b", "c"],
        ["d"],
        ["e"],
        ["f", "g"],
    ]


def test_upgrade_to_routed_counts_keeps_counting_exactly(backend, monkeypatch):
    """A store written before migration 3 (one insert per count table) goes on exactly
    with routed inserts once the worker of the new version applies it at start."""
    from sinks.clickhouse import schema

    backend.db = f"exact{next(_db)}"
    messages = make_messages(random.Random(5), 300)
    old = SETTINGS.model_copy(
        update={"sink": SETTINGS.sink.model_copy(update={"route_counts": False})}
    )
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        assert backend.migrate_sync(store_schema(SETTINGS)) == [1, 2]
    asyncio.run(replay(backend, messages[:150], [(60, None, 0), (90, None, 0)], old))
    assert backend.migrate_sync(store_schema(SETTINGS)) == [
        m.version for m in schema.MIGRATIONS[2:]
    ]
    # the new worker resumes from an older committed offset: redelivery across the upgrade
    asyncio.run(replay(backend, messages[100:], [(80, None, 0), (40, 0b0110000, 20)]))
    check_tables(backend, messages)
