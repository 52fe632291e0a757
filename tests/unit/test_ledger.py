import pandas as pd

from sinks.base.ledger import Ledger, advance, keep_after, span_rows


def frame(rows):
    return pd.DataFrame(rows, columns=["src_topic", "src_partition", "src_offset"])


def test_keep_after_drops_offsets_the_table_holds():
    f = frame([("a", 0, 5), ("a", 0, 6), ("a", 1, 2), ("b", 0, 0)])
    kept = keep_after(f, Ledger({("a", 0): 6, ("a", 1): 3}))
    assert kept.values.tolist() == [["a", 0, 6], ["b", 0, 0]]


def test_first_offsets_settle_fresh_checkpoints_and_agree_with_the_row_filter():
    f = frame([("a", 0, 5), ("a", 0, 6), ("a", 1, 2), ("b", 0, 0)])
    first = {("a", 0): 5, ("a", 1): 2, ("b", 0): 0}
    fresh = Ledger({("a", 0): 5, ("a", 1): 1})
    assert keep_after(f, fresh, first) is f  # nothing stored yet: no row is looked at
    for ledger in (Ledger({("a", 0): 6, ("a", 1): 3}), Ledger({("b", 0): 1}), fresh):
        assert keep_after(f, ledger, first).values.tolist() == keep_after(f, ledger).values.tolist()


def test_span_rows_sum_to_next_offset():
    ledger = Ledger()
    total: dict = {}
    for last in ({("t", 0): 9, ("t", 1): 3}, {("t", 0): 9}, {("t", 0): 20, ("t", 1): 3}):
        for topic, part, span in span_rows(last, ledger):
            total[(topic, part)] = total.get((topic, part), 0) + span
        advance(ledger, last)
    assert total == {("t", 0): 21, ("t", 1): 4}
    assert ledger == {("t", 0): 21, ("t", 1): 4}


def test_redelivered_checkpoint_adds_no_span():
    ledger = Ledger({("t", 0): 50})
    assert span_rows({("t", 0): 40}, ledger) == []
    assert span_rows({("t", 0): 55}, ledger) == [("t", 0, 6)]


def test_chunk_by_bytes_keeps_order_and_bounds_size():
    from streams.batching import chunk_by_bytes
    from streams.pipeline import Message

    msgs = [Message("t", 0, i, 0.0, b"x" * n) for i, n in enumerate([5, 5, 5, 20, 1, 1])]
    chunks = chunk_by_bytes(msgs, 10)
    assert [[m.offset for m in c] for c in chunks] == [[0, 1], [2], [3], [4, 5]]
    assert chunk_by_bytes([], 10) == []
