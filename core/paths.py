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
