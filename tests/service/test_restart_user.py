"""`python main.py service --user USER` started a second time as root (issue 14): the first start
gave the data directory, the server key included, to USER; the second start must accept that key
and run, and so must a start after a restart requested through the admin channel (exit 75 for the
service manager). Mail stored by the first run is still readable with the same key."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import ServiceProcess, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")
ADDRESS, PASSWORD = "again@example.com", "Start-twice-1"


def test_a_second_root_start_with_user_runs(system_user: str) -> None:
    import pwd
    uid = pwd.getpwnam(system_user).pw_uid
    base = Path(tempfile.mkdtemp(prefix="pop3-again-"))
    os.chmod(base, 0o755)
    data = base / "data"
    try:
        first = ServiceProcess(data, extra_args=("--user", system_user)).start()
        first.add_mailbox(ADDRESS, PASSWORD)
        assert first.stop() == 0
        assert (data / "server.key").stat().st_uid == uid   # the first start handed the key over

        second = ServiceProcess(data, ports=first.ports, extra_args=("--user", system_user)).start()
        try:
            assert second.call("mailbox.get", address=ADDRESS)["address"] == ADDRESS
            assert not second.call("server.info").get("key_problem")   # the same key opens the secrets
            second.call("service.shutdown", restart=True)
            # Root is gone: the process exits 75 for the service manager to start it again.
            wait_for(lambda: second.proc.poll() is not None, timeout=30, what="the restart exit")
            assert second.proc.returncode == 75, second.output()
        finally:
            second.stop()

        third = ServiceProcess(data, ports=first.ports, extra_args=("--user", system_user)).start()
        try:
            assert third.call("mailbox.get", address=ADDRESS)["address"] == ADDRESS
        finally:
            assert third.stop() == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)
