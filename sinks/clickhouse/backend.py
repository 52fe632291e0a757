"""Two ClickHouse backends behind one async interface.

- ``ChdbBackend``: the embedded engine, in this process; one process per data folder.
- ``NativeBackend``: a server over the native protocol (clickhouse-driver).

Both are blocking libraries: every call runs on one dedicated thread so the event loop (and
with it Kafka heartbeats) never stalls on a slow insert.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from core.settings import DEFAULT_DATABASE, database_of
from sinks.base.ledger import Ledger, LedgerKind
from sinks.base.store import CaseLogEntry, QueryRefused
from sinks.clickhouse import schema

_READ_ONLY = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b", re.I)
# One insert must land as one part: never split across threads or blocks. Rows are not
# pre-merged at insert (optimize_on_insert): summing and replacing tables are read with
# sum()/FINAL anyway, and skipping it takes 15-20 % off each small count insert.
_INSERT_SETTINGS = {
    "max_insert_threads": 1,
    "max_partitions_per_insert_block": 100,
    "optimize_on_insert": 0,
}


def check_read_only(sql: str) -> str:
    if not _READ_ONLY.match(sql) or ";" in sql.strip().rstrip(";"):
        raise QueryRefused("only a single SELECT/WITH/SHOW/DESCRIBE/EXISTS/EXPLAIN is allowed")
    return sql.strip().rstrip(";")


class ClickHouseBackend:
    """A ``sinks.base.store.StoreBackend`` over a blocking ClickHouse client: every call runs
    on one dedicated thread, with async wrappers for the event loop. Subclasses implement
    the blocking primitives (``execute_sync``, ``rows_sync``, ``insert_sync``)."""

    db: str

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.version = ""
        # seconds spent inside inserts, per table (the worker's /stats/ shows them)
        self.insert_seconds: dict[str, float] = {}

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- blocking primitives, implemented per backend ------------------------------------
    def execute_sync(self, sql: str) -> None:
        raise NotImplementedError

    def rows_sync(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def insert_sync(self, table: str, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    def close_sync(self) -> None:
        pass

    def tsv_sync(self, sql: str) -> str:
        rows = self.rows_sync(sql)
        return "".join("\t".join(_tsv(v) for v in row) + "\n" for row in rows)

    # -- async interface -----------------------------------------------------------------
    async def insert(self, table: str, frame: pd.DataFrame) -> None:
        await self._run(self._timed_insert, table, frame)

    def _timed_insert(self, table: str, frame: pd.DataFrame) -> None:
        t = time.perf_counter()
        try:
            self.insert_sync(table, frame)
        finally:
            self.insert_seconds[table] = self.insert_seconds.get(table, 0.0) + (
                time.perf_counter() - t
            )

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return await self._run(self.rows_sync, sql)

    async def query_tsv(self, sql: str) -> str:
        """Read-only query for users and boards: refuses anything but a read."""
        return await self._run(self.tsv_sync, check_read_only(sql))

    async def read_ledger(self, table: str, kind: LedgerKind) -> Ledger:
        return await self._run(self.read_ledger_sync, table, kind)

    def read_ledger_sync(self, table: str, kind: LedgerKind) -> Ledger:
        if kind is LedgerKind.MAX:
            sql = (
                f"SELECT src_topic, src_partition, max(src_offset) + 1 FROM {self.db}.{table} "
                "GROUP BY src_topic, src_partition"
            )
        else:
            sql = (
                f"SELECT ledger_topic, ledger_partition, sum(offset_span) FROM {self.db}.{table} "
                "WHERE bucket = toDateTime(0, 'UTC') AND ledger_partition >= 0 "
                "GROUP BY ledger_topic, ledger_partition"
            )
        return Ledger({(str(t), int(p)): int(n) for t, p, n in self.rows_sync(sql)})

    def migrate_sync(self, settings: schema.Settings) -> list[int]:
        """Apply pending migrations; returns the versions applied now."""
        self.execute_sync(f"CREATE DATABASE IF NOT EXISTS {self.db}")
        self.execute_sync(schema.migrations_table(self.db))
        versions = self.rows_sync(f"SELECT version FROM {self.db}.schema_migrations")
        applied = {int(r[0]) for r in versions}
        features = schema.Features.from_version(self.version)
        done = []
        for m in schema.pending(applied):
            for stmt in m.statements(self.db, features, settings):
                self.execute_sync(stmt)
            self.insert_sync(
                "schema_migrations",
                pd.DataFrame(
                    {
                        "version": [m.version],
                        "description": [m.description],
                        "applied_at": [int(time.time())],
                    }
                ),
            )
            done.append(m.version)
        return done

    async def case_log(self, topic: str, partition: int) -> list[CaseLogEntry]:
        return await self._run(self.case_log_sync, topic, partition)

    def case_log_sync(self, topic: str, partition: int) -> list[CaseLogEntry]:
        rows = self.rows_sync(schema.case_log_sql(self.db, topic, partition))
        return [
            CaseLogEntry(
                str(c),
                str(a),
                int(ms),
                str(g),
                str(cat),
                str(u),
                int(d),
                str(r),
                str(src),
                str(eid),
            )
            for c, a, ms, g, cat, u, d, r, src, eid in rows
        ]

    async def fired_alerts(self, topic: str, partition: int) -> list[str]:
        rows = await self.rows(schema.fired_alerts_sql(self.db, topic, partition))
        return [str(r[0]) for r in rows]

    async def migrate(self, settings: schema.Settings) -> list[int]:
        return await self._run(self.migrate_sync, settings)

    async def close(self) -> None:
        await self._run(self.close_sync)
        self._pool.shutdown(wait=True)


def _tsv(v: Any) -> str:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "backslashreplace")
    return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


class ChdbBackend(ClickHouseBackend):
    """The embedded engine (chdb). Holds the data folder's lock for the process lifetime."""

    _lock = threading.Lock()

    def __init__(self, path: str | Path, db: str = DEFAULT_DATABASE) -> None:
        super().__init__()
        from chdb import session

        Path(path).mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.db = db
        self._session = session.Session(self.path)
        self.version = self._rows("SELECT version()")[0][0]

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        res = self._session.query(sql, "JSONCompact")
        raw = res.bytes() if hasattr(res, "bytes") else bytes(res)
        if not raw:
            return []
        return [tuple(r) for r in json.loads(raw)["data"]]

    def execute_sync(self, sql: str) -> None:
        self._session.query(sql)

    def rows_sync(self, sql: str) -> list[tuple[Any, ...]]:
        return self._rows(sql)

    def insert_sync(self, table: str, frame: pd.DataFrame) -> None:
        cols = list(frame.columns)
        gp_frame = frame  # noqa: F841 - read by chdb's Python() table function by name
        names = ", ".join(cols)
        opts = ", ".join(f"{k}={v}" for k, v in _INSERT_SETTINGS.items())
        self._session.query(
            f"INSERT INTO {self.db}.{table} ({names}) SELECT {names} FROM Python(gp_frame) "
            f"SETTINGS {opts}"
        )

    def close_sync(self) -> None:
        self._session.close()


