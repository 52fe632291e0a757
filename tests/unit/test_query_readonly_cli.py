"""``gridpulse query`` and ``gridpulse kpi`` output: empty results, FORMAT clauses, tables
for people and TSV/CSV/JSON for machines, periods in the city's local time."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime

from core.settings import REPO_ROOT
from gridpulse.kpi import aligned, period_bound, render

TABLE = (["unit", "accepted", "close_rate"], [["东城/A", "12", "50.00%"], ["西城/B", "3", "-"]])


def test_naive_period_bounds_are_the_city_s_local_time():
    start = period_bound("2026-03-01", "Asia/Shanghai")
    assert start.astimezone(UTC) == datetime(2026, 2, 28, 16, tzinfo=UTC)
    la = period_bound("2026-03-08T00:00", "America/Los_Angeles")  # the DST day starts at -08
    assert la.astimezone(UTC) == datetime(2026, 3, 8, 8, tzinfo=UTC)
    assert period_bound("2026-03-09", "America/Los_Angeles").astimezone(UTC).hour == 7
    explicit = period_bound("2026-03-01T00:00:00+00:00", "Asia/Shanghai")
    assert explicit == datetime(2026, 3, 1, tzinfo=UTC)


def test_machine_formats():
    assert render(TABLE, "tsv").splitlines() == [
        "unit\taccepted\tclose_rate",
        "东城/A\t12\t50.00%",
        "西城/B\t3\t-",
    ]
    assert list(csv.reader(io.StringIO(render(TABLE, "csv")))) == [TABLE[0], *TABLE[1]]
    assert json.loads(render(TABLE, "json")) == [
        {"unit": "东城/A", "accepted": "12", "close_rate": "50.00%"},
        {"unit": "西城/B", "accepted": "3", "close_rate": "-"},
    ]


def test_readable_table_aligns_or_stacks_by_width():
    wide = render(TABLE, "table", width=80).splitlines()
    assert wide[0].split() == TABLE[0] and wide[1].split() == TABLE[1][0]
    assert wide[0].index("accepted") == wide[1].index("12")
    narrow = aligned(*TABLE, width=10).split("\n\n")
    assert len(narrow) == 2
    assert narrow[0].splitlines() == ["unit        东城/A", "accepted    12", "close_rate  50.00%"]
    assert aligned(TABLE[0], [], width=80).endswith("(0 rows)\n")


def _query(tmp_path, sql: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPULSE_")}
    env |= {
        "GRIDPULSE_CLICKHOUSE": f"chdb://{tmp_path / 'chdb'}",
        "GRIDPULSE_DATA_DIR": str(tmp_path),
        "GRIDPULSE_WORKER__WEB_PORT": "9",  # nothing listens: the folder is opened directly
    }
    return subprocess.run(
        [sys.executable, "-m", "gridpulse.cli", "query", sql],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_query_says_0_rows_and_passes_formats_through(tmp_path):
    empty = _query(tmp_path, "SELECT 1 AS a WHERE 0")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == "" and "0 rows" in empty.stderr
    named = _query(tmp_path, "SELECT 1 AS a WHERE 0 FORMAT TSVWithNames")
    assert named.returncode == 0, named.stderr
    assert named.stdout == "a\n"
    as_json = _query(tmp_path, "SELECT 2 AS a FORMAT JSONEachRow")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"a": 2}
    refused = _query(tmp_path, "SELECT * FROM file('/etc/hostname', 'LineAsString')")
    assert refused.returncode == 2 and "file() reads files" in refused.stderr
