"""Shared fixtures. Qt must be told there is no display before anything imports it."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import gc  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import ServiceProcess  # noqa: E402

# Garbage is collected on the main thread only, between tests. This process mixes Qt objects (the
# console tests) with threads (in-process services, their workers): an automatic collection that
# starts in a worker thread and finds a Qt object from an earlier test destroys it there, and
# shiboken 6.12 can then deadlock with the main thread (a PostgreSQL CI run hung so, in
# tests/security/test_smtp_rules.py, after tests/service/test_disk_full.py's console). The
# console itself collects on its GUI thread (gui/app.py collect_garbage_on_the_main_thread);
# this is the same policy for the test process: Python's thresholds, generation by generation.
gc.disable()
_THRESHOLDS = gc.get_threshold()


@pytest.fixture(autouse=True)
def _garbage_collected_on_the_main_thread():
    yield
    young, middle, old = gc.get_count()
    if young > _THRESHOLDS[0]:
        gc.collect(0)
        if middle > _THRESHOLDS[1]:
            gc.collect(1)
            if old > _THRESHOLDS[2]:
                gc.collect(2)


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
