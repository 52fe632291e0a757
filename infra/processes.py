"""Short-lived child processes with a web port: start, wait until ready, stop, read the log.

A ``Child`` runs in a session of its own (its own process group), so ``stop()`` and ``kill()``
reach everything it forked; its stdout and stderr go to one log file, appended. It is ready
when an HTTP GET on its web port answers 200. ``gridpulse bench`` and the integration tests run
their workers this way; the long-lived local services keep pid files instead
(``infra.service``), so that they outlive the command that started them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import httpx

from infra.ports import HOST


class Child:
    """One child process, its log file, and an HTTP client for its web port.

    Nothing runs before ``start()``. ``stop()`` (SIGTERM, SIGKILL after a timeout) and
    ``kill()`` (SIGKILL) signal the whole process group, reap it and close the HTTP client;
    both are no-ops on a child that is not running.
    """

    def __init__(
        self,
        cmd: list[str],
        env: dict[str, str],
        log: Path,
        web_port: int,
        *,
        cwd: Path | None = None,
        name: str | None = None,
        http_timeout: float = 10,
    ) -> None:
        self.cmd = cmd
        self.env = env
        self.log = log
        self.port = web_port
        self.cwd = cwd
        self.name = name or log.name  # prefixes error messages
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://{HOST}:{web_port}", timeout=http_timeout)

    def start(self) -> Self:
        """Launch ``cmd`` with exactly ``env``, stdin from /dev/null, output appended to the log."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name}: not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 30) -> str:
        """The last ``n`` lines of the log ("" when there is none yet)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def get(self, path: str) -> dict[str, Any] | None:
        """The JSON body of GET ``path``; None when it fails or answers anything but 200."""
        try:
            r = self.http.get(path)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def answers(self, path: str) -> bool:
        """GET ``path`` answers 200."""
        try:
            return self.http.get(path).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, path: str, timeout: float = 120, poll_s: float = 0.1) -> float:
        """Poll GET ``path`` until it answers 200; returns ``time.monotonic()`` at that moment.

        Raises RuntimeError when the child exits first and TimeoutError after ``timeout``
        seconds, both with the log's tail.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name}: exited early:\n{self.tail()}")
            if self.answers(path):
                return time.monotonic()
            time.sleep(poll_s)
        raise TimeoutError(f"{self.name}: not ready in {timeout:.0f}s:\n{self.tail()}")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the group, wait up to ``timeout`` s, then SIGKILL it; reap the child."""
        self.http.close()
        if self.proc is None or not self.alive():
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the group without warning (a crash, for failure tests); reap the child."""
        self.http.close()
        if self.proc is None or not self.alive():
            return
        self._signal(signal.SIGKILL)
        self.proc.wait()

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
