"""A real ``python main.py service`` in a data directory of its own, on loopback ports, for whatever
needs a running service: tools/screenshots.py, and the tests (tests/support.py's ServiceProcess is
this with the test run's database and its event-loop stall checks). Tools do not import tests, so the
one copy lives here."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Self

from core.catalog import MAIL_LISTENERS, ListenerSpec
from core.errors import Unavailable
from core.ipc.client import AdminClient

ROOT = Path(__file__).resolve().parent.parent


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``port`` can be bound on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int = 0, host: str = "127.0.0.1") -> int:
    """``preferred`` when it is free (the pictures then show the same numbers on every run), else any
    port free on ``host`` right now (whoever asked binds it a moment later)."""
    if preferred and port_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.05, *,
               pause: Callable[[float], object] = time.sleep, error: type[Exception] = TimeoutError) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that; ``pause(interval)`` between
    tries (a caller with an event loop to keep running passes its own). ``error`` naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:g} s waiting for {what}")
        pause(interval)


class RealService:
    """One ``python main.py service`` process bound to 127.0.0.1: its mail listeners on the
    unprivileged ports a user's service gets (1110, 1995, 2525, ...) where free, else on free ports;
    ``ports`` overrides some. Its output goes to ``log_path``, beside the data directory."""

    failure: type[Exception] = RuntimeError   # what start() raises when the service exits or never answers

    def __init__(self, data_dir: Path, *, ports: dict[str, int] | None = None, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, db_url: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.ports = {spec.name: self.default_port(spec) for spec in MAIL_LISTENERS}
        self.ports.update(ports or {})
        self.extra_args = extra_args
        self.env = env
        self.db_url = db_url
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-stdout.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None
        self._log_start = 0   # where this run's output starts in log_path

    @staticmethod
    def default_port(spec: ListenerSpec) -> int:
        """The port ``spec``'s listener gets unless ``ports`` names one."""
        return free_port(spec.unprivileged_port or 0)

    def command(self) -> list[str]:
        cmd = [sys.executable, str(ROOT / "main.py"), "service", "--data-dir", str(self.data_dir),
               "--bind", "127.0.0.1"]
        for name, port in self.ports.items():
            cmd += [f"--{name}-port", str(port)]
        if self.db_url is not None:
            cmd += ["--db-url", self.db_url]
        return cmd + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        """The process's environment: this process's, with ``env`` over it."""
        return dict(os.environ, **(self.env or {}))

    def start(self, timeout: float = 30.0) -> Self:
        """Start the process and return self once its admin channel answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._log_start = self._log.tell()
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.environment(), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self._answers, "the service to answer on admin.sock", timeout, error=self.failure)
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise self.failure(f"the service exited with {self.proc.returncode}:\n{self.output()}")
        try:
            with AdminClient(self.data_dir, timeout=5) as client:
                client.call("service.status")
        except (Unavailable, OSError):
            return False
        return True

    def output(self) -> str:
        """The end of what the process wrote."""
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def client(self) -> AdminClient:
        return AdminClient(self.data_dir)

    def call(self, op: str, **params: Any) -> Any:
        """One request over the admin channel (the Unix socket)."""
        with self.client() as client:
            return client.call(op, **params)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None if never started); safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_log()
        return None if self.proc is None else self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would end it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None and not self._log.closed:
            self._log.close()
