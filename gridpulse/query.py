"""``gridpulse query``: read-only SQL against the configured ClickHouse, TSV out (or the
statement's own ``FORMAT``).

The embedded engine admits one process per data folder, and while a worker runs that process
is the worker: queries then go through the worker's ``/query/`` view. Without a worker the
folder is opened directly. A server target is always queried directly. Either way the
engine runs the statement with ``readonly=1`` and the limits of ``settings.query``.
"""

from __future__ import annotations

import httpx

from core.settings import Settings
from sinks.clickhouse.backend import QueryLimits, check_read_only, connect


class QueryError(RuntimeError):
    pass


def worker_url(settings: Settings) -> str:
    return f"http://{settings.worker.web_host}:{settings.worker.web_port}"


def query_headers(settings: Settings) -> dict[str, str]:
    """What ``/query/`` asks of a caller: a JSON body, and the bearer token when set."""
    headers = {"Content-Type": "application/json"}
    if settings.worker.web_token is not None:
        headers["Authorization"] = f"Bearer {settings.worker.web_token.get_secret_value()}"
    return headers


def via_worker(settings: Settings, sql: str, timeout: float = 60.0) -> str | None:
    """The worker's answer, or None when no worker listens."""
    try:
        r = httpx.post(
            f"{worker_url(settings)}/query/",
            json={"sql": sql},
            headers=query_headers(settings),
            timeout=timeout,
        )
    except httpx.ConnectError:
        return None
    if r.status_code != 200:
        raise QueryError(r.text.strip())
    return r.text


def limits_of(settings: Settings) -> QueryLimits:
    q = settings.query
    return QueryLimits(q.max_result_rows, q.max_execution_seconds, q.max_memory_bytes)


def run_query(settings: Settings, sql: str) -> str:
    """The statement's answer (TSV rows unless it ends with ``FORMAT``); raises
    ``sinks.base.QueryRefused`` for anything but one read statement."""
    check_read_only(sql)  # refuse early, before any connection
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
    backend.query_limits = limits_of(settings)
    try:
        return backend.tsv_sync(sql)
    finally:
        backend.close_sync()
