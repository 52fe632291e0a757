"""The Faust consumer takes its fetch wait from the settings (Faust hard-codes 1 500 ms)."""

import asyncio

import pytest

from streams.transport import App


@pytest.mark.parametrize("wait_ms", [25, 1500])
def test_group_consumer_uses_configured_fetch_wait(wait_ms: int) -> None:
    async def build() -> int:
        app = App("t-transport", broker="kafka://127.0.0.1:1", fetch_max_wait_ms=wait_ms)
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        return consumer._fetch_max_wait_ms

    assert asyncio.run(build()) == wait_ms


def test_default_app_keeps_fausts_wait() -> None:
    async def build() -> int:
        app = App("t-transport-default", broker="kafka://127.0.0.1:1")
        return app.consumer._thread._create_worker_consumer(app.transport)._fetch_max_wait_ms

    assert asyncio.run(build()) == 1500
