"""The alert stage in the real worker: cases published to a real broker breach their (fast)
SLA, the worker's alerts agent groups the SLA events and delivers signed webhooks to a real
receiver on 127.0.0.1 that deduplicates by webhook-id; also across a worker SIGKILL while a
webhook is in flight, and through the API and the CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from alerts.notify.webhook import WebhookSecret
from alerts.receiver import SLOW, Inbox, ReceiverServer, Response
from core.city import load_city
from infra.ports import free_port
from tests.integration.conftest import publish_recorded
from tests.integration.harness import ROOT, PipelineEnv, WorkerProc
from tests.integration.test_pipeline import SAMPLE
from tests.integration.test_sla import FAST_SLA, hotline

pytestmark = pytest.mark.integration
CASES = [f"a{i}" for i in range(4)]  # never registered: warning at 9 s, 14.4 s, breach at 18 s
OPERATOR, VIEWER = "gpat_operator-test-token", "gpat_viewer-test-token"


def routes(url: str) -> dict:
    """One receiver; a group per kind (all warnings, all breaches); a breach mutes the
    warning of its case and stage."""
    return {
        "board_url": "https://grafana.example/d/cases",
        "route": {
            "receiver": "team",
            "group_by": ["kind"],
            "group_wait": "3s",
            "group_interval": "1h",
            "repeat_interval": "4h",
        },
        "inhibit_rules": [
            {
                "source_matchers": ['alertname="sla"', 'kind="breach"'],
                "target_matchers": ['alertname="sla"', 'kind="warning"'],
                "equal": ["case", "stage"],
            }
        ],
        "receivers": [
            {
                "name": "team",
                "webhook": {
                    "url": url,
                    "secret_env": ["HOOK_TEAM"],
                    "timeout": "2s",
                    "retry": {"max_attempts": 50, "base": "100ms", "cap": "1s"},
                },
            }
        ],
    }


def until(cond: Callable[[], bool], what: str, worker: WorkerProc, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if not worker.alive():
            raise RuntimeError(f"worker died while waiting for {what}:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout}s:\n{worker.log_tail()}")
        time.sleep(0.2)


def outbox(worker: WorkerProc) -> list[list[str]]:
    """(delivered, pending) of the receiver, from the worker's read model."""
    return worker.query(
        "SELECT delivered, pending FROM gridpulse.receiver_status WHERE receiver = 'team'"
    )


