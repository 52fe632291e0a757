"""A small reference webhook receiver: verifies Standard Webhooks signatures, deduplicates by
``webhook-id`` and records (and optionally prints or appends to a JSON-lines file) the alerts.

An example for coordinators' tooling, and the receiver the tests use. Standard library only:
``http.server`` in a background thread. Answers 200 for a processed or duplicate webhook,
401 for a bad signature or a stale timestamp, 400 for a body that is not JSON.

    python -m alerts.receiver --secret-file /run/secrets/hook --port 8787
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from alerts.notify.webhook.signing import (
    DEFAULT_TOLERANCE_S,
    SignatureError,
    WebhookSecret,
    load_secrets,
    verify,
)


@dataclass(frozen=True)
class Response:
    status: int
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait before answering


SLOW = 0
"""A gate's ``Response(SLOW, delay_s=…)`` waits, then processes the request normally."""


Gate = Callable[[Mapping[str, str], bytes], Response | None]
"""Decides a response before verification (fault injection in tests and demos); None goes on."""


class Inbox:
    """What a receiver has processed; safe to use from several threads."""

    def __init__(
        self,
        secrets: Sequence[WebhookSecret],
        tolerance_s: int = DEFAULT_TOLERANCE_S,
        clock_s: Callable[[], float] = time.time,
        on_webhook: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self._secrets = tuple(secrets)
        self._tolerance_s = tolerance_s
        self._clock_s = clock_s
        self._on_webhook = on_webhook
        self._lock = threading.Lock()
        self.payloads: dict[str, dict[str, Any]] = {}  # webhook-id → body, first copy
        self.order: list[str] = []  # webhook-ids in processing order
        self.duplicates = 0
        self.rejected: Counter[str] = Counter()

    def handle(self, headers: Mapping[str, str], body: bytes) -> Response:
        """Verify, deduplicate and record one request."""
        try:
            wid = verify(headers, body, self._secrets, self._clock_s(), self._tolerance_s)
        except SignatureError as e:
            with self._lock:
                self.rejected[str(e)] += 1
            return Response(401, str(e))
        try:
            payload = json.loads(body)
        except ValueError:
            with self._lock:
                self.rejected["body is not JSON"] += 1
            return Response(400, "body is not JSON")
        with self._lock:
            if wid in self.payloads:
                self.duplicates += 1
                return Response(200, "duplicate")
            self.payloads[wid] = payload
            self.order.append(wid)
        if self._on_webhook is not None:
            self._on_webhook(wid, payload)
        return Response(200, "ok")

    def snapshot(self) -> tuple[list[str], int, dict[str, int]]:
        """(processed ids in order, duplicates, rejections by reason)."""
        with self._lock:
            return list(self.order), self.duplicates, dict(self.rejected)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: senders reuse connections
    disable_nagle_algorithm = True  # headers and body are separate writes

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        resp = self.server.gate(headers, body) if self.server.gate else None
        if resp is not None and resp.delay_s:
            time.sleep(resp.delay_s)
        if resp is None or resp.status == SLOW:
            resp = self.server.inbox.handle(headers, body)
        self._answer(resp)

    def _answer(self, resp: Response) -> None:
        data = resp.body.encode()
        try:
            self.send_response(resp.status)
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.send_header("content-type", "text/plain; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up (timeout); it will retry

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], inbox: Inbox, gate: Gate | None) -> None:
        super().__init__(addr, _Handler)
        self.inbox = inbox
        self.gate = gate
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close kept-alive connections too, so a stopped receiver is really down."""
        with self._conn_lock:
            conns, self._connections = list(self._connections), set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


class ReceiverServer:
    """The receiver's HTTP server in a background thread; ``stop`` then ``start`` takes the
    same port again (a receiver that is down for a while)."""

    def __init__(
        self, inbox: Inbox, host: str = "127.0.0.1", port: int = 0, gate: Gate | None = None
    ) -> None:
        self.inbox, self.host, self.port, self.gate = inbox, host, port, gate
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def start(self) -> ReceiverServer:
        self._server = _Server((self.host, self.port), self.inbox, self.gate)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_connections()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ReceiverServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _printer(out: Path | None) -> Callable[[str, dict[str, Any]], None]:
    def show(wid: str, payload: dict[str, Any]) -> None:
        for a in payload.get("alerts", []):
            labels, ann = a.get("labels", {}), a.get("annotations", {})
            print(
                f"{wid} {a.get('status')} {labels.get('severity', '')} {ann.get('summary', '')}",
                flush=True,
            )
        if out is not None:
            with out.open("a") as f:
                f.write(json.dumps({"webhook_id": wid, "payload": payload}) + "\n")

    return show


def parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The receiver's command-line options (also a parent of ``gridpulse webhook-receiver``)."""
    p = argparse.ArgumentParser(
        prog="gridpulse webhook-receiver", description=__doc__.split("\n")[0], add_help=add_help
    )
    p.add_argument("--secret-file", action="append", default=[], help="whsec_ secret file (≤2)")
    p.add_argument("--secret-env", action="append", default=[], help="variable with a secret")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE_S, help="seconds")
    p.add_argument("--out", type=Path, help="append processed webhooks to this JSON-lines file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return serve(parser().parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Run the receiver until interrupted (options from :func:`parser`)."""
    try:
        secrets = load_secrets(args.secret_env, args.secret_file)
    except (OSError, ValueError) as e:
        print(f"webhook-receiver: {e}", file=sys.stderr)
        return 2
    inbox = Inbox(secrets, args.tolerance, on_webhook=_printer(args.out))
    server = ReceiverServer(inbox, args.host, args.port).start()
    print(f"listening on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
