"""Who may use the worker's ``/query/`` view, and what a request must look like."""

from __future__ import annotations

import pytest

from sinks.base import QueryRefused
from streams.web import is_loopback, query_refusal, sql_of_body

LOCAL = {"host": "127.0.0.1:6066", "content-type": "application/json"}


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("worker-0.gridpulse.svc", False),
        ("", False),
    ],
)
def test_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_a_local_caller_without_browser_marks_is_served():
    assert query_refusal(LOCAL, "127.0.0.1", None) is None
    assert query_refusal({**LOCAL, "host": "localhost"}, "127.0.0.1", None) is None
    assert query_refusal({**LOCAL, "sec-fetch-site": "same-origin"}, "127.0.0.1", None) is None


@pytest.mark.parametrize(
    "extra",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
)
def test_cross_site_requests_are_refused(extra):
    assert query_refusal({**LOCAL, **extra}, "127.0.0.1", None) == "cross-site requests are refused"
    assert query_refusal({**LOCAL, **extra, "authorization": "Bearer t"}, "0.0.0.0", "t")


def test_a_rebound_host_name_is_refused_on_loopback():
    """DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own Host."""
    assert query_refusal({**LOCAL, "host": "evil.example:6066"}, "127.0.0.1", None)


def test_beyond_loopback_a_token_is_required():
    refusal = query_refusal(LOCAL, "0.0.0.0", None)
    assert refusal and "GRIDPULSE_WORKER__WEB_TOKEN" in refusal
    assert query_refusal({**LOCAL, "host": "10.0.0.5:6066"}, "0.0.0.0", "s3cret") == (
        "missing or wrong bearer token"
    )
    wrong = {**LOCAL, "authorization": "Bearer guess"}
    assert query_refusal(wrong, "0.0.0.0", "s3cret") == "missing or wrong bearer token"
    right = {**LOCAL, "host": "10.0.0.5:6066", "authorization": "Bearer s3cret"}
    assert query_refusal(right, "0.0.0.0", "s3cret") is None


def test_a_set_token_is_required_on_loopback_too():
    assert query_refusal(LOCAL, "127.0.0.1", "s3cret") == "missing or wrong bearer token"
    assert query_refusal({**LOCAL, "authorization": "Bearer s3cret"}, "127.0.0.1", "s3cret") is None


def test_the_body_is_json_only():
    assert sql_of_body("application/json", b'{"sql": "SELECT 1"}') == "SELECT 1"
    assert sql_of_body("application/json; charset=utf-8", b'{"sql": "SELECT 2"}') == "SELECT 2"
    for content_type, body in [
        ("text/plain", b"SELECT 1"),
        ("application/x-www-form-urlencoded", b"sql=SELECT+1"),
        ("", b"SELECT 1"),
        ("application/json", b"SELECT 1"),
        ("application/json", b'{"query": "SELECT 1"}'),
        ("application/json", b'{"sql": 1}'),
        ("application/json", b'["SELECT 1"]'),
    ]:
        with pytest.raises(QueryRefused):
            sql_of_body(content_type, body)
