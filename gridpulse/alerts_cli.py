"""``gridpulse alerts …`` (a client of the worker's alerts API) and ``gridpulse
webhook-receiver`` (the reference receiver, ``alerts.receiver``).

The API token comes from ``GRIDPULSE_ALERTS_TOKEN`` or ``--token-file`` (never an argument:
it would show in the process list and shell history). ``alerts list --views`` reads the
``open_alerts`` view instead (no token: the read model, as ``gridpulse query`` does).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from core.settings import Settings
from sinks.clickhouse import alerts as alert_sql

TOKEN_ENV = "GRIDPULSE_ALERTS_TOKEN"


class ApiError(RuntimeError):
    """A refusal or an unreachable API, worded for the operator."""


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ApiError(f"no API token: set {TOKEN_ENV} or pass --token-file")
    return token


def call(
    settings: Settings, args: argparse.Namespace, method: str, path: str, body: Any = None
) -> Any:
    """One API request; raises :class:`ApiError` with a clear message on 401/403/404/409,
    any other error answer, or when nothing answers."""
    base = (args.api or settings.alerts.api_url).rstrip("/")
    headers = {"authorization": f"Bearer {_token(args)}"}
    try:
        r = httpx.request(method, f"{base}{path}", headers=headers, json=body, timeout=15)
    except httpx.HTTPError as exc:
        raise ApiError(
            f"cannot reach the alerts API at {base} ({type(exc).__name__}): is a worker "
            "running with GRIDPULSE_ALERTS__ENABLED=true and this API host/port?"
        ) from None
    if r.status_code < 300:
        return r.json()
    try:
        message = r.json().get("error", r.text)
    except ValueError:
        message = r.text.strip()
    if r.status_code == 401:
        raise ApiError(f"401 unauthorized: {message} (check {TOKEN_ENV} / --token-file)")
    if r.status_code == 403:
        raise ApiError(f"403 forbidden: {message} (ask for an operator token)")
    raise ApiError(f"{r.status_code}: {message}")


def _print_rows(rows: list[list[Any]]) -> None:
    for row in rows:
        print("\t".join("" if v is None else str(v) for v in row))


def cmd_alerts(args: argparse.Namespace) -> int:
    """Dispatch ``gridpulse alerts <action>``; 2 with a message on a refusal."""
    try:
        return _run(args, Settings())
    except ApiError as exc:
        print(f"gridpulse alerts: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, s: Settings) -> int:
    act = args.action
    if act == "list" and args.views:
        from gridpulse.query import run_query

        sys.stdout.write(run_query(s, alert_sql.open_alerts_sql(s.database, args.limit)))
        return 0
    if act == "list":
        for a in call(s, args, "GET", "/alerts")[: args.limit]:
            lab = a["labels"]
            _print_rows(
                [
                    [
                        a["fingerprint"],
                        lab.get("severity", ""),
                        lab.get("alertname", ""),
                        lab.get("kind", ""),
                        lab.get("case") or lab.get("grid") or lab.get("street", ""),
                        a["starts_at"],
                        a["acknowledged_by"] or "-",
                        ",".join(a["silenced_by"] + a["inhibited_by"]) or "-",
                        a["annotations"].get("summary", ""),
                    ]
                ]
            )
        return 0
    if act in ("ack", "resolve"):
        a = call(s, args, "POST", f"/alerts/{args.fingerprint}/{act}", {"note": args.note})
        who = a["acknowledged_by"] if act == "ack" else a["resolved_by"]
        print(f"{act}: {a['fingerprint']} {a['status']} by {who}")
        return 0
    if act == "silence":
        return _silence(args, s)
    if act == "deliveries":
        out = call(s, args, "GET", f"/deliveries?status={args.status}")
        for name, why in out["disabled"].items():
            print(f"# receiver {name} disabled: {why}", file=sys.stderr)
        _print_rows(
            [
                [d["id"], d["receiver"], d["status"], d["attempt"], d["last_error"]]
                for d in out["deliveries"]
            ]
        )
        return 0
    if act == "redeliver":
        if not args.ids and not args.receiver:
            raise ApiError("name notification ids or --receiver")
        out = call(
            s, args, "POST", "/deliveries/redrive", {"ids": args.ids, "receiver": args.receiver}
        )
        print(f"redriven: {len(out['redriven'])}")
        _print_rows([[i] for i in out["redriven"]])
        return 0
    raise ApiError(f"unknown action {act}")


def _silence(args: argparse.Namespace, s: Settings) -> int:
    if args.silence_action == "add":
        body = {"matchers": args.matcher, "reason": args.reason, "duration": args.duration}
        out = call(s, args, "POST", "/silences", body)
        print(out["id"])
    elif args.silence_action == "expire":
        out = call(s, args, "DELETE", f"/silences/{args.id}")
        print(f"expired {out['id']} at {out['ends_at']}")
    else:
        rows = call(s, args, "GET", "/silences")
        _print_rows(
            [
                [x["id"], "active" if x["active"] else "ended", x["author"], x["ends_at"]]
                + [" ".join(x["matchers"]), x["reason"]]
                for x in rows
            ]
        )
    return 0


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``alerts`` and ``webhook-receiver`` to the CLI's sub-parsers."""
    api = argparse.ArgumentParser(add_help=False, parents=[common])
    api.add_argument("--api", help="API base URL (default: from GRIDPULSE_ALERTS__API_*)")
    api.add_argument("--token-file", help=f"file holding the API token (else ${TOKEN_ENV})")
    al = sub.add_parser("alerts", help="on-call alerts: list, ack, resolve, silence, redeliver")
    al.set_defaults(fn=cmd_alerts)
    acts = al.add_subparsers(dest="action", required=True)
    ls = acts.add_parser("list", parents=[api], help="open alerts (API, or --views)")
    ls.add_argument("--views", action="store_true", help="read the open_alerts view instead")
    ls.add_argument("--limit", type=int, default=100)
    for name in ("ack", "resolve"):
        x = acts.add_parser(name, parents=[api], help=f"{name} an alert by fingerprint")
        x.add_argument("fingerprint")
        x.add_argument("--note", default="")
    si = acts.add_parser("silence", help="add, expire or list silences")
    sa = si.add_subparsers(dest="silence_action", required=True)
    add = sa.add_parser("add", parents=[api], help="mute matching alerts for a while")
    add.add_argument("--matcher", action="append", required=True, help='e.g. street="S1"')
    add.add_argument("--reason", required=True)
    add.add_argument("--duration", default="2h", help="e.g. 30m, 2h, 1d")
    ex = sa.add_parser("expire", parents=[api], help="end a silence now")
    ex.add_argument("id")
    sa.add_parser("list", parents=[api], help="all silences")
    dl = acts.add_parser("deliveries", parents=[api], help="dead (or pending) deliveries")
    dl.add_argument("--status", choices=["dead", "pending"], default="dead")
    rd = acts.add_parser("redeliver", parents=[api], help="send dead deliveries again")
    rd.add_argument("ids", nargs="*", help="notification ids (= webhook-id)")
    rd.add_argument("--receiver", default="", help="all dead deliveries of this receiver")

    from alerts.receiver import parser

    sub.add_parser(
        "webhook-receiver",
        parents=[parser(add_help=False), common],
        help="reference receiver: verify signatures, dedup by webhook-id, print or store",
    ).set_defaults(fn=cmd_webhook_receiver)


def cmd_webhook_receiver(args: argparse.Namespace) -> int:
    from alerts.receiver import serve

    return serve(args)
