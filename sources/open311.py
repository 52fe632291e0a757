"""Open311 GeoReport v2 service requests (``requests.json``) as an all-string frame.

A GeoReport v2 server answers ``GET …/requests.json`` with a JSON array of service requests
(some wrap it as ``{"service_requests": [...]}``; both are read). Fields used by the bundled
``open311`` format: ``service_request_id``, ``service_code``, ``service_name``, ``status``
(``open`` / ``closed``), ``requested_datetime``, ``updated_datetime``, ``expected_datetime``
(the deadline), ``lat``, ``long``, ``address``. Servers page with ``page`` (1-based) and
``page_size`` parameters where they page at all: a URL source is read page by page until a
page is empty, or repeats only requests already seen (a server that ignores paging).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd

ID_FIELD = "service_request_id"
FIELDS = (
    "service_request_id",
    "service_code",
    "service_name",
    "status",
    "status_notes",
    "description",
    "agency_responsible",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "zipcode",
    "lat",
    "long",
)
"""The GeoReport v2 request fields every frame has (missing ones are empty)."""
MAX_PAGES = 10_000
HTTP_TIMEOUT_S = 30.0


class Open311Error(ValueError):
    """A document or server answer that is not a GeoReport v2 request list."""


def requests_of(doc: Any, where: str) -> list[dict[str, Any]]:
    """The request objects of one decoded ``requests.json`` document."""
    if isinstance(doc, dict) and "service_requests" in doc:
        doc = doc["service_requests"]
        if isinstance(doc, dict) and "request" in doc:  # the XML layout converted to JSON
            doc = doc["request"]
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise Open311Error(f"{where}: not a GeoReport v2 list of service requests")
    return doc


def page_url(url: str, page: int, page_size: int | None) -> str:
    """``url`` with its ``page`` (and ``page_size``) query parameters set."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query["page"] = str(page)
    if page_size is not None:
        query["page_size"] = str(page_size)
    return urlunsplit(parts._replace(query=urlencode(query)))


def fetch_pages(url: str, page_size: int | None = None) -> Iterator[list[dict[str, Any]]]:
    """Each page of a GeoReport v2 request list, from page 1 until an empty or repeated one."""
    import httpx

    seen: set[str] = set()
    with httpx.Client(timeout=HTTP_TIMEOUT_S, follow_redirects=True) as client:
        for page in range(1, MAX_PAGES + 1):
            where = page_url(url, page, page_size)
            resp = client.get(where, headers={"Accept": "application/json"})
            if resp.status_code != 200:
                raise Open311Error(f"{where}: HTTP {resp.status_code}")
            try:
                rows = requests_of(resp.json(), where)
            except json.JSONDecodeError as exc:
                raise Open311Error(f"{where}: not JSON ({exc})") from None
            ids = {str(r.get(ID_FIELD, "")) for r in rows}
            if not rows or ids <= seen:
                return
            seen |= ids
            yield rows
    raise Open311Error(f"{url}: more than {MAX_PAGES} pages")


def read_requests(source: str, page_size: int | None = None) -> list[dict[str, Any]]:
    """Every request of a ``requests.json`` file, or of all pages of an ``http(s)`` URL."""
    if source.startswith(("http://", "https://")):
        return [r for rows in fetch_pages(source, page_size) for r in rows]
    with open(Path(source), encoding="utf-8") as fh:
        try:
            doc = json.load(fh)
        except json.JSONDecodeError as exc:
            raise Open311Error(f"{source}: not JSON ({exc})") from None
    return requests_of(doc, source)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def requests_frame(requests: list[dict[str, Any]]) -> pd.DataFrame:
    """One all-string row per request, with every field of ``FIELDS`` (and any extra)."""
    columns = list(dict.fromkeys([*FIELDS, *(k for r in requests for k in r)]))
    return pd.DataFrame(
        [[_text(r.get(c)) for c in columns] for r in requests], columns=columns, dtype=str
    )
