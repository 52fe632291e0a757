"""The worker's web views: ``/stats/`` (live counters), ``/stats/reset-latency/``,
``/metrics`` (Prometheus), ``/health`` (alive), ``/ready`` (partitions assigned and store
reachable) and ``/query/`` (read-only SQL while this worker holds the embedded engine).

``/query/`` takes ``POST`` with a JSON body ``{"sql": "..."}`` only, so a browser page of
another site cannot send one without a CORS preflight, which this server never grants; it
refuses any request carrying an ``Origin`` or a cross-site ``Sec-Fetch-Site``, a ``Host``
other than loopback while bound to loopback (DNS rebinding), and without the bearer token
when one is set. Bound beyond loopback it answers only with a token configured.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Mapping

import faust
from faust.web import Request, Response, View

from sinks.base import QueryRefused, StoreBackend
from streams.metrics import CONTENT_TYPE
from streams.runtime import Runtime

READY_STORE_TIMEOUT_S = 5.0
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a name) is this machine only."""
    name = host.strip().lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """The name of a ``Host`` header without its port (``[::1]:6066`` -> ``[::1]``)."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def query_refusal(headers: Mapping[str, str], bind_host: str, token: str | None) -> str | None:
    """Why a ``/query/`` request with ``headers`` (names in lower case) is refused, or None.

    Browsers mark cross-site requests (``Origin``, ``Sec-Fetch-Site``); ours never come from
    a browser. ``token`` (None: no token set) is required when set, and must be set when
    ``bind_host`` is not loopback."""
    if "origin" in headers or headers.get("sec-fetch-site", "none") not in ("none", "same-origin"):
        return "cross-site requests are refused"
    if token is None:
        if not is_loopback(bind_host):
            return (
                "the web server listens beyond loopback: set GRIDPULSE_WORKER__WEB_TOKEN "
                "to use /query/"
            )
        if not is_loopback(_host_name(headers.get("host", ""))):
            return "Host must be a loopback name"
        return None
    sent = headers.get("authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return "missing or wrong bearer token"
    return None


def sql_of_body(content_type: str, body: bytes) -> str:
    """The statement of a ``/query/`` body: JSON ``{"sql": "..."}`` only."""
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise QueryRefused('send Content-Type: application/json with {"sql": "..."}')
    try:
        sql = json.loads(body)["sql"]
    except (ValueError, KeyError, TypeError):
        raise QueryRefused('the body must be JSON {"sql": "..."}') from None
    if not isinstance(sql, str):
        raise QueryRefused('"sql" must be a string')
    return sql


def register_views(app: faust.App, runtime: Runtime, store: StoreBackend) -> None:
    worker = runtime.settings.worker
    token = worker.web_token.get_secret_value() if worker.web_token else None

    @app.page("/stats/")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json(runtime.snapshot())

    @app.page("/stats/reset-latency/")
    class ResetLatency(View):
        async def post(self, request: Request) -> Response:
            runtime.reset_latency()
            return self.json({"ok": True})

    @app.page("/metrics")
    class Metrics(View):
        """Prometheus' text exposition of this worker's registry."""

        async def get(self, request: Request) -> Response:
            body = runtime.metrics.exposition()
            return self.bytes(body, headers={"Content-Type": CONTENT_TYPE})

    @app.page("/health")
    class Health(View):
        """200 while the worker's event loop answers."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "alive"})

    @app.page("/ready")
    class Ready(View):
        """200 when partitions are assigned and the store answers, else 503 and why."""

        async def get(self, request: Request) -> Response:
            partitions = len(runtime.faust.assignment())
            store_ok, error = True, ""
            try:
                await asyncio.wait_for(store.query_tsv("SELECT 1"), READY_STORE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                store_ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
            ready = partitions > 0 and store_ok
            body: dict[str, object] = {"ready": ready, "partitions": partitions, "store": store_ok}
            if error:
                body["error"] = error
            return self.json(body, status=200 if ready else 503)

    @app.page("/query/")
    class Query(View):
        """Read-only SQL for `gridpulse query`, the KPIs and the live view while this
        worker holds the embedded engine (one process per chdb folder)."""

        async def post(self, request: Request) -> Response:
            headers = {k.lower(): v for k, v in request.headers.items()}
            why = query_refusal(headers, worker.web_host, token)
            if why is not None:
                return self.text(f"refused: {why}\n", status=403)
            try:
                sql = sql_of_body(headers.get("content-type", ""), await request.read())
                return self.text(await store.query_tsv(sql))
            except QueryRefused as exc:
                return self.text(f"refused: {exc}\n", status=403)
            except Exception as exc:  # noqa: BLE001 - report query errors to the caller
                return self.text(f"error: {exc}\n", status=400)
