"""``gridpulse grafana push``: create or update the folder, the ClickHouse datasource and
the boards on a Grafana server through its HTTP API (``grafana-client``).

Idempotent: every object is read first and written only when it differs, so a second push
makes no write. Errors name the cause: Grafana unreachable, authentication refused, a board
changed on the server since it was read (version conflict; ``--overwrite`` replaces it), or
any other answer of the API.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from grafana.build import DASHBOARDS
from grafana.model import DATASOURCE_NAME, DATASOURCE_TYPE, DATASOURCE_UID
from grafana.users import PASSWORD_ENV, USER

FOLDER_UID = "gridpulse"
FOLDER_TITLE = "gridpulse"
Action = Literal["created", "updated", "unchanged"]


class PushError(RuntimeError):
    """A push that could not complete; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Change:
    kind: Literal["folder", "datasource", "dashboard"]
    uid: str
    action: Action


@dataclass(frozen=True, slots=True)
class ClickHouseTarget:
    """Where Grafana's ClickHouse datasource connects (native protocol)."""

    host: str
    port: int = 9000
    db: str = "gridpulse"
    user: str = USER
    password: str | None = None
    secure: bool = False


def datasource_body(ch: ClickHouseTarget) -> dict[str, Any]:
    """The datasource as the provisioning file defines it, with concrete settings."""
    body: dict[str, Any] = {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "isDefault": True,
        "jsonData": {
            "host": ch.host,
            "port": ch.port,
            "protocol": "native",
            "secure": ch.secure,
            "username": ch.user,
            "defaultDatabase": ch.db,
            "dialTimeout": 10,
            "queryTimeout": 60,
        },
    }
    if ch.password:
        body["secureJsonData"] = {"password": ch.password}
    return body


