"""count_events (integer group ids shared between windows) equals a plain pandas groupby."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from core.records import COUNT_KEY
from streams.aggregate import count_events, key_groups, windowed
from streams.windows import WINDOWS

TZ = "Asia/Shanghai"
T0 = 1_746_500_000


def reference(events: pd.DataFrame, window, grace_s: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The straightforward definition: group by (late, bucket, every key column)."""
    start, late = windowed(events, window, TZ, grace_s)
    frame = events[list(COUNT_KEY)].assign(bucket=start, late=late)
    counts = frame.groupby(["late", "bucket", *COUNT_KEY], sort=False).size()
    counts = counts.rename("n").reset_index()
    return (
        counts[~counts["late"]].drop(columns="late"),
        counts[counts["late"]].drop(columns="late"),
    )


def canon(frame: pd.DataFrame) -> list[tuple]:
    cols = ["bucket", *COUNT_KEY, "n"]
    return sorted(tuple(r) for r in frame[cols].astype(object).itertuples(index=False))


rows = st.lists(
    st.tuples(
        st.integers(0, 3 * 86_400),  # event time offset
        st.integers(-60, 4 * 86_400),  # record delay
        st.sampled_from(["G1", "G2", "G3", "~unlocated"]),
        st.sampled_from(["s.a", "s.b", "t.c"]),
        st.sampled_from(["sensor", "hotline", "inspector"]),
        st.sampled_from(["D1", "D2"]),  # path columns need not follow the grid here
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(rows, st.sampled_from(["1m", "5m", "1h", "1d"]), st.sampled_from([0, 120, 3600]))
def test_counts_equal_a_plain_groupby(data, window_name, grace_s):
    events = pd.DataFrame(
        {
            "event_time": [T0 + e + 0.25 for e, *_ in data],
            "record_time": [T0 + e + d for e, d, *_ in data],
            "district": [r[5] for r in data],
            "street": [r[5] + "S" for r in data],
            "community": [r[2][:2] for r in data],
            "grid_code": [r[2] for r in data],
            "category": [r[3].split(".")[0] for r in data],
            "subcategory": [r[3] for r in data],
            "source": [r[4] for r in data],
        }
    )
    window = WINDOWS[window_name]
    on_time, late = count_events(events, window, TZ, grace_s)
    ref_on, ref_late = reference(events, window, grace_s)
    assert canon(on_time) == canon(ref_on)
    assert canon(late) == canon(ref_late)
    assert int(on_time["n"].sum() + late["n"].sum()) == len(events)
    # sharing the group ids between windows gives the same answer
    shared = count_events(events, window, TZ, grace_s, key_groups(events))
    assert canon(shared[0]) == canon(on_time) and canon(shared[1]) == canon(late)


def test_group_ids_are_dense_and_distinguish_every_key():
    events = pd.DataFrame({c: ["a", "a", "b", "a"] for c in COUNT_KEY})
    events.loc[3, "source"] = "z"
    gid, n = key_groups(events)
    assert n == 3 and sorted(set(gid.tolist())) == [0, 1, 2]
    assert gid[0] == gid[1] != gid[2] and gid[3] not in (gid[0], gid[2])
    empty, n0 = key_groups(events.iloc[:0])
    assert len(empty) == 0 and n0 == 0
    assert np.array_equal(key_groups(events)[0], gid)
