"""The user query path is read-only in the engine, on chdb and on clickhouse-server 18.16:
every statement of issue 12 §6 is refused, the engine itself refuses what the text check
would miss, and limits, FORMAT and comments behave."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.base import QueryRefused
from sinks.clickhouse.backend import (
    ChdbBackend,
    ClickHouseBackend,
    NativeBackend,
    QueryLimits,
    UserQuery,
    check_ast,
    check_read_only,
    skeleton,
)


@pytest.fixture(params=["chdb", "server-18.16"])
def backend(request, tmp_path) -> Iterator[ClickHouseBackend]:
    if request.param == "chdb":
        b: ClickHouseBackend = ChdbBackend(tmp_path / "chdb")
    else:
        b = NativeBackend(request.getfixturevalue("clickhouse_server"))
    try:
        yield b
    finally:
        b.close_sync()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port on loopback that records whether anyone connected."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


# ---- the statements of the issue, end to end on both engines ----------------------------


def test_reading_a_file_is_refused(backend):
    with pytest.raises(QueryRefused, match="file"):
        backend.tsv_sync("SELECT * FROM file('/etc/hostname', 'LineAsString')")
    with pytest.raises(QueryRefused, match="file"):
        backend.tsv_sync("SELECT file('/etc/hostname')")


def test_into_outfile_is_refused_and_writes_nothing(backend, tmp_path):
    target = tmp_path / "x"
    with pytest.raises(QueryRefused, match="INTO OUTFILE"):
        backend.tsv_sync(f"SELECT 1 INTO OUTFILE '{target}'")
    assert not target.exists()


def test_url_is_refused_and_fetches_nothing(backend, listener):
    port = listener.getsockname()[1]
    with pytest.raises(QueryRefused, match="url"):
        backend.tsv_sync(f"SELECT * FROM url('http://127.0.0.1:{port}/', 'LineAsString')")
    assert not connected(listener)


def test_settings_readonly_0_is_refused(backend):
    with pytest.raises(QueryRefused, match="SETTINGS"):
        backend.tsv_sync("SELECT 1 SETTINGS readonly=0")
    with pytest.raises(QueryRefused, match="SETTINGS"):
        backend.tsv_sync("SELECT * FROM (SELECT 1 SETTINGS readonly = 0)")


def test_a_second_statement_is_refused(backend):
    with pytest.raises(QueryRefused, match="single"):
        backend.tsv_sync("SELECT 1; DROP DATABASE IF EXISTS gp_never")
    assert backend.tsv_sync("SELECT ';' AS x;") == ";\n"


# ---- the engine enforces read-only where the text check is bypassed ----------------------


def test_the_engine_refuses_writes_itself(backend):
    create = UserQuery("CREATE TABLE IF NOT EXISTS default.gp_never (a Int8) ENGINE = Memory")
    with pytest.raises(Exception, match="(?i)readonly"):
        backend.user_query_sync(create)
    assert backend.rows_sync("EXISTS TABLE default.gp_never") == [(0,)]


def test_the_engine_refuses_a_user_readonly_0(backend):
    with pytest.raises(Exception, match="(?i)readonly|syntax"):
        backend.user_query_sync(UserQuery("SELECT 1 SETTINGS readonly = 0"))


def test_the_engine_refuses_a_file_table_function_itself(backend):
    """On chdb the parsed query (EXPLAIN AST) is checked; on 18.16 readonly mode forbids
    table functions."""
    with pytest.raises(Exception, match="(?i)file|readonly"):
        backend.user_query_sync(UserQuery("SELECT * FROM file('/etc/hostname', 'TSV', 'a String')"))


def test_result_rows_are_limited(backend):
    backend.query_limits = QueryLimits(max_result_rows=5)
    with pytest.raises(Exception, match="(?i)limit for result exceeded"):
        backend.tsv_sync("SELECT number FROM system.numbers LIMIT 100")
    assert backend.tsv_sync("SELECT number FROM system.numbers LIMIT 3") == "0\n1\n2\n"


def test_reads_still_work(backend):
    assert backend.tsv_sync("SELECT 40 + 2;") == "42\n"
    assert backend.tsv_sync("SELECT 1 -- a trailing comment") == "1\n"
    assert backend.tsv_sync("SELECT 'a\\tb', 'it''s'") == "a\\tb\tit\\'s\n"
    assert backend.tsv_sync("EXISTS TABLE system.one") == "1\n"
    assert backend.tsv_sync("DESCRIBE TABLE system.one").startswith("dummy\tUInt8")
    assert backend.tsv_sync("WITH 2 AS x SELECT x * 3") == "6\n"


def test_format_clauses_pass_through(backend):
    assert backend.tsv_sync("SELECT 1 AS a, 'x' AS b FORMAT TSVWithNames") == "a\tb\n1\tx\n"
    assert backend.tsv_sync("SELECT 1 AS a, 'x,y' AS b FORMAT CSV").strip() == '1,"x,y"'


def test_empty_results_keep_their_header(backend):
    sql = "SELECT number AS n FROM system.numbers LIMIT 0 FORMAT TSVWithNames"
    assert backend.tsv_sync(sql) == "n\n"


def test_json_formats_on_the_embedded_engine(tmp_path):
    b = ChdbBackend(tmp_path / "chdb")
    try:
        assert b.tsv_sync("SELECT 7 AS n FORMAT JSONEachRow").strip() == '{"n":7}'
        with pytest.raises(QueryRefused, match="Python"):  # the process's own objects
            b.user_query_sync(UserQuery("SELECT * FROM Python(gp_frame)"))
        with pytest.raises(QueryRefused, match="table function merge"):  # parsed, allow-list
            b.tsv_sync("SELECT * FROM merge('system', '^one$')")
    finally:
        b.close_sync()


def test_a_server_refuses_formats_it_cannot_render(clickhouse_server):
    b = NativeBackend(clickhouse_server)
    try:
        with pytest.raises(QueryRefused, match="FORMAT JSON is not available"):
            b.tsv_sync("SELECT 1 FORMAT JSON")
    finally:
        b.close_sync()


# ---- the text check and the parse check on their own -----------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "DROP TABLE t",
        "SET readonly = 0",
        "SELECT 1; SELECT 2",
        "SELECT 1 /* open comment",
        "SELECT 'open string",
        "SELECT * FROM s3('http://h/b/k', 'CSV')",
        "SELECT * FROM remote('h:9000', db.t)",
        "SELECT * FROM cluster('c', db.t)",
        "SELECT * FROM FILE ('x')",
        "DESCRIBE TABLE url('http://h/', 'CSV')",
        "SELECT * FROM executable('x.sh', 'TSV', 'a String')",
        "SELECT 1 FORMAT CSV UNION ALL SELECT 2",
        "select 1 into   outfile 'x'",
    ],
)
def test_check_read_only_refuses(sql):
    with pytest.raises(QueryRefused):
        check_read_only(sql)


def test_check_read_only_reads_past_literals_and_comments():
    q = check_read_only("SELECT 'file(1); INTO OUTFILE', \"url(\" /* s3( */ -- ;\n FORMAT CSV;")
    assert q.format == "CSV"
    assert q.sql.endswith("-- ;")
    assert check_read_only("SELECT name FROM system.settings").format is None


def test_skeleton_keeps_positions():
    sql = "SELECT 'a;b' -- c\n/* d */ x"
    bare = skeleton(sql)
    assert len(bare) == len(sql) and ";" not in bare and bare.endswith(" x")


AST = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Function {scalar} (children 1)
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      Function {table} (children 1)
"""


