"""Real services for tests, on free ports, always torn down (context managers, no pytest)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.settings import LocalStackSettings, Settings
from infra.clickhouse_server import ClickHouseServer
from infra.ports import free_ports
from infra.stack import LocalStack


def stack_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings whose local stack uses fresh free ports and lives under ``data_dir``."""
    (broker, s3, master, volume, filer, ch_tcp, ch_http) = free_ports(7)
    local = LocalStackSettings(
        broker_port=broker,
        s3_port=s3,
        seaweed_master_port=master,
        seaweed_volume_port=volume,
        seaweed_filer_port=filer,
        clickhouse_tcp_port=ch_tcp,
        clickhouse_http_port=ch_http,
    )
    return Settings(  # type: ignore[call-arg]
        data_dir=data_dir,
        broker=f"kafka://127.0.0.1:{broker}",
        local=local,
        **overrides,
    )


def _pin_seaweed_extra_ports(stack: LocalStack) -> None:
    """Free ports for SeaweedFS's gRPC/admin listeners too (port+10000 may be taken)."""
    m, v, f, s, a, ag = free_ports(6)
    stack.s3.grpc = {"master": m, "volume": v, "filer": f, "s3": s}
    stack.s3.admin_port, stack.s3.admin_grpc_port = a, ag


@contextmanager
def running_broker(tmp_path: Path, durable: bool = False) -> Iterator[tuple[str, LocalStack]]:
    """A Tansu broker (memory, or on SeaweedFS S3 when ``durable``) with the pipeline's topics.

    Yields ``(bootstrap, stack)``; ``stack.down()``/``stack.up()`` restart it in tests.
    """
    stack = LocalStack(
        stack_settings(Path(tmp_path) / "stack"), durable=durable, with_clickhouse_server=False
    )
    if durable:
        _pin_seaweed_extra_ports(stack)
    try:
        stack.up()
        yield stack.bootstrap, stack
    finally:
        stack.down()


@contextmanager
def running_clickhouse_server(tmp_path: Path) -> Iterator[tuple[str, ClickHouseServer]]:
    """Debian's clickhouse-server on free ports; yields ``(clickhouse://… url, server)``."""
    tcp, http = free_ports(2)
    server = ClickHouseServer(Path(tmp_path) / "ch", tcp_port=tcp, http_port=http)
    try:
        server.start()
        yield server.url, server
    finally:
        server.stop()
