"""``grafana push`` against a real HTTP server on 127.0.0.1 that records every request and
answers like Grafana's HTTP API (health, folders, datasources, dashboards, search)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import pytest

from grafana import push as gp
from grafana.model import DATASOURCE_UID

TOKEN = "glsa_test_token"


@dataclass
class FakeGrafana:
    """State and request log of the fake server."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    next_id: int = 1

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _ in self.requests if m in ("POST", "PUT", "DELETE")]


def _handler(state: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _body(self) -> dict[str, Any]:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}")

        def _route(self, method: str) -> None:
            path = urlparse(self.path).path
            state.requests.append((method, path, self.headers.get("Authorization")))
            if path == "/api/frontend/settings":
                return self._send(200, {"buildInfo": {"version": "11.6.0"}})
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, {"message": "Unauthorized"})
            body = self._body() if method in ("POST", "PUT") else {}
            parts = path.strip("/").split("/")
            if parts[:2] == ["api", "folders"]:
                return self._folders(method, parts[2:], body)
            if parts[:2] == ["api", "datasources"]:
                return self._datasources(method, parts[2:], body)
            if parts[:2] == ["api", "dashboards"]:
                return self._dashboards(method, parts[2:], body)
            if parts[:2] == ["api", "search"]:
                return self._send(200, [{"uid": u, "type": "dash-db"} for u in state.dashboards])
            return self._send(404, {"message": "Not found"})

        def _folders(self, method: str, rest: list[str], body: dict[str, Any]) -> None:
            if method == "GET" and rest:
                f = state.folders.get(rest[0])
                return self._send(200, f) if f else self._send(404, {"message": "folder not found"})
            if method == "POST":
                f = {"uid": body["uid"], "title": body["title"], "id": state.next_id, "version": 1}
                state.next_id += 1
                state.folders[body["uid"]] = f
                return self._send(200, f)
            if method == "PUT":
                f = state.folders[rest[0]]
                if body.get("version") != f["version"] and not body.get("overwrite"):
                    return self._send(
                        412, {"message": "the folder has been changed by someone else"}
                    )
                f.update(title=body["title"], version=f["version"] + 1)
                return self._send(200, f)
            return self._send(405, {"message": "method not allowed"})

        def _datasources(self, method: str, rest: list[str], body: dict[str, Any]) -> None:
            if method == "GET" and rest[:1] == ["uid"]:
                ds = state.datasources.get(rest[1])
                if ds is None:
                    return self._send(404, {"message": "Data source not found"})
                shown = {k: v for k, v in ds.items() if k != "secureJsonData"}
                shown["secureJsonFields"] = {k: True for k in ds.get("secureJsonData", {})}
                return self._send(200, shown)
            if method in ("POST", "PUT"):
                uid = body["uid"] if method == "POST" else rest[1]
                if method == "POST" and uid in state.datasources:
                    return self._send(
                        409, {"message": "data source with the same name already exists"}
                    )
                old = state.datasources.get(uid, {})
                stored = {**body, "id": old.get("id", state.next_id), "readOnly": False}
                if "secureJsonData" not in body and "secureJsonData" in old:
                    stored["secureJsonData"] = old["secureJsonData"]
                state.next_id += 1
                state.datasources[uid] = stored
                return self._send(200, {"datasource": stored, "message": "Datasource added"})
            return self._send(405, {"message": "method not allowed"})

        def _dashboards(self, method: str, rest: list[str], body: dict[str, Any]) -> None:
            if method == "GET" and rest[:1] == ["uid"]:
                entry = state.dashboards.get(rest[1])
                if entry is None:
                    return self._send(404, {"message": "Dashboard not found"})
                return self._send(200, entry)
            if method == "POST" and rest == ["db"]:
                dash = dict(body["dashboard"])
                uid = dash["uid"]
                old = state.dashboards.get(uid)
                stale = old is not None and dash.get("version") != old["dashboard"]["version"]
                if stale and not body.get("overwrite"):
                    return self._send(
                        412,
                        {
                            "status": "version-mismatch",
                            "message": "The dashboard has been changed by someone else",
                        },
                    )
                version = (old["dashboard"]["version"] + 1) if old else 1
                dash_id = old["dashboard"]["id"] if old else state.next_id
                state.next_id += 1
                dash.update(id=dash_id, version=version)
                state.dashboards[uid] = {
                    "dashboard": dash,
                    "meta": {"folderUid": body.get("folderUid", "")},
                }
                return self._send(
                    200,
                    {
                        "id": dash_id,
                        "uid": uid,
                        "status": "success",
                        "version": version,
                        "url": f"/d/{uid}",
                    },
                )
            return self._send(405, {"message": "method not allowed"})

        def do_GET(self) -> None:  # noqa: N802
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._route("PUT")

    return Handler


@contextmanager
def fake_grafana() -> Iterator[tuple[str, FakeGrafana]]:
    state = FakeGrafana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


