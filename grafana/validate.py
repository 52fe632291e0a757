"""Checks on dashboard JSON that need no Grafana server.

- ``schema_problems``: every key we emit must survive a round trip through the Grafana
  Foundation SDK's dashboard types (``grafana-foundation-sdk`` 11.6, generated from Grafana's
  dashboard and panel schemas, with the panel plugins' option types registered): a key the
  schema does not know is dropped by the SDK and reported here.
- ``reference_problems``: stable, well-formed uid; unique panel ids; every ``$var`` used by a
  target or a variable query is a variable of the board defined before its use; every
  datasource reference names the provisioned ClickHouse datasource; panels inside the
  24-column grid without overlap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from grafana.macros import VARIABLE

UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
BUILTIN = frozenset(
    {
        "__from",
        "__to",
        "__interval",
        "__interval_ms",
        "__range",
        "__range_s",
        "__rate_interval",
        "__dashboard",
        "__user",
        "__org",
        "__timezone",
    }
)
PLUGIN_MACROS = re.compile(
    r"^__(conditionalAll|fromTime|toTime|timeFilter|dateFilter|"
    r"dateTimeFilter|dt|timeInterval|interval_s)"
)


def _paths(x: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(x, dict):
        for k, v in x.items():
            out.add(f"{prefix}/{k}")
            out |= _paths(v, f"{prefix}/{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out |= _paths(v, f"{prefix}[{i}]")
    return out


def schema_problems(doc: dict[str, Any]) -> list[str]:
    """Keys of ``doc`` that Grafana's dashboard schema (as the SDK types it) does not hold."""
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()
    back = json.loads(json.dumps(Dashboard.from_json(doc), cls=JSONEncoder))
    return [f"not in the dashboard schema: {p}" for p in sorted(_paths(doc) - _paths(back))]


def variable_names(sql: str) -> set[str]:
    """Names referenced as ``$name``, ``${name…}`` or ``[[name]]`` (not the plugin's macros)."""
    names = set()
    for m in VARIABLE.finditer(sql):
        name = m.group(1) or m.group(2) or m.group(4)
        if name in BUILTIN or PLUGIN_MACROS.match(name):
            continue
        names.add(name)
    return names


def _targets(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for p in doc.get("panels", []):
        for t in p.get("targets", []):
            yield f"panel {p['id']} ({p['title']}) {t.get('refId')}", t


def reference_problems(doc: dict[str, Any], datasource_uid: str, datasource_type: str) -> list[str]:
    out: list[str] = []
    if not UID.match(doc.get("uid", "")):
        out.append(f"bad uid {doc.get('uid')!r}")
    ids = [p["id"] for p in doc.get("panels", [])]
    if len(ids) != len(set(ids)):
        out.append(f"duplicate panel ids {ids}")
    defined: list[str] = []
    for v in doc.get("templating", {}).get("list", []):
        query = v.get("query") if isinstance(v.get("query"), str) else ""
        if v["type"] == "query":
            for name in variable_names(query) - set(defined):
                out.append(f"variable {v['name']} uses ${name} before it is defined")
        defined.append(v["name"])
    refs = [("dashboard", p.get("datasource")) for p in doc.get("panels", [])]
    refs += [(where, t.get("datasource")) for where, t in _targets(doc)]
    refs += [
        (f"variable {v['name']}", v.get("datasource"))
        for v in doc.get("templating", {}).get("list", [])
        if v["type"] == "query"
    ]
    for where, ds in refs:
        if ds is None or ds.get("uid") != datasource_uid or ds.get("type") != datasource_type:
            out.append(f"{where}: datasource {ds} is not {datasource_type}/{datasource_uid}")
    for where, t in _targets(doc):
        for name in variable_names(t.get("rawSql", "")) - set(defined):
            out.append(f"{where}: dangling variable ${name}")
    cells: dict[tuple[int, int], int] = {}
    for p in doc.get("panels", []):
        g = p["gridPos"]
        if g["x"] < 0 or g["x"] + g["w"] > 24:
            out.append(f"panel {p['id']} outside the 24-column grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    out.append(f"panel {p['id']} overlaps panel {cells[(x, y)]}")
                    break
                cells[(x, y)] = p["id"]
            else:
                continue
            break
    return out
