"""A member of the admin group is not root (issue 12 §2): a REAL non-root member runs winpop
against the service (started as root, local accounts, the privileged helper) and tries to read a
root-only file through the importer and to take over system accounts. Each attempt is refused,
audited, and changes nothing.

The member runs winpop in a child of this test that has become the member (setgroups, setgid,
setuid) rather than in a fresh interpreter: the test's Python lives under /root, which the member
may not enter. To the service it is the same: SO_PEERCRED gives the member's uid and
/proc/PID/status its groups.
"""
from __future__ import annotations

import contextlib
import grp
import io
import json
import os
import poplib
import pwd
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.db import Database
from core.errors import MailError
from core.ipc.client import AdminClient
from core.tables import Domain, Mailbox
from service import winpop
from tests.support import ServiceProcess, unverified_tls

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates a real user and group "
                                "(useradd, groupadd) and runs winpop as that user (CI runs as root)")
SECRET = b"root-only secret 5f3a\n"
DOMAIN = "guard.example"


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Member:
    name: str
    uid: int
    gid: int
    admin_gid: int

    def run(self, task: Callable[[], int]) -> Result:
        """Run ``task`` as this member: a forked child that becomes them for good (groups, gid,
        uid) and reports its exit code, stdout and stderr back."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            pid = os.fork()
            if pid == 0:   # the child: never returns into pytest
                code = 70
                try:
                    os.setgroups([self.gid, self.admin_gid])
                    os.setgid(self.gid)
                    os.setuid(self.uid)
                    stdout, stderr = io.StringIO(), io.StringIO()
                    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                        code = task()
                    os.write(out.fileno(), stdout.getvalue().encode())
                    os.write(err.fileno(), stderr.getvalue().encode())
                except BaseException as exc:  # noqa: BLE001 - reported to the parent, never raised here
                    os.write(err.fileno(), f"child failed: {exc!r}".encode())
                finally:
                    os._exit(code)
            _pid, status = os.waitpid(pid, 0)
            out.seek(0)
            err.seek(0)
            return Result(os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode())

    def winpop(self, data_dir: Path, *args: str) -> Result:
        """``winpop --data-dir DATA_DIR ARGS`` as this member."""
        return self.run(lambda: winpop.main(["--data-dir", str(data_dir), *args]))

    def call(self, data_dir: Path, op: str, **params: object) -> Result:
        """One admin-channel request as this member (for ops winpop has no verb for)."""
        def task() -> int:
            try:
                with AdminClient(data_dir) as client:
                    print(json.dumps(client.call(op, **params)))
                return 0
            except MailError as exc:
                print(f"{exc.code}: {exc.message}", file=sys.stderr)
                return 1
        return self.run(task)


def _run(*cmd: str) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True)


@pytest.fixture(scope="module")
def member():
    """A fresh group (the admin group) and a fresh ordinary user in it; both removed afterwards."""
    tag = secrets.token_hex(3)
    group, user = f"p3tadm{tag}", f"p3tmem{tag}"
    _run("groupadd", group)
    try:
        _run("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", "--groups", group, user)
        entry = pwd.getpwnam(user)
        yield Member(user, entry.pw_uid, entry.pw_gid, grp.getgrnam(group).gr_gid)
    finally:
        subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", user], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)


@pytest.fixture(scope="module")
def outsider():
    """An ordinary account that is neither the service's (pop3users) nor allowed by root."""
    name = "p3tout" + secrets.token_hex(3)
    _run("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name)
    subprocess.run(["chpasswd"], input=f"{name}:Outsider-pw-1\n", text=True, check=True)
    yield name
    subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture(scope="module")
def base():
    """A folder other users may pass through (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="pop3-admgrp-"))
    os.chmod(path, 0o711)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture(scope="module")
def guarded(base, member):
    """The service as root, local accounts, the member's group as the admin group, one domain."""
    proc = ServiceProcess(base / "data")
    proc.start()
    try:
        proc.call("settings.set", name="admin_group", value=grp.getgrgid(member.admin_gid).gr_name)
        proc.call("settings.set", name="auth", value="local")
        proc.call("domain.add", name=DOMAIN)
        yield proc
    finally:
        proc.stop()


def shadow_entry(name: str) -> str:
    """The account's line of /etc/shadow (compared and, should a regression change it, restored)."""
    for line in Path("/etc/shadow").read_text().splitlines():
        if line.split(":", 1)[0] == name:
            return line
    return ""


@contextlib.contextmanager
def password_kept(name: str):
    """Yield; afterwards put back the account's password hash if anything changed it, so a
    regression fails this test without leaving root with a password the test chose."""
    before = shadow_entry(name)
    try:
        yield before
    finally:
        after = shadow_entry(name)
        if after != before:
            subprocess.run(["usermod", "-p", before.split(":")[1], name], check=True)


def refusals(service: ServiceProcess, member: Member, op: str) -> list[dict]:
    return [e for e in service.call("audit.list", limit=200)["items"]
            if e["op"] == op and e["actor"].startswith(member.name + " ") and e["outcome"].startswith("refused")]


def mailbox_names(service: ServiceProcess) -> set[str]:
    return {m["name"] for m in service.call("mailbox.list", domain=DOMAIN)["items"]}


def test_the_member_may_administer_at_all(guarded, member):
    """The baseline the refusals below are measured against: the member's winpop is admitted."""
    result = member.winpop(guarded.data_dir, "add", "ok.example")
    assert result.code == 0, result.err
    assert any(e["op"] == "domain.add" and e["actor"].startswith(member.name) and e["outcome"] == "ok"
               for e in guarded.call("audit.list", limit=20)["items"])


def test_import_never_follows_a_link_to_a_root_only_file(guarded, member, base):
    secret = base / "root-only.txt"
    secret.write_bytes(SECRET)
    os.chmod(secret, 0o600)
    tree = base / "win"
    box = tree / "linked.example" / "P3_carol.mbx"
    box.mkdir(parents=True)
    (box / "0001.eml").write_bytes(b"Subject: real\r\n\r\nan ordinary message\r\n")
    (box / "0002.eml").symlink_to(secret)                     # a link to a file only root may read
    (box / "0003.eml").symlink_to("/etc/shadow")
    (tree / "shadow.example").symlink_to("/etc")               # a linked domain folder
    subprocess.run(["chown", "-R", "-h", f"{member.uid}:{member.gid}", str(tree)], check=True)

    result = member.winpop(guarded.data_dir, "import", str(tree))
    assert result.code == 0, result.err
    assert "0002.eml: a symbolic link" in result.out and "0003.eml: a symbolic link" in result.out
    assert "shadow.example: a symbolic link" in result.out
    mailroot = Path(guarded.call("server.info")["mailroot"])
    stored = b"".join(p.read_bytes() for p in mailroot.rglob("*") if p.is_file())
    assert b"an ordinary message" in stored
    assert SECRET not in stored and b"root:" not in stored
    assert guarded.call("mailbox.get", address="carol@linked.example")["message_count"] == 1

    # A tree the member may not read at all: refused before anything is read, and audited.
    closed = base / "closed"
    (closed / "x.example" / "P3_dave.mbx").mkdir(parents=True)
    (closed / "x.example" / "P3_dave.mbx" / "1.eml").write_bytes(SECRET)
    os.chmod(closed, 0o700)
    domains_before = {d["name"] for d in guarded.call("domain.list")["items"]}
    result = member.winpop(guarded.data_dir, "import", str(closed))
    assert result.code != 0 and "may not" in result.err, result
    assert {d["name"] for d in guarded.call("domain.list")["items"]} == domains_before
    assert refusals(guarded, member, "import.windows")

    # A certificate path the member may not read: refused and audited, nothing installed.
    result = member.winpop(guarded.data_dir, "set", "tls_key", str(secret))
    assert result.code != 0 and "may not read" in result.err, result
    assert guarded.call("settings.get", name="tls_key")["tls_key"] == ""
    assert refusals(guarded, member, "settings.set")
    cert_before = guarded.call("server.info")["tls"].get("fingerprint")
    result = member.call(guarded.data_dir, "tls.import", cert_path=str(secret), key_path=str(secret))
    assert result.code == 1 and "forbidden: " in result.err and "may not read" in result.err, result
    assert guarded.call("server.info")["tls"].get("fingerprint") == cert_before
    assert refusals(guarded, member, "tls.import")


@pytest.mark.parametrize("account", ["root", "daemon", "nobody", "outsider"])
def test_no_mailbox_may_take_over_an_account_outside_the_service(guarded, member, outsider, account):
    name = outsider if account == "outsider" else account
    with password_kept(name) as before:
        assert before

        # Mapping a mailbox to the account: refused (the service asks the helper, which applies the rules).
        result = member.winpop(guarded.data_dir, "add", f"{name}@{DOMAIN}")
        assert result.code != 0 and "may not use the account" in result.err, result
        assert name not in mailbox_names(guarded)
        assert refusals(guarded, member, "mailbox.add")

        # A mailbox row for it that the rules never let in (old data, a tampered database): the
        # privileged helper still refuses to set the account's password.
        db = Database(guarded.database_url())
        try:
            with db.write() as session:
                domain = session.query(Domain).filter_by(name=DOMAIN).one()
                session.add(Mailbox(domain_id=domain.id, name=name, locked=False, quota_bytes=None,
                                    message_count=0, total_bytes=0, has_user=False))
        finally:
            db.dispose()
        result = member.winpop(guarded.data_dir, "changepwd", f"{name}@{DOMAIN}", "Taken-over-pw-9")
        assert result.code != 0 and "may not be changed by the POP3 service" in result.err, result
        assert refusals(guarded, member, "mailbox.set_password")
        assert shadow_entry(name) == before                      # the account is untouched

        if account == "outsider":   # its real password does not open the mailbox: no PAM check for it
            client = poplib.POP3_SSL("127.0.0.1", guarded.ports["pop3s"], context=unverified_tls(), timeout=30)
            client.user(f"{name}@{DOMAIN}")
            with pytest.raises(poplib.error_proto, match="AUTH"):
                client.pass_("Outsider-pw-1")
            client.quit()


@pytest.mark.parametrize(("host", "port"), [("192.0.2.1", 25), ("127.0.0.1", 5432)], ids=["other-host", "other-port"])
def test_the_relay_test_probes_no_other_computer_or_service(guarded, host, port):
    from core.errors import Forbidden
    with pytest.raises(Forbidden, match="relay test"):
        guarded.call("relay.test", host=host, port=port)
    assert any(e["op"] == "relay.test" and e["target"] == host and e["outcome"] == "refused: forbidden"
               for e in guarded.call("audit.list", limit=20)["items"])
