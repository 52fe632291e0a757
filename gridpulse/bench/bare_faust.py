"""The bare-Faust ceiling app: the worker's Faust settings, raw bytes, json.loads + dict count.

Run as a child by the ``faust-bare`` phase (``python -m gridpulse.bench faust-bare ...``); it
serves ``GET /count/`` -> ``{"n": messages counted, "counts": per message type}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from faust.web import Request, Response, View
from faust.worker import Worker

from core.settings import Settings, SinkSettings
from streams.transport import App, consumer_options


def faust_bare_main(argv: list[str]) -> None:
    """The ceiling app: worker's Faust settings, raw bytes, json.loads + dict count."""
    p = argparse.ArgumentParser(prog="python -m gridpulse.bench faust-bare")
    p.add_argument("--broker", required=True)
    p.add_argument("--app-id", required=True)
    p.add_argument("--topics", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=("take", "iter"), default="take")
    p.add_argument("--batch", type=int, default=SinkSettings().ingest_batch_max)
    p.add_argument("--within", type=float, default=SinkSettings().batch_seconds)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--datadir", required=True, help="Faust's table directory")
    a = p.parse_args(argv)

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = App(
        a.app_id,
        broker=a.broker,
        web_enabled=True,
        web_host="127.0.0.1",
        web_port=a.port,
        web_bind="127.0.0.1",
        topic_partitions=a.partitions,
        **consumer_options(Settings().worker, Path(a.datadir)),
    )
    topic = app.topic(*a.topics.split(","), key_type=bytes, value_type=bytes)
    counts: Counter[str] = Counter()
    state = {"n": 0}
    loads = json.loads

    if a.mode == "take":

        @app.agent(topic, concurrency=1)
        async def bare(stream: Any) -> None:
            async for values in stream.take(a.batch, within=a.within):
                for v in values:
                    counts[loads(v).get("type")] += 1
                state["n"] += len(values)

    else:

        @app.agent(topic, concurrency=1)
        async def bare(stream: Any) -> None:  # noqa: F811 - one of the two is defined
            async for v in stream:
                counts[loads(v).get("type")] += 1
                state["n"] += 1

    @app.page("/count/")
    class Count(View):
        async def get(self, request: Request) -> Response:
            return self.json({"n": state["n"], "counts": dict(counts)})

    Worker(app, loglevel="WARNING", loop=loop, redirect_stdouts=False).execute_from_commandline()
