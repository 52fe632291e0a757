"""The worker's web views: ``/stats/`` (live counters), ``/stats/reset-latency/`` and
``/query/`` (read-only SQL while this worker holds the embedded engine)."""

from __future__ import annotations

import faust
from faust.web import Request, Response, View

from sinks.base import QueryRefused, StoreBackend
from streams.runtime import Runtime


def register_views(app: faust.App, runtime: Runtime, store: StoreBackend) -> None:
    @app.page("/stats/")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json(runtime.snapshot())

    @app.page("/stats/reset-latency/")
    class ResetLatency(View):
        async def post(self, request: Request) -> Response:
            runtime.reset_latency()
            return self.json({"ok": True})

    @app.page("/query/")
    class Query(View):
        """Read-only SQL for `gridpulse query` and the live view while this worker holds
        the embedded engine (one process per chdb folder)."""

        async def post(self, request: Request) -> Response:
            return await self._run((await request.read()).decode())

        async def get(self, request: Request) -> Response:
            return await self._run(request.query.get("sql", ""))

        async def _run(self, sql: str) -> Response:
            try:
                return self.text(await store.query_tsv(sql))
            except QueryRefused as exc:
                return self.text(f"refused: {exc}\n", status=403)
            except Exception as exc:  # noqa: BLE001 - report query errors to the caller
                return self.text(f"error: {exc}\n", status=400)