CH = gp.ClickHouseTarget("clickhouse", 9000, "gridpulse", password="pw")


def test_first_push_creates_everything_with_the_token():
    boards = gp.load_dashboards()
    with fake_grafana() as (url, state):
        changes = gp.push(url, TOKEN, clickhouse=CH)
        assert [(c.kind, c.action) for c in changes] == [
            ("folder", "created"),
            ("datasource", "created"),
            *[("dashboard", "created")] * len(boards),
        ]
        assert state.writes() == [
            ("POST", "/api/folders"),
            ("POST", "/api/datasources"),
            *[("POST", "/api/dashboards/db")] * len(boards),
        ]
        api_calls = [r for r in state.requests if r[1] != "/api/frontend/settings"]
        assert all(auth == f"Bearer {TOKEN}" for _, _, auth in api_calls)
        assert set(state.dashboards) == {b["uid"] for b in boards}
        assert all(e["meta"]["folderUid"] == "gridpulse" for e in state.dashboards.values())
        stored = state.dashboards["gridpulse-sla"]["dashboard"]
        sla = next(b for b in boards if b["uid"] == "gridpulse-sla")
        assert stored["panels"] == sla["panels"]
        ds = state.datasources[DATASOURCE_UID]
        assert ds["type"] == "grafana-clickhouse-datasource"
        assert ds["jsonData"]["username"] == "gridpulse_grafana"
        assert ds["secureJsonData"] == {"password": "pw"}


def test_second_push_changes_nothing():
    with fake_grafana() as (url, state):
        gp.push(url, TOKEN, clickhouse=CH)
        before = len(state.writes())
        again = gp.push(url, TOKEN, clickhouse=CH)
        assert {c.action for c in again} == {"unchanged"}
        assert len(state.writes()) == before
        versions = {u: e["dashboard"]["version"] for u, e in state.dashboards.items()}
        assert set(versions.values()) == {1}


def test_a_changed_board_is_updated_with_the_server_version():
    boards = gp.load_dashboards()
    with fake_grafana() as (url, state):
        gp.push(url, TOKEN, dashboards=boards)
        edited = [dict(b) for b in boards]
        edited[0] = {**edited[0], "refresh": "5m"}
        changes = gp.push(url, TOKEN, dashboards=edited)
        assert [c.action for c in changes] == ["unchanged", "updated", "unchanged", "unchanged"]
        entry = state.dashboards[edited[0]["uid"]]
        assert entry["dashboard"]["refresh"] == "5m" and entry["dashboard"]["version"] == 2


def test_version_conflict_is_reported_and_overwrite_resolves_it(monkeypatch):
    boards = gp.load_dashboards()[:1]
    with fake_grafana() as (url, state):
        gp.push(url, TOKEN, dashboards=boards)
        uid = boards[0]["uid"]
        real_get = gp.push_dashboard

        def stale_read(api, url_, doc, folder_uid, overwrite):
            state.dashboards[uid]["dashboard"]["version"] = 7  # someone saved meanwhile
            original = api.dashboard.get_dashboard

            def older(u):
                got = original(u)
                got["dashboard"]["version"] = 6
                return got

            api.dashboard.get_dashboard = older
            return real_get(api, url_, doc, folder_uid, overwrite)

        monkeypatch.setattr(gp, "push_dashboard", stale_read)
        with pytest.raises(gp.PushError, match="version conflict"):
            gp.push(url, TOKEN, dashboards=[{**boards[0], "refresh": "1h"}])
        changes = gp.push(url, TOKEN, dashboards=[{**boards[0], "refresh": "1h"}], overwrite=True)
        assert changes[-1].action == "updated"


def test_errors_are_surfaced_clearly():
    with fake_grafana() as (url, _state):
        with pytest.raises(gp.PushError, match=r"authentication failed \(401\)"):
            gp.push(url, "wrong-token")
        with pytest.raises(gp.PushError, match="no password"):
            gp.push(url, TOKEN, clickhouse=gp.ClickHouseTarget("ch"))
    with pytest.raises(gp.PushError, match="cannot reach Grafana"):
        gp.push(url, TOKEN, timeout=2)  # the server is gone
    with pytest.raises(gp.PushError, match="no API token"):
        gp.push(url, "")


def test_main_prints_changes_and_fails_with_a_message(capsys, monkeypatch):
    monkeypatch.setenv("GRIDPULSE_GRAFANA_PASSWORD", "pw")
    with fake_grafana() as (url, _state):
        argv = ["--url", url, "--token", TOKEN, "--clickhouse-host", "clickhouse"]
        assert gp.main(argv) == 0
        out = capsys.readouterr().out
        assert "dashboard gridpulse-operations: created" in out
        assert gp.main(argv) == 0
        assert "created" not in capsys.readouterr().out
        assert gp.main(["--url", url, "--token", "nope"]) == 1
        assert "authentication failed" in capsys.readouterr().err
