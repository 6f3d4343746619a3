"""Shared fixtures. Qt must be told there is no display before anything imports it."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import ServiceProcess  # noqa: E402


@pytest.fixture
def service(tmp_path):
    """A real mail service process on loopback with free ports, in a fresh data directory."""
    proc = ServiceProcess(tmp_path / "data")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def system_user():
    """A throw-away system account with no shell, removed afterwards (tests that run as root)."""
    import secrets
    import subprocess
    name = "p3t" + secrets.token_hex(4)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)
