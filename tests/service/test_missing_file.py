"""A message file that goes missing behind the running service, and a start-up over odd files
(issue 14), against the real service process with poplib, smtplib and winpop."""
from __future__ import annotations

import json
import os
import poplib
import smtplib
import subprocess

import pytest

from tests.support import ServiceProcess, wait_for

PASSWORD = "correct horse 9"
ALICE = "alice@example.com"


def send(service: ServiceProcess, n: int) -> None:
    body = f"From: s@remote.test\r\nTo: {ALICE}\r\nSubject: m{n}\r\n\r\nbody {n}\r\n".encode()
    with smtplib.SMTP("127.0.0.1", service.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("s@remote.test", [ALICE], body)


def pop3(service: ServiceProcess) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", service.ports["pop3"], timeout=30)
    client.user(ALICE)
    client.pass_(PASSWORD)
    return client


def maildir(service: ServiceProcess) -> str:
    return str(service.data_dir / "mailroot" / "example.com" / "alice")


@pytest.fixture
def alice(service: ServiceProcess) -> ServiceProcess:
    service.winpop("set", "sparequired", "0", check=True)   # USER/PASS without TLS, for brevity
    service.add_mailbox(ALICE, PASSWORD)
    for n in (1, 2):
        send(service, n)
    wait_for(lambda: service.call("mailbox.get", address=ALICE)["message_count"] == 2, what="two deliveries")
    return service


def test_a_file_deleted_behind_the_service_is_dropped_at_the_first_retr(alice: ServiceProcess) -> None:
    new = os.path.join(maildir(alice), "new")
    client = pop3(alice)
    assert client.stat()[0] == 2
    size_2 = int(client.list(2).split()[2])
    uidls = [line.split()[1] for line in client.uidl()[1]]
    victim = next(name for name in os.listdir(new) if name.startswith(uidls[0].decode()))
    os.unlink(os.path.join(new, victim))
    with pytest.raises(poplib.error_proto) as refused:
        client.retr(1)
    assert refused.value.args[0].startswith(b"-ERR [SYS/PERM] Message 1 is no longer in the mail store")
    assert b"body" in b"\n".join(client.retr(2)[1])            # the other one is fine
    assert client.quit().startswith(b"+OK")                     # and no "shown again" promise
    box = alice.call("mailbox.get", address=ALICE)
    assert (box["message_count"], box["total_bytes"]) == (1, size_2)   # the counters follow
    again = pop3(alice)
    assert again.stat() == (1, size_2)                          # not listed in the next session
    assert [line.split()[1] for line in again.uidl()[1]] == uidls[1:]
    again.quit()
    stat = json.loads(alice.winpop("stat", "example.com", "--json", check=True).stdout)
    assert stat["messages"] == 1
    wait_for(lambda: "is gone" in alice.output(), what="the log line about the lost file")


def test_a_missing_maildir_is_a_temporary_error_and_drops_nothing(alice: ServiceProcess) -> None:
    folder = maildir(alice)
    client = pop3(alice)
    os.rename(folder, folder + "-away")                         # an unmounted disk, a moved folder
    try:
        with pytest.raises(poplib.error_proto) as refused:
            client.retr(1)
        assert refused.value.args[0].startswith(b"-ERR [SYS/TEMP]")
        client.quit()
        assert alice.call("mailbox.get", address=ALICE)["message_count"] == 2
        problems = alice.call("service.status")["store_problems"]
        assert problems["total"] == 1 and problems["items"][0]["path"] == folder
    finally:
        os.rename(folder + "-away", folder)
    again = pop3(alice)
    assert again.stat()[0] == 2 and again.retr(1)[0].startswith(b"+OK")
    again.quit()


def test_the_service_starts_over_odd_files_and_lists_what_it_could_not_fix(tmp_path) -> None:
    service = ServiceProcess(tmp_path / "data").start()
    immutable = None
    try:
        service.add_mailbox(ALICE, PASSWORD)
        service.stop()
        new = os.path.join(maildir(service), "new")
        latin1 = os.path.join(os.fsencode(new), b"1700000000.M1P1Q1.caf\xe9")
        with open(latin1, "wb") as fh:
            fh.write(b"Subject: latin-1 name\n\nbody\n")
        os.utime(latin1, (1700000000, 1700000000))   # old: on PostgreSQL young files may be another node's
        os.mkdir(os.path.join(new, "a-folder"))
        immutable = os.path.join(maildir(service), "tmp", "stuck")
        with open(immutable, "wb") as fh:
            fh.write(b"half")
        os.utime(immutable, (0, 0))                              # abandoned long ago: the repair removes it
        chattr = subprocess.run(["chattr", "+i", immutable], capture_output=True)
        if chattr.returncode != 0:
            immutable = None                                     # no immutable files here: the rest still counts
        service.start()                                          # it starts (it exited 1 before)
        status = json.loads(service.winpop("status", "--json", check=True).stdout)
        paths = {p["path"]: p["problem"] for p in status["store_problems"]["items"]}
        assert "a folder, not a message file" in paths[os.path.join(new, "a-folder")]
        if immutable is not None:
            assert "cannot be removed: Operation not permitted" in paths[immutable]
        text = service.winpop("status", check=True).stdout
        assert "problem(s) it could not fix" in text and "a-folder" in text
        info = service.call("server.info")
        assert info["store_problems"]["total"] == len(paths)
        box = service.call("mailbox.get", address=ALICE)
        assert box["message_count"] == 1                         # the Latin-1 file, renamed and indexed
        assert all(name.isascii() for name in os.listdir(new) if name != "a-folder")
    finally:
        if immutable is not None:
            subprocess.run(["chattr", "-i", immutable], check=False)
        service.stop()
