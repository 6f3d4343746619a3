"""Helpers for tests that run the real service: free ports, the process, winpop."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core.errors import Unavailable
from core.ipc.client import AdminClient

ROOT = Path(__file__).resolve().parent.parent
LISTENERS = ("pop3", "pop3s", "smtp", "submission", "smtps")


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the service binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class ServiceProcess:
    """``python main.py service`` in a subprocess, on 127.0.0.1 with free ports."""

    def __init__(self, data_dir: Path, *, ports: dict[str, int] | None = None, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.ports = {name: free_port() for name in LISTENERS}
        self.ports.update(ports or {})
        self.extra_args = extra_args
        self.env = env
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, str(ROOT / "main.py"), "service", "--data-dir", str(self.data_dir), "--bind", "127.0.0.1"]
        for name, port in self.ports.items():
            cmd += [f"--{name}-port", str(port)]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, **(self.env or {}))
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-stdout.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the service exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with AdminClient(self.data_dir, timeout=5) as client:
                    client.call("service.status")
                return True
            except (Unavailable, OSError):
                return False

        wait_for(ready, timeout, interval=0.05, what="the service to answer on admin.sock")
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def client(self) -> AdminClient:
        return AdminClient(self.data_dir)

    def call(self, op: str, **params: Any) -> Any:
        with self.client() as client:
            return client.call(op, **params)

    def winpop(self, *args: str, input: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "service.winpop", "--data-dir", str(self.data_dir), *args]
        result = subprocess.run(cmd, cwd=ROOT, input=input, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"winpop {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def add_mailbox(self, address: str, password: str) -> None:
        domain = address.split("@", 1)[1]
        existing = {d["name"] for d in self.call("domain.list")["items"]}
        if domain not in existing:
            self.call("domain.add", name=domain)
        self.call("mailbox.add", address=address, password=password)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            self._close_log()
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self._close_log()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()
