"""Where the service keeps its data (DESIGN §2)."""
from __future__ import annotations

import os
from pathlib import Path

ENV_DATA_DIR = "POP3SVC_DATA_DIR"


def default_data_dir() -> Path:
    """``$POP3SVC_DATA_DIR``, else /var/lib/pop3-service for root, else ~/.local/share/pop3-service."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/pop3-service")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pop3-service"


def can_bind_privileged() -> bool:
    """Root, CAP_NET_BIND_SERVICE or a lowered ip_unprivileged_port_start lets us bind 110 and 25."""
    if os.geteuid() == 0:
        return True
    try:
        if int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) <= 25:
            return True
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 10))   # CAP_NET_BIND_SERVICE
    except (OSError, ValueError):
        pass
    return False
