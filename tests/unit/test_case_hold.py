"""Lifecycle events that reach the case agent before their case's accept are held and
applied when it opens (no illegal rows whatever the arrival order); an event whose case
never opens is recorded as illegal once, after the hold time; held events survive a
restart (rebuilt from the store)."""

import asyncio
import json
import random
import time
from datetime import timedelta

from core.settings import REPO_ROOT, Settings
from gridpulse.store import store_layout, store_schema
from sinks.clickhouse.backend import ChdbBackend
from streams.case_agent import CaseRuntime
from streams.pipeline import Message
from tests.unit.test_case_envelopes import NOW, _opened

HOLD_S = 60.0


def _runtime(settings: Settings, backend: ChdbBackend) -> CaseRuntime:
    return CaseRuntime(settings, settings.city, backend, store_layout(settings), None)


def _register(case_id: str, event_id: str, seconds_after: float) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "type": "case.event",
            "event_id": event_id,
            "case_id": case_id,
            "occurred_at": (NOW - timedelta(seconds=60 - seconds_after)).isoformat(),
            "action": "register",
        }
    ).encode()


def _outcomes(backend: ChdbBackend, case_id: str) -> list[tuple]:
    return [
        tuple(r)
        for r in backend.rows_sync(
            f"SELECT event_id, outcome, src_offset FROM {backend.db}.case_events "
            f"WHERE case_id = '{case_id}' ORDER BY src_offset, outcome, event_id"
        )
    ]


def test_early_events_wait_for_their_case_and_orphans_become_illegal_once(tmp_path) -> None:
    settings = Settings(
        city_file=REPO_ROOT / "tests" / "fixtures" / "tiny_city.yaml",
        sla={"hold_unopened_seconds": HOLD_S},
    )
    backend = ChdbBackend(tmp_path / "chdb")
    try:
        _run(settings, backend)
    finally:
        backend.close_sync()


def _run(settings: Settings, backend: ChdbBackend) -> None:
    backend.migrate_sync(store_schema(settings))
    topic = settings.topics.case
    (case_id, accept, _), (orphan_id, _, _) = _opened(2, random.Random(5))
    early = _register(case_id, "reg-early", 10)
    orphan = _register(orphan_id, "reg-orphan", 10)
    t = NOW.timestamp()

    async def first_worker() -> CaseRuntime:
        runtime = _runtime(settings, backend)
        await runtime.handle([Message(topic, 0, 0, t, early), Message(topic, 0, 1, t, orphan)])
        assert set(runtime.held) == {case_id, orphan_id}
        await runtime.handle([Message(topic, 0, 2, t, accept)])
        assert set(runtime.held) == {orphan_id}
        return runtime

    asyncio.run(first_worker())
    assert _outcomes(backend, case_id) == [
        ("reg-early", "held", 0),
        (json.loads(accept)["event_id"], "applied", 2),
        ("reg-early", "applied", 2),
    ]

    async def restarted() -> CaseRuntime:
        runtime = _runtime(settings, backend)
        await runtime.ensure_loaded({(topic, 0)})
        assert set(runtime.held) == {orphan_id}  # rebuilt from the store, the opened one not
        assert runtime.book.states[case_id].stage == "registered"
        now = time.time()
        assert await runtime.expire_held(now) == 0  # not due yet
        assert await runtime.expire_held(now + HOLD_S + 5) == 1
        assert await runtime.expire_held(now + 3 * HOLD_S) == 0
        return runtime

    asyncio.run(restarted())
    assert _outcomes(backend, orphan_id) == [
        ("reg-orphan", "held", 1),
        ("reg-orphan", "illegal", 1),
    ]

    async def after_expiry() -> None:
        runtime = _runtime(settings, backend)
        await runtime.ensure_loaded({(topic, 0)})
        assert runtime.held == {}

    asyncio.run(after_expiry())
    illegal = backend.rows_sync(
        f"SELECT count() FROM {backend.db}.case_events WHERE outcome = 'illegal'"
    )
    assert int(illegal[0][0]) == 1