def load_dashboards(folder: Path = DASHBOARDS) -> list[dict[str, Any]]:
    """The committed boards, in file-name order."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


def _same_dashboard(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> bool:
    """Equal apart from what the server owns (``id``, ``version``)."""

    def strip(d: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in ("id", "version")}

    return strip(ours) == strip(theirs)


def _same_datasource(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> bool:
    """Every field we set has our value; the password is present when we have one (its
    value is never returned by Grafana, so an existing one is kept)."""
    for key, value in ours.items():
        if key == "secureJsonData":
            if not theirs.get("secureJsonFields", {}).get("password"):
                return False
        elif key == "jsonData":
            if any(theirs.get("jsonData", {}).get(k) != v for k, v in value.items()):
                return False
        elif theirs.get(key) != value:
            return False
    return True


def _guard(what: str, url: str, call: Callable[[], Any]) -> Any:
    """Run an API call, turning client errors into ``PushError`` with the cause (the HTTP
    library's connection errors are ``OSError``s)."""
    from grafana_client.client import (
        GrafanaClientError,
        GrafanaException,
        GrafanaServerError,
        GrafanaTimeoutError,
        GrafanaUnauthorizedError,
    )

    try:
        return call()
    except GrafanaUnauthorizedError as e:
        raise PushError(f"{what}: authentication failed (401) at {url}: check --token") from e
    except GrafanaTimeoutError as e:
        raise PushError(f"{what}: Grafana at {url} did not answer in time: {e}") from e
    except GrafanaClientError as e:
        if e.status_code == 403:
            raise PushError(
                f"{what}: permission denied (403): the token needs the Editor "
                "role (Admin for datasources)"
            ) from e
        if e.status_code == 412:
            raise PushError(
                f"{what}: version conflict (412): it was changed on the server "
                "since it was read; push again or use --overwrite"
            ) from e
        raise PushError(f"{what}: Grafana refused ({e.status_code}): {e.response}") from e
    except GrafanaServerError as e:
        raise PushError(f"{what}: Grafana server error ({e.status_code}): {e.response}") from e
    except (GrafanaException, OSError) as e:
        raise PushError(f"{what}: cannot reach Grafana at {url}: {e}") from e


def _missing(call: Callable[[], Any]) -> Any | None:
    """The object, or None when Grafana answers 404."""
    from grafana_client.client import GrafanaClientError

    try:
        return call()
    except GrafanaClientError as e:
        if e.status_code == 404:
            return None
        raise


def push_folder(api: Any, url: str, uid: str, title: str) -> Change:
    current = _guard(f"folder {uid}", url, lambda: _missing(lambda: api.folder.get_folder(uid)))
    if current is None:
        _guard(f"folder {uid}", url, lambda: api.folder.create_folder(title, uid=uid))
        return Change("folder", uid, "created")
    if current.get("title") == title:
        return Change("folder", uid, "unchanged")
    _guard(
        f"folder {uid}",
        url,
        lambda: api.folder.update_folder(uid, title=title, version=current.get("version")),
    )
    return Change("folder", uid, "updated")


def push_datasource(api: Any, url: str, body: dict[str, Any]) -> Change:
    uid = body["uid"]
    current = _guard(
        f"datasource {uid}",
        url,
        lambda: _missing(lambda: api.datasource.get_datasource_by_uid(uid)),
    )
    if current is None:
        if "secureJsonData" not in body:
            raise PushError(f"datasource {uid}: no password to create it with (set {PASSWORD_ENV})")
        _guard(f"datasource {uid}", url, lambda: api.datasource.create_datasource(body))
        return Change("datasource", uid, "created")
    if _same_datasource(body, current):
        return Change("datasource", uid, "unchanged")
    _guard(f"datasource {uid}", url, lambda: api.datasource.update_datasource_by_uid(uid, body))
    return Change("datasource", uid, "updated")


def push_dashboard(
    api: Any, url: str, doc: dict[str, Any], folder_uid: str, overwrite: bool
) -> Change:
    uid = doc["uid"]
    what = f"dashboard {uid}"
    current = _guard(what, url, lambda: _missing(lambda: api.dashboard.get_dashboard(uid)))
    body: dict[str, Any] = {
        "dashboard": dict(doc),
        "folderUid": folder_uid,
        "overwrite": overwrite,
        "message": "gridpulse grafana push",
    }
    if current is None:
        body["dashboard"].pop("id", None)
        body["dashboard"].pop("version", None)
        _guard(what, url, lambda: api.dashboard.update_dashboard(body))
        return Change("dashboard", uid, "created")
    theirs = current.get("dashboard", {})
    same_folder = current.get("meta", {}).get("folderUid") == folder_uid
    if same_folder and _same_dashboard(doc, theirs):
        return Change("dashboard", uid, "unchanged")
    body["dashboard"]["id"] = theirs.get("id")
    body["dashboard"]["version"] = theirs.get("version")
    _guard(what, url, lambda: api.dashboard.update_dashboard(body))
    return Change("dashboard", uid, "updated")


def push(
    url: str,
    token: str,
    *,
    dashboards: Sequence[dict[str, Any]] | None = None,
    clickhouse: ClickHouseTarget | None = None,
    folder_uid: str = FOLDER_UID,
    folder_title: str = FOLDER_TITLE,
    overwrite: bool = False,
    timeout: float = 10.0,
) -> list[Change]:
    """Bring the folder, the datasource (when ``clickhouse`` is given) and the boards on the
    Grafana at ``url`` (API token ``token``) to the committed state; returns what changed."""
    from grafana_client import GrafanaApi

    if not token:
        raise PushError("no API token: pass --token (a service-account token)")
    api = GrafanaApi.from_url(url.rstrip("/"), credential=token, timeout=timeout)
    _guard("health", url, api.health.check)
    changes = [push_folder(api, url, folder_uid, folder_title)]
    if clickhouse is not None:
        changes.append(push_datasource(api, url, datasource_body(clickhouse)))
    for doc in load_dashboards() if dashboards is None else dashboards:
        changes.append(push_dashboard(api, url, doc, folder_uid, overwrite))
    return changes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gridpulse grafana push", description=__doc__)
    p.add_argument("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    p.add_argument(
        "--token",
        default=os.environ.get("GRAFANA_TOKEN"),
        help="service-account token (default: $GRAFANA_TOKEN)",
    )
    p.add_argument("--dashboards", type=Path, default=DASHBOARDS, help="folder of board JSON")
    p.add_argument("--folder", default=FOLDER_UID, help="folder uid (and title)")
    p.add_argument("--clickhouse-host", help="also push the datasource, connecting here")
    p.add_argument("--clickhouse-port", type=int, default=9000)
    p.add_argument("--db", default="gridpulse")
    p.add_argument("--overwrite", action="store_true", help="replace boards changed on Grafana")
    p.add_argument("--timeout", type=float, default=10.0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    ch = None
    if args.clickhouse_host:
        ch = ClickHouseTarget(
            args.clickhouse_host,
            args.clickhouse_port,
            args.db,
            password=os.environ.get(PASSWORD_ENV),
        )
    try:
        changes = push(
            args.url,
            args.token or "",
            dashboards=load_dashboards(args.dashboards),
            clickhouse=ch,
            folder_uid=args.folder,
            folder_title=args.folder,
            overwrite=args.overwrite,
            timeout=args.timeout,
        )
    except PushError as e:
        print(f"grafana push failed: {e}", file=sys.stderr)
        return 1
    for c in changes:
        print(f"{c.kind} {c.uid}: {c.action}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
