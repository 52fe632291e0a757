"""Two ClickHouse backends behind one async interface.

- ``ChdbBackend``: the embedded engine, in this process; one process per data folder.
- ``NativeBackend``: a server over the native protocol (clickhouse-driver).

Both are blocking libraries: every call runs on one dedicated thread so the event loop (and
with it Kafka heartbeats) never stalls on a slow insert.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from core.settings import DEFAULT_DATABASE, database_of
from core.warning import EarlyWarning, GridPath
from sinks.base.ledger import Ledger, LedgerKind
from sinks.base.store import CaseLogEntry, PartitionProgress, QueryRefused, WindowCount
from sinks.clickhouse import schema
from sinks.clickhouse import warnings as warning_tables

# One insert must land as one part: never split across threads or blocks. Rows are not
# pre-merged at insert (optimize_on_insert): summing and replacing tables are read with
# sum()/FINAL anyway, and skipping it takes 15-20 % off each small count insert.
_INSERT_SETTINGS = {
    "max_insert_threads": 1,
    "max_partitions_per_insert_block": 100,
    "optimize_on_insert": 0,
}


READ_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN")
# table functions that only compute (no file, network, process or Python object access)
SAFE_TABLE_FUNCTIONS = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateSeries",
        "generateRandom",
        "values",
        "view",
        "null",
    }
)
# functions that read or write files, reach the network or run code, wherever they appear
# (scalar ``file()`` reads a file even in readonly mode); compared in lower case
IO_FUNCTIONS = frozenset(
    name.lower()
    for name in (
        "file",
        "fileCluster",
        "url",
        "urlCluster",
        "s3",
        "s3Cluster",
        "gcs",
        "oss",
        "cosn",
        "hdfs",
        "hdfsCluster",
        "azureBlobStorage",
        "azureBlobStorageCluster",
        "remote",
        "remoteSecure",
        "cluster",
        "clusterAllReplicas",
        "mysql",
        "postgresql",
        "sqlite",
        "mongodb",
        "redis",
        "jdbc",
        "odbc",
        "executable",
        "executablePool",
        "input",
        "python",
        "deltaLake",
        "hudi",
        "iceberg",
        "icebergS3",
        "icebergAzure",
        "icebergHDFS",
        "icebergLocal",
        "paimon",
        "ytsaurus",
        "arrowFlight",
        "fuzzJSON",
        "fuzzQuery",
    )
)
_FORMAT_AT_END = re.compile(r"\bFORMAT\s+(\w+)\s*$", re.I)
_INTO_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.I)
_SETTINGS_CLAUSE = re.compile(r"\bSETTINGS\s+\w+\s*=", re.I)
_CALL = re.compile(r"\b(\w+)\s*\(")
_FIRST_WORD = re.compile(r"\s*(\w+)")


@dataclass(frozen=True, slots=True)
class UserQuery:
    """A user's read statement: ``sql`` without its trailing ``;`` and ``FORMAT`` clause,
    ``format`` the output format it asked for (None: the caller's default)."""

    sql: str
    format: str | None = None


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """What one user query may cost; applied by the engine with ``readonly=1``."""

    max_result_rows: int = 1_000_000
    max_execution_seconds: int = 60
    max_memory_bytes: int = 4 * 1024**3

    def settings(self) -> dict[str, int | str]:
        # readonly last: a server applies them in order and then refuses any change
        return {
            "max_result_rows": self.max_result_rows,
            "result_overflow_mode": "throw",
            "max_execution_time": self.max_execution_seconds,
            "max_memory_usage": self.max_memory_bytes,
            "readonly": 1,
        }

    def clause(self) -> str:
        """The settings as a trailing ``SETTINGS`` clause (on its own line: a user's final
        ``--`` comment cannot swallow it)."""
        opts = ", ".join(
            f"{k}='{v}'" if isinstance(v, str) else f"{k}={v}" for k, v in self.settings().items()
        )
        return f"\nSETTINGS {opts}"


def skeleton(sql: str) -> str:
    """``sql`` with the insides of string literals, quoted identifiers and comments blanked
    (same length), so keywords can be searched without matching text inside them. Raises
    ``QueryRefused`` for an unterminated literal or comment. Nested ``/* */`` comments are
    not recognised, which only makes the checks stricter."""
    out = list(sql)
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n and sql[j] != c:
                j += 2 if sql[j] == "\\" else 1
            if j >= n:
                raise QueryRefused("unterminated quoted text")
            out[i + 1 : j] = " " * (j - i - 1)
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                raise QueryRefused("unterminated comment")
            out[i : j + 2] = " " * (j + 2 - i)
            i = j + 2
        else:
            i += 1
    return "".join(out)


def check_read_only(sql: str) -> UserQuery:
    """One read statement, checked on its text: SELECT/WITH/SHOW/DESCRIBE/EXISTS/EXPLAIN,
    no second statement, no ``INTO OUTFILE``, no ``SETTINGS`` clause (the engine's limits
    apply), no function that touches files, the network or code; a trailing ``FORMAT`` is
    split off. Raises ``QueryRefused``. The engine then runs it with ``readonly=1``."""
    text = sql.strip()
    bare = skeleton(text)
    while bare.rstrip().endswith(";"):
        cut = bare.rstrip()[:-1]
        text, bare = text[: len(cut)], cut
    text, bare = text.rstrip(), bare.rstrip()
    first = _FIRST_WORD.match(bare)
    if not first or first.group(1).upper() not in READ_STATEMENTS or ";" in bare:
        raise QueryRefused("only a single SELECT/WITH/SHOW/DESCRIBE/EXISTS/EXPLAIN is allowed")
    if _INTO_OUTFILE.search(bare):
        raise QueryRefused("INTO OUTFILE is not allowed")
    if _SETTINGS_CLAUSE.search(bare):
        raise QueryRefused("SETTINGS clauses are not allowed (queries run read-only, with limits)")
    for m in _CALL.finditer(bare):
        if m.group(1).lower() in IO_FUNCTIONS:
            raise QueryRefused(f"{m.group(1)}() reads files or the network: not allowed")
    fmt = _FORMAT_AT_END.search(bare)
    if fmt:
        text, bare = text[: fmt.start()].rstrip(), bare[: fmt.start()].rstrip()
    if re.search(r"\bFORMAT\b", bare, re.I):
        raise QueryRefused("FORMAT must be the last clause")
    return UserQuery(text, fmt.group(1) if fmt else None)


def check_ast(ast: str) -> None:
    """Refuse a parsed query (ClickHouse's ``EXPLAIN AST`` text) that calls a table function
    outside ``SAFE_TABLE_FUNCTIONS`` or any function of ``IO_FUNCTIONS``."""
    parents: list[tuple[int, str]] = []
    for line in ast.splitlines():
        depth = len(line) - len(line.lstrip(" "))
        node = line.strip()
        while parents and parents[-1][0] >= depth:
            parents.pop()
        if node.startswith("Function "):
            name = node.split()[1]
            if name.lower() in IO_FUNCTIONS:
                raise QueryRefused(f"{name}() reads files or the network: not allowed")
            in_from = bool(parents) and parents[-1][1].startswith("TableExpression")
            if in_from and name not in SAFE_TABLE_FUNCTIONS:
                raise QueryRefused(
                    f"table function {name}() is not allowed; allowed: "
                    + ", ".join(sorted(SAFE_TABLE_FUNCTIONS))
                )
        parents.append((depth, node))


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
        self.query_limits = QueryLimits()

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
        """A user's read statement, checked (``check_read_only``) and run read-only within
        ``query_limits``: TSV rows, or the output of the statement's own ``FORMAT``."""
        return self.user_query_sync(check_read_only(sql))

    def user_query_sync(self, query: UserQuery) -> str:
        raise NotImplementedError

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
        """Read-only query for users and boards (``tsv_sync``); refuses anything but a read."""
        return await self._run(self.user_query_sync, check_read_only(sql))

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

    async def held_case_events(self, topic: str, partition: int) -> list[tuple[Any, ...]]:
        return await self.rows(schema.held_case_events_sql(self.db, topic, partition))

    async def fired_alerts(self, topic: str, partition: int) -> list[str]:
        rows = await self.rows(schema.fired_alerts_sql(self.db, topic, partition))
        return [str(r[0]) for r in rows]

    async def window_counts(
        self, window: str, since_s: int, until_s: int, sources: tuple[str, ...]
    ) -> list[WindowCount]:
        sql = warning_tables.window_counts_sql(self.db, window, since_s, until_s, sources)
        return [
            WindowCount(int(b), str(d), str(st), str(c), str(g), str(cat), str(src), int(n))
            for b, d, st, c, g, cat, src, n in await self.rows(sql)
        ]

    async def sensor_readings(
        self, topic: str, partition: int, since_s: int
    ) -> list[tuple[str, int, float, str, int]]:
        sql = warning_tables.sensor_readings_sql(self.db, topic, partition, since_s)
        rows = await self.rows(sql)
        return [(str(s), int(t), float(v), str(e), int(o)) for s, t, v, e, o in rows]

    async def located_reports(
        self, topic: str, partition: int, since_s: int
    ) -> list[tuple[str, str, int, float, float, str, str, int]]:
        sql = warning_tables.located_reports_sql(self.db, topic, partition, since_s)
        return [
            (str(e), str(c), int(t), _float(x), _float(y), str(g), str(h), int(o))
            for e, c, t, x, y, g, h, o in await self.rows(sql)
        ]

    async def case_lifetimes(self, since_s: int) -> list[tuple[str, int, int]]:
        rows = await self.rows(warning_tables.case_lifetimes_sql(self.db, since_s))
        return [(str(u), int(o), int(e)) for u, o, e in rows]

    async def open_cases(self, at_s: int) -> dict[str, int]:
        rows = await self.rows(warning_tables.open_cases_sql(self.db, at_s))
        return {str(u): int(n) for u, n in rows}

    async def latest_warnings(self) -> list[EarlyWarning]:
        rows = await self.rows(warning_tables.latest_warnings_sql(self.db))
        return [
            warning_of_row(dict(zip(warning_tables.WARNING_COLUMNS, r, strict=True))) for r in rows
        ]

    async def ingest_progress(self) -> list[PartitionProgress]:
        rows = await self.rows(warning_tables.progress_sql(self.db))
        return [PartitionProgress(str(t), int(p), int(s), bool(int(c))) for t, p, s, c in rows]

    async def detection_cursor(self, scale: str) -> int | None:
        rows = await self.rows(warning_tables.cursor_sql(self.db, scale))
        return int(rows[0][0]) if rows else None

    async def migrate(self, settings: schema.Settings) -> list[int]:
        return await self._run(self.migrate_sync, settings)

    async def close(self) -> None:
        await self._run(self.close_sync)
        self._pool.shutdown(wait=True)


def _float(value: Any) -> float:
    """A Float64 cell; JSON outputs write NaN as null."""
    return math.nan if value is None else float(value)


def warning_of_row(row: dict[str, Any]) -> EarlyWarning:
    """A stored warning revision (``sinks.clickhouse.warnings.WARNING_COLUMNS``, times as
    epoch seconds) as the wire model."""

    def at(column: str) -> datetime:
        return datetime.fromtimestamp(int(row[column]), UTC)

    return EarlyWarning(
        fingerprint=row["fingerprint"],
        revision=int(row["revision"]),
        status=row["status"],
        kind=row["kind"],
        severity=row["severity"],
        where=GridPath(
            district=row["district"],
            street=row["street"],
            community=row["community"],
            grid_code=row["grid_code"],
        ),
        category=row["category"],
        sensor_id=row["sensor_id"],
        unit=row["unit"],
        window_start=at("window_start"),
        window_end=at("window_end"),
        observed=float(row["observed"]),
        expected=float(row["expected"]),
        score=float(row["score"]),
        detector=row["detector"],
        params=json.loads(row["params"] or "{}"),
        evidence=json.loads(row["evidence"] or "[]"),
        summary=row["summary"],
        started_at=at("started_at"),
        updated_at=at("updated_at"),
        resolved_at=at("resolved_at") if int(row["resolved_at"]) else None,
    )


SERVER_FORMATS = (
    "TabSeparated",
    "TSV",
    "TabSeparatedWithNames",
    "TSVWithNames",
    "CSV",
    "CSVWithNames",
)


def render(rows: list[tuple[Any, ...]], names: list[str], fmt: str) -> str:
    """Rows as TSV or CSV (``…WithNames``: a header first), as ClickHouse writes them."""
    header = fmt.endswith("WithNames")
    if fmt.startswith("CSV"):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if header:
            writer.writerow(names)
        writer.writerows([_csv(v) for v in row] for row in rows)
        return buf.getvalue()
    lines = ["\t".join(_tsv(n) for n in names)] if header else []
    lines += ["\t".join(_tsv(v) for v in row) for row in rows]
    return "".join(line + "\n" for line in lines)


def _csv(v: Any) -> Any:
    return v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v


def _tsv(v: Any) -> str:
    """A value as ClickHouse's TabSeparated writes it (backslash, tab, newline, quote escaped)."""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "backslashreplace")
    return str(v).translate(_TSV_ESCAPES)


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "'": "\\'"})


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

    def user_query_sync(self, query: UserQuery) -> str:
        """Checked on the engine's own parse (``check_ast``), then run with the limits and
        ``readonly=1``; the statement's ``FORMAT`` (default TabSeparated) is the output."""
        ast = self._session.query(f"EXPLAIN AST {query.sql}", "TabSeparatedRaw").bytes()
        check_ast(ast.decode("utf-8", "replace"))
        fmt = query.format or "TabSeparated"
        raw = self._session.query(query.sql + self.query_limits.clause(), fmt).bytes()
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise QueryRefused(f"FORMAT {fmt} is binary; ask for a text format") from None

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

    def user_query_sync(self, query: UserQuery) -> str:
        """Run with the limits and ``readonly=1`` as query settings (on a server,
        readonly mode also forbids every table function); the answer is rendered here, in
        one of ``SERVER_FORMATS``."""
        fmt = query.format or "TabSeparated"
        if fmt not in SERVER_FORMATS:
            raise QueryRefused(
                f"FORMAT {fmt} is not available from a ClickHouse server here; one of: "
                + ", ".join(SERVER_FORMATS)
                + " (or use clickhouse-client)"
            )
        rows, columns = self._client.execute(
            query.sql, settings=self.query_limits.settings(), with_column_types=True
        )
        return render(rows, [c[0] for c in columns], fmt)

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