def cli(penv: PipelineEnv, worker: WorkerProc, *args: str, token: str = OPERATOR):
    env = penv.env(worker.port) | {"GRIDPULSE_ALERTS_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "gridpulse.cli", "alerts", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Receiver:
    """The reference receiver (verifies, dedups by webhook-id); ``gate`` may hold requests."""

    def __init__(self, gate=None) -> None:
        self.secret = WebhookSecret.generate()
        self.inbox = Inbox([WebhookSecret(self.secret)])
        self.server = ReceiverServer(self.inbox, gate=gate).start()

    def by_kind(self) -> dict[str, list[dict]]:
        order, _, _ = self.inbox.snapshot()
        out: dict[str, list[dict]] = {}
        for wid in order:
            body = self.inbox.payloads[wid]
            out.setdefault(body["group_labels"]["kind"], []).append(body)
        return out


def pipeline(broker: str, tmp_path: Path, receiver: Receiver) -> PipelineEnv:
    route_file = tmp_path / "routes.yaml"
    route_file.write_text(yaml.safe_dump(routes(receiver.server.url)))
    tokens = ",".join(
        f"{who}:{role}:{hashlib.sha256(tok.encode()).hexdigest()}"
        for who, role, tok in (("li.wei", "operator", OPERATOR), ("board", "viewer", VIEWER))
    )
    return PipelineEnv(
        broker,
        f"chdb://{tmp_path}/chdb",
        SAMPLE,
        tmp_path / "p",
        extra={
            "GRIDPULSE_SLA_FILE": str(FAST_SLA),
            "GRIDPULSE_SLA__TICK_SECONDS": "0.25",
            "GRIDPULSE_SINK__BATCH_SECONDS": "0.25",
            "GRIDPULSE_ALERTS__ENABLED": "true",
            # the cases' requests share a caller and a place: keep their repeat-complaint and
            # duplicate warnings out of this test of SLA grouping
            "GRIDPULSE_DETECT__REPORT_RULES": "false",
            "GRIDPULSE_ALERTS__ROUTES_FILE": str(route_file),
            "GRIDPULSE_ALERTS__API_PORT": str(free_port()),
            "GRIDPULSE_ALERTS__TICK_SECONDS": "0.25",
            "GRIDPULSE_ALERTS_API_TOKENS": tokens,
            "HOOK_TEAM": receiver.secret,
        },
    )


def open_cases(penv: PipelineEnv) -> None:
    city = load_city(SAMPLE)
    opened = datetime.fromtimestamp(time.time(), UTC)
    publish_recorded(penv, [hotline(city, c, opened) for c in CASES])


def assert_two_notifications_cover_every_alert(rcv: Receiver) -> None:
    """Grouping: one webhook for all warnings, one for all breaches; every alert in one."""
    kinds = rcv.by_kind()
    assert sorted(kinds) == ["breach", "warning"], kinds.keys()
    assert [len(v) for v in kinds.values()] == [1, 1]
    for kind, (body,) in kinds.items():
        assert body["reason"] == "group" and body["receiver"] == "team"
        assert sorted(a["labels"]["case"] for a in body["alerts"]) == [f"H-{c}" for c in CASES]
        assert {a["labels"]["kind"] for a in body["alerts"]} == {kind}
        assert all(a["status"] == "firing" for a in body["alerts"])
    _, _, rejected = rcv.inbox.snapshot()
    assert rejected == {}  # every request was signed with the receiver's secret


def test_sla_breaches_reach_a_real_receiver_grouped_and_are_acked_through_the_cli(broker, tmp_path):
    rcv = Receiver()
    penv = pipeline(broker, tmp_path, rcv)
    worker = WorkerProc(penv).start().wait_ready()
    try:
        open_cases(penv)
        until(lambda: len(rcv.inbox.snapshot()[0]) >= 2, "two webhooks", worker)
        until(lambda: outbox(worker) == [["2", "0"]], "deliveries stored", worker)
        assert_two_notifications_cover_every_alert(rcv)
        assert rcv.inbox.snapshot()[1] == 0  # nothing was sent twice in a steady run

        listed = cli(penv, worker, "list", token=VIEWER)
        assert listed.returncode == 0, listed.stderr
        rows = [line.split("\t") for line in listed.stdout.splitlines()]
        assert sorted((r[3], r[4]) for r in rows) == sorted(
            (k, f"H-{c}") for c in CASES for k in ("breach", "warning")
        )
        assert {r[7] for r in rows if r[3] == "warning"} != {"-"}  # inhibited by breaches
        breach = next(r[0] for r in rows if r[3] == "breach")
        refused = cli(penv, worker, "ack", breach, token=VIEWER)
        assert refused.returncode == 2 and "403 forbidden" in refused.stderr
        unknown = cli(penv, worker, "ack", breach, token="gpat_wrong")
        assert unknown.returncode == 2 and "401 unauthorized" in unknown.stderr
        acked = cli(penv, worker, "ack", breach, "--note", "crew on site")
        assert acked.returncode == 0, acked.stderr
        assert acked.stdout.strip() == f"ack: {breach} firing by li.wei"
        assert worker.query(
            f"SELECT acked_by FROM gridpulse.alert_ack_times WHERE fingerprint = '{breach}'"
        ) == [["li.wei"]]
        board = cli(penv, worker, "list", "--views")
        assert board.returncode == 0, board.stderr
        acked_rows = [r.split("\t") for r in board.stdout.splitlines() if breach in r]
        assert [(r[9], r[10]) for r in acked_rows] == [("1", "li.wei")]
        added = cli(penv, worker, "silence", "add", "--matcher", 'case="H-a1"', "--reason", "known")
        assert added.returncode == 0, added.stderr
        silence_id = added.stdout.strip()
        listed = cli(penv, worker, "silence", "list", token=VIEWER)
        assert [line.split("\t")[:3] for line in listed.stdout.splitlines()] == [
            [silence_id, "active", "li.wei"]
        ]
        expired = cli(penv, worker, "silence", "expire", silence_id)
        assert expired.returncode == 0 and expired.stdout.startswith(f"expired {silence_id}")
        dead = cli(penv, worker, "deliveries", token=VIEWER)
        assert dead.returncode == 0 and dead.stdout == ""
        redriven = cli(penv, worker, "redeliver", "--receiver", "team")
        assert redriven.returncode == 0 and redriven.stdout.strip() == "redriven: 0"
        audit = worker.query("SELECT who, action FROM gridpulse.alert_audit ORDER BY seq")
        assert audit == [
            ["li.wei", "ack"],
            ["li.wei", "silence_add"],
            ["li.wei", "silence_expire"],
            ["li.wei", "redrive"],
        ]
        silences = worker.query("SELECT silence_id, expired_by FROM gridpulse.alert_silences FINAL")
        assert silences == [[silence_id, "li.wei"]]
    finally:
        worker.stop()
        rcv.server.stop()


def test_worker_sigkill_while_a_webhook_is_in_flight_loses_nothing_and_pages_nobody_twice(
    broker, tmp_path
):
    hold = threading.Event()
    held: list[str] = []  # webhook-ids of breach notifications held at the receiver

    def gate(headers, body):
        if b'"kind":"breach"' in body and not hold.is_set():
            held.append(headers["webhook-id"])
            hold.wait(60)  # the worker is killed while this request is in flight
            return Response(SLOW)
        return None

    rcv = Receiver(gate)
    penv = pipeline(broker, tmp_path, rcv)
    worker = WorkerProc(penv).start().wait_ready()
    try:
        open_cases(penv)
        until(lambda: bool(held), "the breach webhook in flight", worker)
        worker.kill()
        hold.set()  # the held request is processed by the receiver after the worker died
        worker = WorkerProc(penv, "restarted").start().wait_ready()
        until(lambda: rcv.inbox.snapshot()[1] >= 1, "the breach webhook sent again", worker)
        until(lambda: outbox(worker) == [["2", "0"]], "deliveries stored", worker)
        order, duplicates, _ = rcv.inbox.snapshot()
        assert len(order) == 2 and duplicates >= 1  # the same webhook-id again, processed once
        assert set(held) == {
            w for w in order if rcv.inbox.payloads[w]["group_labels"]["kind"] == "breach"
        }
        assert_two_notifications_cover_every_alert(rcv)
        stats = worker.child.get("/alerts/stats/")
        assert stats is not None and stats["open_alerts"] == 2 * len(CASES)
        assert stats["pending"] == 0 and stats["dead"] == 0
    finally:
        worker.stop()
        rcv.server.stop()
