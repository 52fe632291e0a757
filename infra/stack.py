"""The local stack ``gridpulse up/down/status`` drive: [SeaweedFS] -> Tansu -> [clickhouse-server].

``<data_dir>/stack.json`` records the running mode; each service keeps its own pid file and
log under ``<data_dir>/<service>/`` (``infra.service``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from infra.broker import TansuBroker
from infra.caller_salt import ensure_caller_salt
from infra.clickhouse_server import ClickHouseServer
from infra.s3 import SeaweedS3
from infra.service import ServiceError, ServiceStatus
from infra.topics import ensure_topics

if TYPE_CHECKING:
    from core.settings import Settings


class LocalStack:
    """What ``gridpulse up/down/status`` drive: [SeaweedFS] -> Tansu -> [clickhouse-server].

    ``durable=True`` puts the broker's log on SeaweedFS S3 (survives restarts); otherwise the
    broker keeps everything in memory. ``<data_dir>/stack.json`` records the running mode,
    so ``down()`` needs no flags and a conflicting ``up`` fails with a clear message.
    """

    def __init__(
        self,
        settings: Settings,
        durable: bool = False,
        with_clickhouse_server: bool | None = None,
    ) -> None:
        self.settings = settings
        self.durable = durable
        self.with_clickhouse_server = (
            settings.local.clickhouse_server
            if with_clickhouse_server is None
            else with_clickhouse_server
        )
        loc = settings.local
        self.data_dir = Path(settings.data_dir).resolve()
        self.s3 = SeaweedS3(
            self.data_dir,
            s3_port=loc.s3_port,
            master_port=loc.seaweed_master_port,
            volume_port=loc.seaweed_volume_port,
            filer_port=loc.seaweed_filer_port,
        )
        self.broker = TansuBroker(
            loc.broker_port,
            self.data_dir,
            storage="s3" if durable else "memory",
            s3_endpoint=self.s3.endpoint if durable else None,
        )
        self.clickhouse = ClickHouseServer(
            self.data_dir, tcp_port=loc.clickhouse_tcp_port, http_port=loc.clickhouse_http_port
        )

    @property
    def state_file(self) -> Path:
        return self.data_dir / "stack.json"

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def read_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def up(self) -> dict[str, float]:
        """Start what is missing, create the topics; returns seconds spent per service."""
        state = self.read_state()
        if state and self.broker.is_running() and bool(state.get("durable")) != self.durable:
            running = "durable (S3)" if state.get("durable") else "in-memory"
            raise ServiceError(
                f"a {running} broker is already running on port {self.broker.port}; "
                "run `gridpulse down` first"
                + (" (its in-memory data will be lost)" if not state.get("durable") else "")
                + "."
            )
        with_ch = self.with_clickhouse_server or bool(
            state and state.get("clickhouse_server") and self.clickhouse.is_running()
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_caller_salt(self.data_dir)
        self.state_file.write_text(
            json.dumps(
                {"durable": self.durable, "clickhouse_server": with_ch, "since": time.time()}
            )
        )
        times: dict[str, float] = {}
        if self.durable:
            times[self.s3.name] = self.s3.start()
        times[self.broker.name] = self.broker.start()
        if self.with_clickhouse_server:
            times[self.clickhouse.name] = self.clickhouse.start()
        t = self.settings.topics
        t0 = time.monotonic()
        ensure_topics(self.bootstrap, t.all, t.partitions, t.replication_factor)
        times["topics"] = time.monotonic() - t0
        return times

    def down(self) -> None:
        """Stop everything that runs, in reverse start order (needs no flags)."""
        errors = []
        for svc in (self.clickhouse, self.broker, self.s3):
            try:
                svc.stop()
            except ServiceError as exc:
                errors.append(str(exc))
        self.state_file.unlink(missing_ok=True)
        if errors:
            raise ServiceError("; ".join(errors))

    def status(self) -> list[ServiceStatus]:
        state = self.read_state() or {}
        rows = [self.s3.status(), self.broker.status(), self.clickhouse.status()]
        if state:
            mode = "durable (s3)" if state.get("durable") else "memory"
            rows[1].detail = (rows[1].detail + f" mode={mode}").strip()
        return rows

    @staticmethod
    def format_status(rows: list[ServiceStatus]) -> str:
        """A small fixed-width table for the CLI."""
        head = ("SERVICE", "STATE", "PID", "PORTS", "DETAIL")
        body = [
            (
                r.name,
                r.state,
                str(r.pid or "-"),
                ",".join(f"{k}={v}" for k, v in r.ports.items() if "gRPC" not in k),
                r.detail,
            )
            for r in rows
        ]
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [head, *body]
        )
