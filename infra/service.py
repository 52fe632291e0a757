"""The base of every local service: a background process with a pid file, log and probe.

No Docker, no systemd: every service is a background process in its own session, recorded
in ``<data_dir>/<service>/<service>.pid`` (JSON: pid + exact command line) with its output in
``<data_dir>/<service>/<service>.log``. ``start()`` is idempotent, refuses ports held by
someone else, and waits for real readiness (a protocol-level request, not just an open port);
``stop()`` sends SIGTERM, then SIGKILL after a timeout. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from infra.ports import HOST, port_in_use

# Popen objects of the children this process started, so they are reaped (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A local service could not be started, stopped or reached; the message says what to do."""


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


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, colour codes removed ("(no log)" if unreadable)."""
    try:
        data = path.read_bytes()[-16_000:].decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(_ANSI.sub("", data).splitlines()[-lines:])


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
        return tail(self.log_file, lines)

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
