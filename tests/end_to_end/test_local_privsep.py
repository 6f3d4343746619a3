"""Privilege separation with local accounts (issue 13 §3): the service started as root with
``--user`` runs its network process unprivileged even with ``auth = local``; a root helper it
started before dropping root does the PAM checks and the account changes. Real PAM logons over
POP3 and SMTP AUTH, real system accounts, /proc for the uids."""
from __future__ import annotations

import os
import poplib
import pwd
import secrets
import smtplib
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import ServiceProcess, wait_for
from tests.support import process_ids as ids_of
from tests.support import unverified_tls as tls

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the service starts as root and drops "
                                "to a test user; PAM and useradd need root (CI runs as root)")
PASSWORD = "Privsep-pw-4471"


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@pytest.fixture
def dropped_service(system_user):
    base = Path(tempfile.mkdtemp(prefix="pop3-privsep-"))
    os.chmod(base, 0o755)
    proc = ServiceProcess(base / "data", extra_args=("--user", system_user))
    try:
        yield proc.start()
    finally:
        proc.stop()
        subprocess.run(["rm", "-rf", str(base)], check=False)


def pop3_logon(service: ServiceProcess, login: str, password: str) -> bool:
    client = poplib.POP3_SSL("127.0.0.1", service.ports["pop3s"], context=tls(), timeout=30)
    try:
        client.user(login)
        client.pass_(password)
        return True
    except poplib.error_proto:
        return False
    finally:
        try:
            client.quit()
        except (poplib.error_proto, OSError):
            pass


def smtp_auth(service: ServiceProcess, login: str, password: str) -> int:
    with smtplib.SMTP_SSL("127.0.0.1", service.ports["smtps"], context=tls(), timeout=30) as smtp:
        try:
            return smtp.login(login, password)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code


def test_local_accounts_with_an_unprivileged_network_process(dropped_service, system_user):
    service = dropped_service
    uid = pwd.getpwnam(system_user).pw_uid
    name = "pop3t_" + secrets.token_hex(4)
    try:
        service.winpop("set", "auth", "local", check=True)
        service.winpop("add", "privsep.example", check=True)
        service.winpop("add", f"{name}@privsep.example", "--createuser", "--password-stdin",
                       input=PASSWORD + "\n", check=True)
        account = pwd.getpwnam(name)
        assert account.pw_uid >= 1000 and account.pw_shell == "/usr/sbin/nologin"

        # The network process is the service user in every uid slot; its one child, the helper, is root.
        ids = ids_of(service.proc.pid)
        assert ids["Uid"] == [uid] * 4, ids
        assert 0 not in ids["Gid"]
        helpers = children_of(service.proc.pid)
        assert len(helpers) == 1, helpers
        assert ids_of(helpers[0])["Uid"][1] == 0
        assert b"service.privhelper" in Path(f"/proc/{helpers[0]}/cmdline").read_bytes()

        # Real PAM logons, through the helper: POP3 USER/PASS and SMTP AUTH.
        assert pop3_logon(service, f"{name}@privsep.example", PASSWORD)
        assert smtp_auth(service, name, PASSWORD) == 235
        assert not pop3_logon(service, name, "not-the-password")
        assert smtp_auth(service, name, "not-the-password") == 535

        # changepwd goes through the helper too; the old password stops working.
        service.winpop("changepwd", f"{name}@privsep.example", "--password-stdin", input="Privsep-new-88\n",
                       check=True)
        assert pop3_logon(service, name, "Privsep-new-88")
        assert not pop3_logon(service, name, PASSWORD)

        service.winpop("delete", f"{name}@privsep.example", "--deleteuser", check=True)
        with pytest.raises(KeyError):
            pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
    helper = children_of(service.proc.pid)[0]
    service.stop()
    wait_for(lambda: not Path(f"/proc/{helper}").exists() or b"Z" in _state(helper), 10,
             what="the helper to exit with the service")


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1][:3]
    except OSError:
        return b"Z"


def _shadow(name: str) -> str:
    return next((line for line in Path("/etc/shadow").read_text().splitlines() if line.startswith(name + ":")), "")


def test_the_helper_checks_every_request_itself():
    """The helper trusts nothing the service sends: bad names, ops, types, PAM services and
    accounts outside the rules are refused; a malformed frame ends the channel."""
    import json
    import struct

    from core.auth.local import AccountState
    from core.errors import Forbidden, Invalid, Unavailable
    from service.privhelper import MAX_FRAME, start_helper

    accounts = ("root", "daemon", "nobody")
    before = {name: _shadow(name) for name in accounts}
    helper = start_helper()
    try:
        with pytest.raises(Invalid, match="no operation"):
            helper.call("exec", argv="/bin/sh")
        for bad in ("../etc/passwd", "-rf", "a b", "x" * 33, "12345", ""):
            with pytest.raises(Invalid, match="account name"):
                helper.describe(bad)
        with pytest.raises(Invalid, match="must start with 'pop3'"):
            helper.pam_check("root", "whatever", "sshd")
        with pytest.raises(Invalid, match="password"):
            helper.set_password("nobody", "two\nlines")
        for account in accounts:
            with pytest.raises(Forbidden, match="can never use it"):
                helper.set_password(account, "Taken-over-pw-9")
            with pytest.raises(Forbidden):
                helper.delete(account)
        assert helper.describe("root") == AccountState(exists=True, refusal="'root' is a superuser account "
                                                                     "(uid 0); a mailbox can never use it.")
        with pytest.raises(Invalid, match="must be strings"):
            helper.call("describe", name=["root"])     # type: ignore[arg-type]
        # A frame longer than any request: the helper stops talking rather than read it.
        helper._sock.sendall(struct.pack(">I", MAX_FRAME + 1) + json.dumps({"id": 0}).encode())
        wait_for(lambda: helper.process.poll() is not None, 10, what="the helper to end the channel")
        with pytest.raises(Unavailable, match="stopped"):
            helper.describe("root")
    finally:
        helper.close()
        changed = [name for name in accounts if _shadow(name) != before[name]]
        for name in changed:   # a regression must not leave a password the test chose
            subprocess.run(["usermod", "-p", before[name].split(":")[1], name], check=True)
    assert not changed
