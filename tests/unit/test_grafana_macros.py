"""The ClickHouse plugin's macro and template-variable expansion, case by case (expected texts
follow pkg/macros/macros.go and src/data/CHDatasource.ts of grafana/clickhouse-datasource)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from grafana.macros import (
    ALL,
    TimeRange,
    VariableValue,
    expand,
    expand_macros,
    format_value,
    panel_interval_ms,
)
from grafana.query import Select, var_in

TR = TimeRange(from_ms=1_764_460_800_123, to_ms=1_764_547_199_999)  # 2025-11-30 UTC, ms parts
F, T = 1_764_460_800, 1_764_547_199


def test_time_macros_use_whole_seconds_and_inclusive_bounds():
    assert expand_macros("$__fromTime", TR, 60_000) == f"toDateTime({F})"
    assert expand_macros("$__toTime", TR, 60_000) == f"toDateTime({T})"
    assert expand_macros("$__timeFilter(bucket)", TR, 60_000) == (
        f"bucket >= toDateTime({F}) AND bucket <= toDateTime({T})"
    )
    assert expand_macros("$__timeFilter_ms(t)", TR, 60_000) == (
        "t >= fromUnixTimestamp64Milli(1764460800123) AND "
        "t <= fromUnixTimestamp64Milli(1764547199999)"
    )
    assert expand_macros("$__fromTime_ms", TR, 1) == "fromUnixTimestamp64Milli(1764460800123)"


def test_date_and_interval_macros():
    assert expand_macros("$__dateFilter(d)", TR, 60_000) == (
        "d >= toDate('2025-11-30') AND d <= toDate('2025-11-30')"
    )
    assert expand_macros("$__dateTimeFilter(d, t)", TR, 60_000) == (
        "(d >= toDate('2025-11-30') AND d <= toDate('2025-11-30')) AND "
        f"(t >= toDateTime({F}) AND t <= toDateTime({T}))"
    )
    assert expand_macros("$__timeInterval(ts)", TR, 300_000) == (
        "toStartOfInterval(toDateTime(ts), INTERVAL 300 second)"
    )
    assert expand_macros("x / $__interval_s", TR, 300_000) == "x / 300"
    assert expand_macros("$__interval_s", TR, 200) == "1"  # at least one second
    assert expand_macros("$__interval_s", TR, 90_500) == "90"  # truncated


def test_macro_arguments_may_hold_parentheses():
    assert expand_macros("$__timeFilter(toDateTime(x, 'UTC'))", TR, 1000) == (
        f"toDateTime(x, 'UTC') >= toDateTime({F}) AND toDateTime(x, 'UTC') <= toDateTime({T})"
    )
    with pytest.raises(ValueError, match="expected 1 argument"):
        expand_macros("$__timeFilter(a, b)", TR, 1000)


def test_multi_value_formats():
    vals = ["D01", "D'02"]
    assert format_value(vals, None) == "'D01','D'02'"  # the plugin's default: no escaping
    assert format_value(vals, "singlequote") == "'D01','D\\'02'"
    assert format_value(vals, "sqlstring") == "'D01','D''02'"
    assert format_value(vals, "csv") == "D01,D'02"
    assert format_value("D01", None) == "D01"  # a single value is inserted as is
    assert format_value("D01", "singlequote") == "'D01'"


def test_variables_single_multi_and_all():
    sql = "SELECT 1 WHERE district IN (${district:singlequote}) AND src = '$source' AND [[source]]"
    one = {"district": VariableValue(["D01"]), "source": VariableValue("hotline")}
    assert expand(sql, TR, one) == (
        "SELECT 1 WHERE district IN ('D01') AND src = 'hotline' AND hotline"
    )
    many = {"district": VariableValue(["D01", "D02"]), "source": VariableValue("sensor")}
    assert "district IN ('D01','D02')" in expand(sql, TR, many)
    every = {
        "district": VariableValue([ALL], options=("D01", "D02", "D03")),
        "source": VariableValue("sensor"),
    }
    assert "district IN ('D01','D02','D03')" in expand(sql, TR, every)
    custom_all = {
        "district": VariableValue(ALL, options=("D01",), all_value="district"),
        "source": VariableValue("x"),
    }
    assert "district IN (district)" in expand(sql, TR, custom_all)


def test_conditional_all_drops_the_filter_only_for_all():
    sel = Select(["count()"], "t", where=[var_in("district", "district"), "$__timeFilter(b)"])
    chosen = expand(sel.sql(), TR, {"district": VariableValue(["D01", "D02"])})
    assert "WHERE (district IN ('D01','D02')) AND (b >= " in chosen
    every = expand(sel.sql(), TR, {"district": VariableValue([ALL], options=("D01",))})
    assert "(1=1)" in every and "district IN" not in every
    empty = expand(sel.sql(), TR, {"district": VariableValue([])})
    assert "(1=1)" in empty


def test_nested_conditional_all_and_leftovers():
    sql = f"WHERE {var_in('street', 'street')} AND {var_in('grid_code', 'grid')}"
    out = expand(
        sql,
        TR,
        {"street": VariableValue(["S1"]), "grid": VariableValue([ALL], options=("G1", "G2"))},
    )
    assert out == "WHERE street IN ('S1') AND 1=1"
    with pytest.raises(ValueError, match="unexpanded"):
        expand("SELECT $unknown", TR, {})


def test_time_range_from_datetimes():
    tr = TimeRange.of(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert (tr.from_s, tr.to_s) == (1_793_491_200, 1_796_083_200)


def test_panel_interval_from_max_data_points_is_rounded_like_grafana():
    day = TimeRange(0, 86_400_000)
    assert panel_interval_ms(day, 24) == 3_600_000  # the warnings-by-kind bars: hourly
    assert panel_interval_ms(day, 200) == 300_000  # 432 s rounds to 5 min
    assert panel_interval_ms(day, 300) == 300_000  # 288 s
    assert panel_interval_ms(TimeRange(0, 6 * 3_600_000), 300) == 60_000  # 72 s
    assert panel_interval_ms(TimeRange(0, 90 * 86_400_000), 2) == 86_400_000
