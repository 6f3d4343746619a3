"""A real ``python main.py service`` in a data directory of its own, on loopback ports, for tools that
need a running service (tools/screenshots.py). The same way the tests start one (tests/support.py),
but tools do not import tests."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from core.catalog import MAIL_LISTENERS
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
    free port on ``host``."""
    if preferred and port_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, what: str, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class RealService:
    """One service process on 127.0.0.1: its mail listeners on the unprivileged ports a user's service
    gets (1110, 1995, 2525, ...) where free, else on free ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.ports = {spec.name: free_port(spec.unprivileged_port or 0) for spec in MAIL_LISTENERS}
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, str(ROOT / "main.py"), "service", "--data-dir", str(self.data_dir),
               "--bind", "127.0.0.1"]
        for name, port in self.ports.items():
            cmd += [f"--{name}-port", str(port)]
        return cmd

    def start(self, timeout: float = 30.0) -> RealService:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        wait_until(self._answers, f"the service in {self.data_dir} to answer on admin.sock", timeout)
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the service exited with {self.proc.returncode}:\n{self.output()}")
        try:
            self.call("service.status")
        except (Unavailable, OSError):
            return False
        return True

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def call(self, op: str, **params: Any) -> Any:
        """One request over the admin channel (the Unix socket)."""
        with AdminClient(self.data_dir, timeout=60) as client:
            return client.call(op, **params)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None and not self._log.closed:
            self._log.close()
