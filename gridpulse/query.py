"""``gridpulse query``: read-only SQL against the configured ClickHouse, TSV out.

The embedded engine admits one process per data folder, and while a worker runs that process
is the worker: queries then go through the worker's ``/query/`` view. Without a worker the
folder is opened directly. A server target is always queried directly.
"""

from __future__ import annotations

import httpx

from core.settings import Settings
from sinks.clickhouse.backend import check_read_only, connect


class QueryError(RuntimeError):
    pass


def worker_url(settings: Settings) -> str:
    return f"http://{settings.worker.web_host}:{settings.worker.web_port}"


def via_worker(settings: Settings, sql: str, timeout: float = 60.0) -> str | None:
    """The worker's answer, or None when no worker listens."""
    try:
        r = httpx.post(f"{worker_url(settings)}/query/", content=sql.encode(), timeout=timeout)
    except httpx.ConnectError:
        return None
    if r.status_code != 200:
        raise QueryError(r.text.strip())
    return r.text


def run_query(settings: Settings, sql: str) -> str:
    sql = check_read_only(sql)
    if settings.clickhouse.startswith("chdb:"):
        answer = via_worker(settings, sql)
        if answer is not None:
            return answer
    try:
        backend = connect(settings.clickhouse)
    except Exception as exc:
        raise QueryError(
            f"cannot open {settings.clickhouse}: {exc}. If a worker holds the embedded engine, "
            f"make sure its web view answers on {worker_url(settings)}."
        ) from exc
    try:
        return backend.tsv_sync(sql)
    finally:
        backend.close_sync()
