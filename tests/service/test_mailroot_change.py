"""Changing the root mail directory on a running service (issue 14, issue 12 §2): one coherent
operation that moves the running store at once or refuses with nothing changed; a restart
never hides mail; only a private real folder of the service is accepted."""
from __future__ import annotations

import os
import poplib
import shutil
import smtplib

import pytest

from tests.support import ServiceProcess, pg_url, wait_for

PASSWORD = "correct horse 9"
ALICE = "alice@example.com"


def send(service: ServiceProcess, n: int) -> None:
    body = f"From: s@remote.test\r\nTo: {ALICE}\r\nSubject: m{n}\r\n\r\nbody {n}\r\n".encode()
    with smtplib.SMTP("127.0.0.1", service.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("s@remote.test", [ALICE], body)


def pop3_uidls(service: ServiceProcess) -> list[bytes]:
    client = poplib.POP3("127.0.0.1", service.ports["pop3"], timeout=30)
    client.user(ALICE)
    client.pass_(PASSWORD)
    uidls = [line.split()[1] for line in client.uidl()[1]]
    client.quit()
    return uidls


def mailroot(service: ServiceProcess) -> str:
    return service.call("server.info")["mailroot"]


@pytest.mark.skipif(pg_url() is not None, reason="on PostgreSQL a running node refuses to move a shared mail "
                                                 "root while domains exist (test_refusals_change_nothing)")
def test_the_running_store_moves_at_once_or_refuses_and_a_restart_hides_nothing(service, tmp_path) -> None:
    service.winpop("set", "sparequired", "0", check=True)
    service.add_mailbox(ALICE, PASSWORD)
    send(service, 1)
    wait_for(lambda: service.call("mailbox.get", address=ALICE)["message_count"] == 1, what="delivery")
    old = mailroot(service)
    target = tmp_path / "bigger-disk" / "mail"
    refused = service.winpop("set", "mailroot", str(target))
    assert refused.returncode == 1
    assert "1 of them are not in" in refused.stderr and "Nothing was changed" in refused.stderr
    assert mailroot(service) == old and service.winpop("get", "mailroot", check=True).stdout.strip().endswith(old)
    send(service, 2)                                      # still delivered to, and read from, the old root
    wait_for(lambda: service.call("mailbox.get", address=ALICE)["message_count"] == 2, what="delivery")
    shutil.copytree(old, target, symlinks=True, dirs_exist_ok=True)   # the administrator copies the store
    moved = service.winpop("set", "mailroot", str(target), check=True)
    assert f"mailroot is now {target}" in moved.stdout and "Restart" not in moved.stdout
    assert mailroot(service) == str(target)
    send(service, 3)                                      # at once: new mail goes to the new root
    wait_for(lambda: service.call("mailbox.get", address=ALICE)["message_count"] == 3, what="delivery")
    assert len(os.listdir(target / "example.com" / "alice" / "new")) == 3
    assert len(os.listdir(os.path.join(old, "example.com", "alice", "new"))) == 2
    before = pop3_uidls(service)
    assert len(before) == 3
    service.stop()
    service.start()                                       # the restart keeps every acknowledged message
    assert mailroot(service) == str(target)
    assert pop3_uidls(service) == before
    assert service.call("mailbox.get", address=ALICE)["message_count"] == 3


def test_refusals_change_nothing(service, tmp_path) -> None:
    service.add_mailbox(ALICE, PASSWORD)
    old = mailroot(service)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    os.symlink(old, tmp_path / "link")
    busy = tmp_path / "busy"
    busy.mkdir(mode=0o700)
    (busy / "someone-elses.txt").write_text("x")
    cases = {str(shared): "can be written by its group and every user",
             str(busy): "already holds other things (someone-elses.txt)",
             str(tmp_path / "link"): "is a symbolic link",
             "relative/mail": "must be an absolute path"}
    if os.geteuid() == 0:
        other = tmp_path / "other"
        other.mkdir(mode=0o700)
        os.chown(other, 65534, 65534)
        cases[str(other)] = "belongs to"
    for path, reason in cases.items():
        result = service.winpop("set", "mailroot", path)
        assert result.returncode == 1 and reason in result.stderr, (path, result.stderr)
    assert mailroot(service) == old
    assert shared.stat().st_mode & 0o777 == 0o777                 # nothing existing changes owner or mode
    if os.geteuid() == 0:
        assert (tmp_path / "other").stat().st_uid == 65534
    if pg_url() is not None:                                      # a shared mail root stays put
        result = service.winpop("set", "mailroot", str(tmp_path / "fresh"))
        assert result.returncode == 1 and "several nodes share one mail root" in result.stderr