class NativeBackend(ClickHouseBackend):
    """A ClickHouse server over the native protocol (clickhouse-driver)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        from clickhouse_driver import Client

        u = urlparse(url)
        self.db = database_of(url)
        self._client = Client(
            host=u.hostname or "127.0.0.1",
            port=u.port or 9000,
            user=unquote(u.username or "default"),
            password=unquote(u.password or ""),
            connect_timeout=5,
            send_receive_timeout=60,
            settings={"insert_block_size": 1_048_576},
        )
        self.version = self._client.execute("SELECT version()")[0][0]
        self._column_types: dict[str, dict[str, str]] = {}

    def execute_sync(self, sql: str) -> None:
        self._client.execute(sql)

    def rows_sync(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._client.execute(sql)]

    def _types(self, table: str) -> dict[str, str]:
        types = self._column_types.get(table)
        if types is None:
            rows = self._client.execute(f"DESCRIBE TABLE {self.db}.{table}")
            types = {r[0]: r[1] for r in rows}
            self._column_types[table] = types
        return types

    def insert_sync(self, table: str, frame: pd.DataFrame) -> None:
        types = self._types(table)
        columns = []
        for col in frame.columns:
            values = frame[col]
            kind = types[col]
            if kind.startswith("DateTime") or "Int" in kind:
                columns.append([int(v) for v in values.to_numpy()])
            elif kind.startswith("Float"):
                columns.append([float(v) for v in values.to_numpy()])
            else:
                columns.append(
                    [
                        v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)
                        for v in values.to_numpy()
                    ]
                )
        self._client.execute(
            f"INSERT INTO {self.db}.{table} ({', '.join(frame.columns)}) VALUES",
            columns,
            columnar=True,
        )

    def close_sync(self) -> None:
        self._client.disconnect()


def connect(url: str) -> ClickHouseBackend:
    """A backend for ``chdb:///path`` or ``clickhouse://user:pw@host:port/db``."""
    u = urlparse(url)
    if u.scheme == "chdb":
        path = (u.netloc + u.path) if u.netloc else u.path
        return ChdbBackend(path or ".gridpulse/chdb")
    if u.scheme == "clickhouse":
        return NativeBackend(url)
    raise ValueError(f"unsupported ClickHouse URL {url!r}")
