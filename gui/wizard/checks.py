"""Quick local checks the setup wizard makes while a page is shown: is a port free, may we bind
it, how much space is left, is systemd running. Each takes microseconds (a bind on a local
socket, a statvfs), so they run on the GUI thread without blocking it."""
from __future__ import annotations

import errno
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from core.catalog import MAIL_LISTENERS
from core.paths import can_bind_privileged  # noqa: F401 - one check, shared with the service

# What a user without root gets instead (the service's own first-start choice, service/daemon.py).
UNPRIVILEGED = {spec.default_port: spec.unprivileged_port for spec in MAIL_LISTENERS if spec.unprivileged_port}


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()


@dataclass(frozen=True)
class PortCheck:
    """The answer for one port: usable or not, and the sentence that says why."""

    port: int
    usable: bool
    needs_privilege: bool
    text: str
    alternative: int | None = None


def check_port(port: int, *, host: str = "0.0.0.0", privileged: bool | None = None,
               owned: set[int] | frozenset[int] = frozenset()) -> PortCheck:
    """Try to bind ``port`` (then let go at once). ``owned`` are ports our own service already
    holds (re-running the wizard): in use by us is fine."""
    privileged = can_bind_privileged() if privileged is None else privileged
    needs = 0 < port < 1024
    alt = UNPRIVILEGED.get(port, port + 1000 if needs else None) if needs else None
    if port in owned:
        return PortCheck(port, True, needs, "in use by this service")
    if needs and not privileged:
        return PortCheck(port, False, True, f"needs administrator rights (ports below 1024); use {alt} instead, "
                         "or install the system service", alt)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EACCES:
                return PortCheck(port, False, True, f"needs administrator rights; use {alt} instead", alt)
            return PortCheck(port, False, needs, f"in use by another program ({exc.strerror})",
                             alt if alt else None)
    note = "free (binding it needs administrator rights, which this service has)" if needs else "free"
    return PortCheck(port, True, needs, note)


def nearest_existing(path: Path) -> Path:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_space_text(path: Path) -> str:
    """'12.3 GB free on /' for the disk that holds (or will hold) ``path``."""
    where = nearest_existing(Path(path))
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return f"free space unknown ({exc.strerror})"
    return f"{human_size(usage.free)} free of {human_size(usage.total)} on the disk of {where}"


def human_size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def check_mail_root(text: str) -> str:
    """'' when ``text`` can be the root mail directory, else the reason it cannot."""
    text = text.strip()
    if not text:
        return "Give the folder where mail is kept."
    path = Path(text).expanduser()
    if not path.is_absolute():
        return "Give a full path (starting with /)."
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder."
    parent = nearest_existing(path)
    if not parent.is_dir():
        return f"{parent} is not a folder."
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"You may not write in {parent}; choose a folder of your own."
    return ""
