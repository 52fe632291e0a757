"""Derived accepts travel as one envelope per case-topic partition; the case agent applies
each event of an envelope as if it had come alone, and dead-letters single bad ones."""

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from kafka.partitioner.default import murmur2

from core.events import CaseEnvelope, decode
from core.settings import REPO_ROOT, Settings
from gridpulse.store import store_layout, store_schema
from sinks.clickhouse.backend import ChdbBackend
from streams.case_agent import CaseRuntime
from streams.pipeline import Message, case_envelopes, case_partition, opening_event

NOW = datetime.now(UTC).replace(microsecond=0)


def _java_partition(key: bytes, n: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % n


@pytest.mark.parametrize(
    ("key", "expected"),
    # org.apache.kafka's default partitioner over 1 000 partitions (Java client values)
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566)],
)
def test_case_partition_matches_the_java_client(key: bytes, expected: int) -> None:
    assert case_partition(key.decode(), 1000) == expected


def test_case_partition_matches_kafka_python_keyed_sends() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        cid = f"{rng.choice('HI')}-{rng.randrange(10**12)}"
        for n in (1, 2, 4, 12):
            assert case_partition(cid, n) == _java_partition(cid.encode(), n)


def _opened(n: int, rng: random.Random) -> list[tuple[str, bytes, float]]:
    out = []
    for i in range(n):
        row = {
            "source": rng.choice(["inspector", "hotline"]),
            "ref_id": f"r{i}",
            "event_time": NOW.timestamp() - 60,
            "record_time": NOW.timestamp() - rng.random(),
            "subcategory": "sanitation.overflowing_bin",
            "grid_code": "T01S01C001G01",
        }
        out.append(opening_event(row, "src", i % 3, 1000 + i))
    return out


def test_envelopes_carry_every_accept_once_on_its_partition() -> None:
    opened = _opened(500, random.Random(1))
    envelopes = case_envelopes(opened, 4)
    seen = []
    for part, payload, record_s in envelopes:
        env = decode("case", payload)
        assert isinstance(env, CaseEnvelope)
        ids = [ev.case_id for ev in env.events]
        assert all(case_partition(cid, 4) == part for cid in ids)
        mine = [o for o in opened if case_partition(o[0], 4) == part]
        assert ids == [o[0] for o in mine]  # in checkpoint order
        assert record_s == max(o[2] for o in mine)
        seen += ids
    assert sorted(seen) == sorted(o[0] for o in opened)
    assert len({p for p, _, _ in envelopes}) == len(envelopes)
    assert case_envelopes([], 4) == []


def test_case_agent_applies_envelope_events_and_dead_letters_bad_ones(tmp_path) -> None:
    settings = Settings(
        city_file=REPO_ROOT / "tests" / "fixtures" / "tiny_city.yaml",
        clickhouse=f"chdb://{tmp_path}",
    )
    backend = ChdbBackend(tmp_path / "chdb")
    backend.migrate_sync(store_schema(settings))
    sent: list = []

    async def send(*args):
        sent.append(args)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    runtime = CaseRuntime(settings, settings.city, backend, store_layout(settings), send)
    opened = _opened(3, random.Random(2))
    bad = json.loads(opened[1][1])
    bad["grid"] = "NO-SUCH-GRID"
    events = [json.loads(opened[0][1]), bad, json.loads(opened[2][1])]
    payload = json.dumps({"v": 1, "type": "case.envelope", "events": events}).encode()
    topic = settings.topics.case

    async def run() -> list[tuple]:
        dead = await runtime.handle([Message(topic, 0, 0, NOW.timestamp(), payload)])
        again = await runtime.handle([Message(topic, 0, 0, NOW.timestamp(), payload)])
        assert again == [] and runtime.stats["redelivered"] == 1
        return dead

    dead = asyncio.run(run())
    assert [(d[4], d[5]) for d in dead] == [(1, "unknown_grid")]  # src_index, reason code
    assert decode("case", dead[0][7]).case_id == bad["case_id"]
    assert set(runtime.book.states) == {events[0]["case_id"], events[2]["case_id"]}
    rows = backend.rows_sync(
        f"SELECT case_id, src_index, outcome FROM {backend.db}.case_events ORDER BY src_index"
    )
    assert rows == [(events[0]["case_id"], 0, "applied"), (events[2]["case_id"], 2, "applied")]
    assert backend.rows_sync(f"SELECT src_index, reason_code FROM {backend.db}.dead_letters") == [
        (1, "unknown_grid")
    ]
    backend.close_sync()


def test_old_single_case_events_still_apply(tmp_path) -> None:
    """A case event sent alone (by an external system) keeps working next to envelopes."""
    settings = Settings(city_file=REPO_ROOT / "tests" / "fixtures" / "tiny_city.yaml")
    backend = ChdbBackend(tmp_path / "chdb")
    backend.migrate_sync(store_schema(settings))
    runtime = CaseRuntime(settings, settings.city, backend, store_layout(settings), None)
    case_id, payload, _ = _opened(1, random.Random(3))[0]
    register = json.dumps(
        {
            "v": 1,
            "type": "case.event",
            "event_id": "reg-1",
            "case_id": case_id,
            "occurred_at": (NOW - timedelta(seconds=30)).isoformat(),
            "action": "register",
        }
    ).encode()
    env = b'{"v":1,"type":"case.envelope","events":[' + payload + b"]}"
    topic = settings.topics.case
    msgs = [
        Message(topic, 0, 0, NOW.timestamp(), env),
        Message(topic, 0, 1, NOW.timestamp(), register),
    ]
    assert asyncio.run(runtime.handle(msgs)) == []
    assert runtime.book.states[case_id].stage == "registered"
    backend.close_sync()
