from gridpulse.live import not_fetching


def test_not_fetching_names_held_partitions_by_reason():
    assert not_fetching({}) == ""
    assert not_fetching({"paused": [], "buffer_full": [], "inactive": []}) == ""
    assert not_fetching({"paused": ["t[0]", "t[1]"], "buffer_full": ["u[2]"]}) == (
        "2 paused, 1 buffer full"
    )
    assert not_fetching({"buffer_full": ["u[2]"]}) == "1 buffer full"