def test_check_ast_allows_computing_table_functions_only():
    check_ast(AST.format(scalar="count", table="numbers"))
    with pytest.raises(QueryRefused, match="table function loop"):
        check_ast(AST.format(scalar="count", table="loop"))
    with pytest.raises(QueryRefused, match="mysql"):
        check_ast(AST.format(scalar="count", table="mysql"))
    with pytest.raises(QueryRefused, match="file"):
        check_ast(AST.format(scalar="file", table="numbers"))
    # a scalar function that shares no name with an I/O one is not a table function
    check_ast(AST.format(scalar="sumMerge", table="zeros"))


def test_limits_are_settings_with_readonly_last():
    settings = QueryLimits(10, 5, 2**30).settings()
    assert list(settings)[-1] == "readonly" and settings["readonly"] == 1
    assert settings["max_result_rows"] == 10 and settings["result_overflow_mode"] == "throw"
    assert settings["max_execution_time"] == 5 and settings["max_memory_usage"] == 2**30
    assert QueryLimits().clause().startswith("\nSETTINGS ")


def test_query_limits_come_from_the_settings(tmp_path: Path):
    from core.settings import QuerySettings, Settings
    from gridpulse.query import limits_of

    s = Settings(query=QuerySettings(max_result_rows=7, max_execution_seconds=3))  # type: ignore[call-arg]
    assert limits_of(s) == QueryLimits(7, 3, s.query.max_memory_bytes)
