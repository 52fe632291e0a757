from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.windows import WINDOWS, assign, assign_many, day_start, is_late, window_set

T0 = int(datetime(2024, 3, 10, 12, 34, 56, tzinfo=UTC).timestamp())


def test_minute_and_hour_buckets():
    assert assign(WINDOWS["1m"], T0, "UTC") == (T0 - 56, T0 - 56 + 60)
    start, end = assign(WINDOWS["1h"], T0, "UTC")
    assert datetime.fromtimestamp(start, UTC) == datetime(2024, 3, 10, 12, tzinfo=UTC)
    assert end - start == 3600


def test_day_bucket_is_local_midnight():
    # 12:34 UTC is 20:34 in Shanghai: same local day, which began at 16:00 UTC the day before
    start, end = assign(WINDOWS["1d"], T0, "Asia/Shanghai")
    assert datetime.fromtimestamp(start, UTC) == datetime(2024, 3, 9, 16, tzinfo=UTC)
    assert end - start == 86400


def test_day_bucket_across_dst_has_23_hours():
    # America/Los_Angeles springs forward on 2024-03-10
    start, end = assign(WINDOWS["1d"], T0, "America/Los_Angeles")
    local = datetime.fromtimestamp(start, ZoneInfo("America/Los_Angeles"))
    assert (local.hour, local.minute, local.day) == (0, 0, 10)
    assert end - start == 23 * 3600


@given(
    st.integers(min_value=0, max_value=4_000_000_000),
    st.sampled_from(["UTC", "Asia/Shanghai", "America/Los_Angeles", "Asia/Kolkata"]),
)
def test_day_start_contains_instant(t, tz):
    start = day_start(t, tz)
    assert start <= t
    local = datetime.fromtimestamp(start, ZoneInfo(tz))
    assert (local.hour, local.minute, local.second) == (0, 0, 0)
    assert day_start(start, tz) == start


@given(
    st.lists(st.integers(min_value=0, max_value=4_000_000_000), min_size=1, max_size=50),
    st.sampled_from(list(WINDOWS)),
    st.sampled_from(["UTC", "Asia/Shanghai", "America/Los_Angeles", "Asia/Kolkata"]),
)
def test_vectorised_assignment_matches_scalar(ts, name, tz):
    w = WINDOWS[name]
    starts, ends = assign_many(w, np.array(ts, dtype=np.int64), tz)
    for t, s, e in zip(ts, starts, ends, strict=True):
        assert (int(s), int(e)) == assign(w, t, tz)
        assert s <= t < e


def test_lateness_is_relative_to_window_end_plus_grace():
    start, end = assign(WINDOWS["1m"], T0, "UTC")
    assert not is_late(end, end + 120, 120)
    assert is_late(end, end + 120.001, 120)
    assert not is_late(end, start, 0)


def test_window_set_validates_rollups():
    assert [w.name for w in window_set(60, ["5m", "1h", "1d"])] == ["1m", "5m", "1h", "1d"]
    with pytest.raises(ValueError):
        window_set(420, ["1h"])
