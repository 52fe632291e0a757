"""Session-wide real services: one in-memory Tansu broker and one clickhouse-server.

Started lazily (only when a test asks for them) and always stopped at the end of the session.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Make `tests.services` and `infra` importable however pytest was launched.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.services import running_broker, running_clickhouse_server  # noqa: E402


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address (``127.0.0.1:PORT``) of a memory-mode Tansu with the gridpulse topics."""
    with running_broker(tmp_path_factory.mktemp("broker")) as (bootstrap, _stack):
        yield bootstrap


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``clickhouse://default:@127.0.0.1:PORT/default`` of a private clickhouse-server 18.16."""
    with running_clickhouse_server(tmp_path_factory.mktemp("clickhouse")) as (url, _server):
        yield url
