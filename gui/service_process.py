"""The mail service as the user's own background process (no root, no systemd).

``start_background(data_dir)`` starts ``python main.py service --data-dir D`` detached, its output
in ``D/logs/service.out``; the service writes ``D/service.pid`` itself. The next console finds it
again through ``D/admin.sock`` (and the pid file); ``stop`` asks it to end over the admin channel,
or with SIGTERM when the channel is gone. Nothing here waits: callers watch the admin socket.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MAIN_PY = Path(__file__).resolve().parent.parent / "main.py"


@dataclass(frozen=True)
class Started:
    """The outcome of a start: the pid, or why it did not start."""

    ok: bool
    pid: int = 0
    error: str = ""
    log_path: Path | None = None


def service_command(data_dir: Path, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``[python, main.py, service, --data-dir, D, ...]``."""
    return [sys.executable, str(MAIN_PY), "service", "--data-dir", str(data_dir), *extra]


def start_background(data_dir: Path, extra: list[str] | tuple[str, ...] = ()) -> Started:
    """Start the service detached from the console; it outlives the console."""
    data_dir = Path(data_dir)
    if not MAIN_PY.exists():
        return Started(False, error=f"{MAIN_PY} was not found")
    logs = data_dir / "logs"
    try:
        logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(data_dir, 0o700)
    except OSError as exc:
        return Started(False, error=f"cannot create {logs}: {exc.strerror}")
    out = logs / "service.out"
    cmd = service_command(data_dir, extra)
    # Not QProcess.startDetached: PySide6 6.12's instance overload returns no pid. A new session
    # detaches the service from the console and its terminal; it outlives both.
    try:
        with open(out, "ab") as log_file:
            child = subprocess.Popen(cmd, cwd=MAIN_PY.parent, stdin=subprocess.DEVNULL, stdout=log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    except OSError as exc:
        return Started(False, error=f"cannot run {cmd[0]}: {exc.strerror}", log_path=out)
    _children[child.pid] = child
    return Started(True, pid=child.pid, log_path=out)


_children: dict[int, subprocess.Popen] = {}   # reaped when they end, so no zombie lingers


def read_pid(data_dir: Path) -> int | None:
    """The pid in ``D/service.pid`` if that process is alive and is our service."""
    try:
        pid = int((Path(data_dir) / "service.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_service_process(pid) else None


def is_service_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"service" in cmdline and any(part.endswith(b"main.py") for part in cmdline)


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as ended, and a child of ours is reaped)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def terminate(pid: int) -> bool:
    """SIGTERM to our service process (never to anything else)."""
    if not is_service_process(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
        return True
    except OSError:
        return False


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,.]+ (?P<level>[A-Z]+) \S+: (?P<text>.*)$")


def failure_reason(path: Path | None) -> str:
    """Why the service stopped, in the service's own words: the last CRITICAL or ERROR entry of its log
    without the timestamp, level and logger (with its continuation lines, not SQLAlchemy's link), or the
    log's last lines when it has no such entry (a Python error before logging started)."""
    if path is None:
        return ""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for start in range(len(lines) - 1, -1, -1):
        found = _LOG_LINE.match(lines[start])
        if found and found["level"] in ("CRITICAL", "ERROR"):
            text = [found["text"].strip()]
            for line in lines[start + 1:]:
                if _LOG_LINE.match(line) or line.startswith("(Background on this error"):
                    break
                if line.strip():
                    text.append(line.strip())
            return "\n".join(text)
    return tail(path)


def tail(path: Path | None, lines: int = 6) -> str:
    """The last lines of a log, for an error message."""
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])
