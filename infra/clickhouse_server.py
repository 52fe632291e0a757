"""A private clickhouse-server (Debian 18.16) on its own ports, with every path under its dir.

Its ``config.xml`` and ``users.xml`` are rendered from the package's templates in
``infra/config/clickhouse-server/`` (``string.Template`` placeholders).
"""

from __future__ import annotations

import os
import shutil
from importlib.resources import files
from pathlib import Path
from string import Template
from xml.sax.saxutils import escape

from infra.ports import HOST, tcp_open
from infra.service import ProcessService, ServiceError, tail

CONFIG_DIR = "config/clickhouse-server"
"""Where the config templates lie inside the ``infra`` package."""


def render_config(name: str, **values: object) -> str:
    """The template ``name`` (e.g. ``config.xml``) with its placeholders filled in.

    Raises KeyError if a placeholder has no value.
    """
    text = files("infra").joinpath(f"{CONFIG_DIR}/{name}").read_text(encoding="utf-8")
    return Template(text).substitute(values)


def clickhouse_server_command() -> list[str]:
    """argv prefix for clickhouse-server (Debian's binary, or the single `clickhouse` one)."""
    for name in ("clickhouse-server",):
        found = shutil.which(name)
        if found:
            return [found]
    for path in ("/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"):
        if os.access(path, os.X_OK):
            return [path]
    single = shutil.which("clickhouse") or (
        "/usr/bin/clickhouse" if os.access("/usr/bin/clickhouse", os.X_OK) else None
    )
    if single:
        return [single, "server"]
    raise ServiceError(
        "clickhouse-server not found. Install it with `sudo infra/install-services.sh` "
        "(Debian: `apt-get install clickhouse-server clickhouse-client`)."
    )


class ClickHouseServer(ProcessService):
    """A private clickhouse-server (Debian 18.16) with every path under its data dir.

    18.16 has no ``max_server_memory_usage``; memory is capped per query through the
    ``max_memory_usage`` profile setting instead.
    """

    name = "clickhouse-server"
    ready_timeout_s = 20.0

    def __init__(
        self,
        data_dir: Path | str,
        tcp_port: int,
        http_port: int,
        max_memory_usage: int = 4_000_000_000,
    ) -> None:
        super().__init__(data_dir)
        self.tcp_port, self.http_port = tcp_port, http_port
        self.max_memory_usage = max_memory_usage

    @property
    def url(self) -> str:
        return f"clickhouse://default:@{HOST}:{self.tcp_port}/default"

    @property
    def config_file(self) -> Path:
        return self.dir / "config.xml"

    def ports(self) -> dict[str, tuple[int, str]]:
        return {
            "native": (self.tcp_port, "GRIDPULSE_LOCAL__CLICKHOUSE_TCP_PORT"),
            "http": (self.http_port, "GRIDPULSE_LOCAL__CLICKHOUSE_HTTP_PORT"),
        }

    def command(self) -> list[str]:
        return [*clickhouse_server_command(), f"--config-file={self.config_file}"]

    def prepare(self) -> None:
        d = self.dir
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)

        def p(sub: str) -> str:
            return escape(str(d / sub)) + "/"

        self.config_file.write_text(
            render_config(
                "config.xml",
                host=HOST,
                tcp_port=self.tcp_port,
                http_port=self.http_port,
                log_dir=p("log"),
                data_dir=p("data"),
                tmp_dir=p("tmp"),
                user_files_dir=p("user_files"),
                format_schema_dir=p("format_schemas"),
                users_config=escape(str(d / "users.xml")),
            )
        )
        (d / "users.xml").write_text(
            render_config("users.xml", max_memory_usage=self.max_memory_usage)
        )

    def log_tail(self, lines: int = 25) -> str:
        err = self.dir / "log" / "server.err.log"
        out = super().log_tail(lines)
        if err.exists():
            out += f"\n--- {err}:\n" + tail(err, lines)
        return out

    def client(self, **kwargs: object):  # -> clickhouse_driver.Client
        from clickhouse_driver import Client

        return Client(HOST, port=self.tcp_port, **kwargs)

    def probe(self) -> str | None:
        if not tcp_open(self.tcp_port):
            return f"port {self.tcp_port} not accepting connections"
        try:
            client = self.client(connect_timeout=1, send_receive_timeout=3)
            try:
                client.execute("SELECT 1")
            finally:
                client.disconnect()
        except Exception as exc:
            return f"SELECT 1 failed: {exc!r}"
        return None
