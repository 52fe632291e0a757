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


def test_consumer_options_keep_fausts_folder_under_the_given_dir(tmp_path) -> None:
    from core.settings import WorkerSettings
    from streams.transport import consumer_options

    w = WorkerSettings(fetch_max_wait_ms=40, session_timeout_seconds=9.0)
    datadir = tmp_path / "state" / "faust" / "gp"
    app = App("t-options", broker="kafka://127.0.0.1:1", **consumer_options(w, datadir))
    assert datadir.parent.is_dir()  # Faust itself creates only the last level
    assert app.conf.datadir == datadir
    assert app.fetch_max_wait_ms == 40
    assert app.conf.broker_session_timeout == 9.0
    assert app.conf.consumer_auto_offset_reset == "earliest"
