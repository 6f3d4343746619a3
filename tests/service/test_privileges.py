"""The service started as root binds its ports (one below 1024 here), then runs as an unprivileged
user: /proc shows the new uid, root can still administer it, and mail still flows (SMTP in, POP3
out), so the dropped process can write its database and mail root."""
from __future__ import annotations

import os
import poplib
import secrets
import smtplib
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import ServiceProcess, wait_for
from tests.support import process_ids as status_ids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")
PASSWORD = "Dr0p-privileges!"


def free_privileged_port() -> int:
    for port in range(990, 600, -1):
        if port in (993, 995, 636, 989, 990):
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024")


def test_root_start_binds_then_runs_as_the_given_user(system_user):
    import pwd
    uid = pwd.getpwnam(system_user).pw_uid
    base = Path(tempfile.mkdtemp(prefix="pop3-drop-"))
    os.chmod(base, 0o755)
    low = free_privileged_port()
    proc = ServiceProcess(base / "data", ports={"pop3": low}, extra_args=("--user", system_user))
    try:
        proc.start()
        ids = status_ids(proc.proc.pid)
        assert ids["Uid"] == [uid] * 4, ids      # real, effective, saved, filesystem: none is root
        assert 0 not in ids["Gid"]
        if proc.db_url is None:   # SQLite in the data directory (not the PostgreSQL run)
            assert (base / "data" / "pop3svc.db").stat().st_uid == uid
        # The pid file is written after the privilege drop, a moment after the admin channel
        # first answers (which is what start() waits for): wait for it, do not race it.
        pid_file = base / "data" / "service.pid"
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, what="the pid file")
        assert pid_file.read_text().strip() == str(proc.proc.pid)
        listeners = {item["name"]: item for item in proc.call("service.status")["listeners"]}
        assert listeners["pop3"]["state"] == "running" and listeners["pop3"]["port"] == low

        proc.add_mailbox("dropped@example.com", PASSWORD)     # root still administers it
        with smtplib.SMTP("127.0.0.1", proc.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("someone@example.net", ["dropped@example.com"],
                          b"Subject: after the drop\r\n\r\nwritten by an unprivileged service\r\n")
        client = poplib.POP3("127.0.0.1", low, timeout=10)
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        client.stls(tls)
        client.user("dropped@example.com")
        client.pass_(PASSWORD)
        count, _size = client.stat()
        assert count == 1
        assert b"written by an unprivileged service" in b"\n".join(client.retr(1)[1])
        client.quit()
        mail = list((base / "data" / "mailroot").rglob("new/*")) + list((base / "data" / "mailroot").rglob("cur/*"))
        assert mail and all(m.stat().st_uid == uid for m in mail)
    finally:
        proc.stop()
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_an_unknown_user_is_refused_clearly(tmp_path):
    proc = ServiceProcess(tmp_path / "data", extra_args=("--user", "no-such-user-" + secrets.token_hex(3)))
    with pytest.raises(AssertionError, match="There is no user"):
        proc.start(timeout=20)
    proc.stop()


def test_hand_over_of_a_mail_root_elsewhere_takes_only_what_root_made(tmp_path, system_user):
    """Issue 12 §2: a start with --user never takes another user's files in a mail root outside
    the data directory; what root made there (an earlier start as root) does change hands."""
    import pwd

    from service.privileges import RunAs, hand_over
    who = RunAs.lookup(system_user)
    root = tmp_path / "mailroot"
    (root / "example.com" / "alice" / "new").mkdir(parents=True)
    made_by_root = root / "example.com" / "alice" / "new" / "1.M1P1.host"
    made_by_root.write_bytes(b"Subject: hi\r\n\r\nbody\r\n")
    someone_elses = root / "example.com" / "notes.txt"
    someone_elses.write_text("not mail")
    os.chown(someone_elses, 4242, 4242)
    assert hand_over([root], who, only_from=0) >= 4
    assert made_by_root.stat().st_uid == who.uid and (root / "example.com").stat().st_uid == who.uid
    assert someone_elses.stat().st_uid == 4242
    assert pwd.getpwuid(who.uid).pw_name == system_user
