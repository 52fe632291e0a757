"""Fuzzed input through the real worker: every message is either stored or dead-lettered
with a reason, and the worker keeps going."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from core.city import load_city
from sources.simulator import SimConfig, Simulator
from tests.integration.conftest import publish_recorded
from tests.integration.harness import PipelineEnv, WorkerProc, expect, wait_processed
from tests.integration.test_pipeline import SAMPLE, START

pytestmark = pytest.mark.integration


def mutate(rng: random.Random, payload: bytes) -> bytes:
    """One random corruption: flip bytes, truncate, splice, or swap a field's value."""
    choice = rng.randrange(5)
    b = bytearray(payload)
    if choice == 0 and b:
        for _ in range(rng.randint(1, 5)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif choice == 1:
        b = b[: rng.randrange(len(b) + 1)]
    elif choice == 2:
        b = b + bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
    elif choice == 3:
        for old, new in (
            (b'"occurred_at":"', b'"occurred_at":"99'),
            (b'"v":1', b'"v":2'),
            (b'"category":"', b'"category":"x'),
            (b'"value":', b'"value":-1e9'),
        ):
            if old in b:
                b = b.replace(old, new, 1)
                break
    else:
        b = bytearray(rng.randbytes(rng.randint(0, 200)))
    return bytes(b)


def test_fuzzed_messages_are_stored_or_dead_lettered(broker, tmp_path):
    city = load_city(SAMPLE)
    rng = random.Random(2026)
    emissions = list(
        Simulator(
            city, SimConfig(seed=21, start=START, duration_s=600, bad_fraction=0.0, envelopes=False)
        )
    )
    fuzzed = [
        replace(e, payload=mutate(rng, e.payload), message=None, bad_kind="fuzz")
        if rng.random() < 0.3
        else e
        for e in emissions
    ]
    n_fuzzed = sum(1 for e in fuzzed if e.bad_kind == "fuzz")
    tail = list(
        Simulator(
            city, SimConfig(seed=22, start=START, duration_s=300, bad_fraction=0.0, envelopes=False)
        )
    )
    penv = PipelineEnv(broker, f"chdb://{tmp_path}/chdb", SAMPLE, tmp_path / "p")
    worker = WorkerProc(penv).start().wait_ready()
    try:
        sent, ends = publish_recorded(penv, fuzzed)
        sent_tail, ends_tail = publish_recorded(penv, tail)
        wait_processed(
            [worker], {**ends, **{k: max(v, ends.get(k, -1)) for k, v in ends_tail.items()}}
        )
        assert worker.alive()
        stored = {
            (t, int(p), int(o))
            for t, p, o in worker.query(
                "SELECT DISTINCT src_topic, src_partition, src_offset FROM gridpulse.events "
                "UNION ALL SELECT DISTINCT src_topic, src_partition, src_offset "
                "FROM gridpulse.case_events"
            )
        }
        dead = {
            (t, int(p), int(o)): (code, reason)
            for t, p, o, code, reason in worker.query(
                "SELECT src_topic, src_partition, src_offset, reason_code, reason "
                "FROM gridpulse.dead_letters WHERE src_index = -1"
            )
        }
        for s in sent + sent_tail:
            key = (s.topic, s.partition, s.offset)
            assert (key in stored) != (key in dead), f"{key} must be stored xor dead-lettered"
            if key in dead:
                assert all(dead[key]), f"{key} dead-lettered without a reason"
        assert n_fuzzed > 100 and len(dead) >= n_fuzzed * 0.8
        # the clean tail published after the junk is stored completely
        per_message = {
            (t, int(p), int(o)): int(n)
            for t, p, o, n in worker.query(
                "SELECT src_topic, src_partition, src_offset, count() FROM gridpulse.events "
                "GROUP BY src_topic, src_partition, src_offset"
            )
        }
        tail_rows = sum(per_message.get((s.topic, s.partition, s.offset), 0) for s in sent_tail)
        assert tail_rows == expect(city, sent_tail).events
    finally:
        worker.stop()
