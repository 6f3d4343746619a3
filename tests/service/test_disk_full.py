"""A full disk leaves users able to read their mail (issue 14): the service's data directory (the
SQLite database, the mail root, the logs) on a small tmpfs, filled up. Logon, LIST and RETR work;
new mail gets 452 4.3.1; refusals are worded for a person (winpop exits 1, not 3) and their audit
entries reach the log once there is room; service.status, winpop and the console say "disk full"
with the numbers. Needs root (mount); skipped otherwise."""
from __future__ import annotations

import contextlib
import poplib
import smtplib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from core.errors import DATABASE_FULL
from tests.support import ServiceProcess, fill, pg_url, small_tmpfs, unverified_tls, wait_for

ADDRESS, PASSWORD = "alice@example.com", "Secret-pass-1"
MESSAGES = 3


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 16 MB tmpfs, unmounted afterwards."""
    with small_tmpfs(tmp_path / "disk") as mount:
        yield mount


def disk_state(service: ServiceProcess) -> dict[str, Any] | None:
    disks = service.call("service.status").get("disk") or []
    return next((d for d in disks if "mail root" in d["what"]), None)


def send(service: ServiceProcess, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", service.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("bob@remote.test", [ADDRESS], f"Subject: {subject}\r\n\r\nbody of {subject}\r\n")


def test_a_full_disk_still_lets_users_read_their_mail(small_disk: Path, qtbot) -> None:
    service = ServiceProcess(small_disk).start()   # its stdout log goes beside the mount, not on it
    sqlite = pg_url() is None
    filler = None
    try:
        service.add_mailbox(ADDRESS, PASSWORD)
        for n in range(MESSAGES):
            send(service, f"message {n}")
        if sqlite:   # an empty WAL: any write to the database now needs new space
            with contextlib.closing(sqlite3.connect(service.database_url().split("///", 1)[1])) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = fill(small_disk)

        # New mail: a temporary refusal that says what is wrong (RFC 3463 4.3.1).
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(service, "no room")
        assert refused.value.smtp_code == 452 and b"4.3.1" in refused.value.smtp_error

        # Logon, LIST and RETR work.
        pop = poplib.POP3_SSL("127.0.0.1", service.ports["pop3s"], timeout=30, context=unverified_tls())
        pop.user(ADDRESS)
        assert pop.pass_(PASSWORD).startswith(b"+OK")
        assert len(pop.list()[1]) == MESSAGES
        assert b"body of message 0" in b"\n".join(pop.retr(1)[1])
        pop.dele(1)
        try:   # deleting needs the database to commit: it may, or says so in words
            pop.quit()
        except poplib.error_proto as exc:
            assert b"[SYS/TEMP]" in exc.args[0] and b"will be shown again" in exc.args[0]

        # The state, with numbers: service.status, winpop status, the console.
        disk = wait_for(lambda: (d := disk_state(service)) and d["state"] == "full" and d, timeout=15,
                        what="service.status to report the full disk")
        assert disk["free_bytes"] < 2**20 and disk["total_bytes"] >= 15 * 2**20
        status = service.winpop("status")
        assert status.returncode == 0 and "Disk FULL" in status.stdout and "MB free of" in status.stdout

        from gui.views.status_view import StatusView

        class Offline:
            is_connected = False

        view = StatusView(Offline())
        qtbot.addWidget(view)
        view.apply_status(service.call("service.status"))
        assert view.disk_label.text().startswith("Disk full") and "MB free of" in view.disk_label.text()
        assert "#a4262c" in view.disk_label.styleSheet() and not view.disk_label.isHidden()

        if sqlite:   # an administrator's change is refused in words (winpop exits 1: the service answered)
            result = service.winpop("add", "refused.test")
            assert result.returncode == 1, (result.returncode, result.stderr)
            assert DATABASE_FULL in result.stderr, result.stderr
            assert "sqlite" not in result.stderr.lower() and "OperationalError" not in result.stderr

        # Room again: everything works, and the refusal's audit entry is in the audit log.
        filler.unlink()
        filler = None
        wait_for(lambda: disk_state(service)["state"] == "ok", timeout=15, what="the disk to be reported ok")
        pop = poplib.POP3_SSL("127.0.0.1", service.ports["pop3s"], timeout=30, context=unverified_tls())
        pop.user(ADDRESS)
        pop.pass_(PASSWORD)
        count = len(pop.list()[1])
        for n in range(1, count + 1):
            pop.dele(n)
        assert pop.quit().startswith(b"+OK")
        send(service, "room again")
        assert service.call("mailbox.get", address=ADDRESS)["message_count"] == 1
        if sqlite:   # the refusal's audit entry, kept in memory, is written once there is room
            def refused_entry() -> list[dict]:
                entries = service.call("audit.list", limit=20)["items"]
                return [e for e in entries if e["op"] == "domain.add" and e["target"] == "refused.test"]

            kept = wait_for(refused_entry, timeout=10, what="the kept audit entry")
            assert kept[0]["outcome"] == "refused: unavailable"
            assert service.winpop("add", "later.test").returncode == 0
    finally:
        if filler is not None:
            with contextlib.suppress(OSError):
                filler.unlink()
        service.stop()   # also fails on event-loop stalls (tests/support.py)
    log = service.output()
    assert "Traceback" not in log, log
