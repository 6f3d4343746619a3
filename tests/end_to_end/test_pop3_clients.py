"""The POP3 service end to end: the real service process on 127.0.0.1 with free ports, and real
clients — poplib, curl, fetchmail, mpop — over plain POP3, STLS and port 995."""
from __future__ import annotations

import os
import poplib
import re
import ssl
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db import Database
from core.settings import Settings
from core.store import MailStore
from core.tables import Domain, Mailbox
from tests.support import ServiceProcess, wait_for

PASSWORD = "Client-Pass 1"
TIMEOUT = 60


def msg(n: int, lines: int = 5) -> bytes:
    body = ["From: sender@example.org", "To: someone@example.com", f"Subject: client test {n}",
            f"Message-ID: <{n}.{os.getpid()}@example.org>", ""]
    body += [f"body line {i}" if i % 3 else f".dotted line {i}" for i in range(lines)]
    return ("\n".join(body) + "\n").encode()


class Service:
    """The running service, with a way to put mail in and read counters."""

    def __init__(self, proc: ServiceProcess) -> None:
        self.proc = proc
        self.data_dir = proc.data_dir
        self.db = Database(proc.database_url())
        with self.db.read() as session:
            root = Settings.get(session, "mailroot")
        self.store = MailStore(self.db, Path(root), hostname="e2e")
        self.cert = self.data_dir / "tls" / "server.crt"

    @property
    def pop3(self) -> int:
        return self.proc.ports["pop3"]

    @property
    def pop3s(self) -> int:
        return self.proc.ports["pop3s"]

    def mailbox(self, address: str, count: int = 3) -> int:
        self.proc.add_mailbox(address, PASSWORD)
        name, domain = address.split("@")
        with self.db.read() as session:
            box_id = session.scalars(select(Mailbox.id).join(Domain, Domain.id == Mailbox.domain_id)
                                     .where(Domain.name == domain, Mailbox.name == name)).one()
        for n in range(count):
            self.store.deliver(box_id, msg(n))
        return box_id

    def count(self, box_id: int) -> int:
        with self.db.read() as session:
            return session.get(Mailbox, box_id).message_count

    def set(self, name: str, value) -> None:
        self.proc.call("settings.set", name=name, value=value)

    def tls_client(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert))
        context.check_hostname = False
        return context

    def log_text(self) -> str:
        return (self.data_dir / "logs" / "service.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    proc = ServiceProcess(tmp_path_factory.mktemp("pop3e2e") / "data")
    proc.start()
    service = Service(proc)
    service.set("sparequired", 0)
    service.set("logging", 3)
    try:
        yield service
    finally:
        proc.stop()
        service.db.dispose()


def logon_poplib(svc: Service, address: str) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", svc.pop3, timeout=TIMEOUT)
    client.user(address)
    client.pass_(PASSWORD)
    return client


# -- poplib ---------------------------------------------------------------------------------
def test_poplib_plain_list_n_uidl_retr_dele(svc: Service) -> None:
    box = svc.mailbox("plain@poplib.test")
    client = logon_poplib(svc, "plain@poplib.test")
    assert client.stat() == (3, sum(len(msg(n).replace(b"\n", b"\r\n")) for n in range(3)))
    assert client.list(2) == b"+OK 2 %d" % len(msg(1).replace(b"\n", b"\r\n"))
    assert client.uidl(3).startswith(b"+OK 3 ")
    lines = client.retr(1)[1]
    assert b"\n".join(lines) + b"\n" == msg(0)          # poplib un-stuffs the dotted lines
    client.dele(1)
    assert client.quit().startswith(b"+OK")
    assert svc.count(box) == 2


def test_poplib_stls_and_apop_with_spa(svc: Service) -> None:
    svc.mailbox("spa@poplib.test")
    svc.set("sparequired", 1)
    try:
        client = poplib.POP3("127.0.0.1", svc.pop3, timeout=TIMEOUT)
        assert "USER" not in client.capa() and "STLS" in client.capa()
        with pytest.raises(poplib.error_proto, match=r"STLS \(or port 995\)"):
            client.user("spa@poplib.test")
        client.stls(svc.tls_client())
        client.user("spa@poplib.test")
        client.pass_(PASSWORD)
        assert client.stat()[0] == 3
        client.quit()
        client = poplib.POP3("127.0.0.1", svc.pop3, timeout=TIMEOUT)
        client.apop("spa@poplib.test", PASSWORD)
        assert len(client.list()[1]) == 3
        client.quit()
        secure = poplib.POP3_SSL("127.0.0.1", svc.pop3s, context=svc.tls_client(), timeout=TIMEOUT)
        secure.user("spa@poplib.test")
        secure.pass_(PASSWORD)
        assert secure.stat()[0] == 3
        secure.quit()
    finally:
        svc.set("sparequired", 0)


# -- curl -----------------------------------------------------------------------------------
def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, timeout=TIMEOUT)


def test_curl_pop3_and_pop3s(svc: Service) -> None:
    svc.mailbox("curl@clients.test")
    auth = f"curl@clients.test:{PASSWORD}"
    listing = curl("-u", auth, f"pop3://127.0.0.1:{svc.pop3}/")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[0].startswith(b"1 ")
    assert len(listing.stdout.splitlines()) == 3
    one = curl("-u", auth, f"pop3://127.0.0.1:{svc.pop3}/2")
    assert one.returncode == 0, one.stderr
    assert one.stdout == msg(1).replace(b"\n", b"\r\n")
    secure = curl("--cacert", str(svc.cert), "-u", auth, f"pop3s://127.0.0.1:{svc.pop3s}/3")
    assert secure.returncode == 0, secure.stderr
    assert secure.stdout == msg(2).replace(b"\n", b"\r\n")
    starttls = curl("--ssl-reqd", "--cacert", str(svc.cert), "-u", auth, f"pop3://127.0.0.1:{svc.pop3}/1")
    assert starttls.returncode == 0, starttls.stderr
    assert starttls.stdout == msg(0).replace(b"\n", b"\r\n")
    wrong = curl("-u", "curl@clients.test:nope", f"pop3://127.0.0.1:{svc.pop3}/1")
    assert wrong.returncode != 0


# -- fetchmail ------------------------------------------------------------------------------
def fetchmail(svc: Service, tmp_path: Path, address: str, *, keep: bool, stls: bool) -> tuple[int, bytes, str]:
    out = tmp_path / "delivered"
    rc = tmp_path / "fetchmailrc"
    options = ["keep" if keep else "nokeep", "fetchall"]
    if stls:
        options += ['sslproto "tls1.2+"', "sslcertck", f'sslcertfile "{svc.cert}"', 'sslcommonname "localhost"']
    else:
        options += ["sslproto ''"]
    rc.write_text(f'set no syslog\nset logfile "{tmp_path / "fetchmail.log"}"\n'
                  f"poll 127.0.0.1 service {svc.pop3} protocol pop3 auth password uidl\n"
                  f'  user "{address}" there with password "{PASSWORD}" is "root" here\n'
                  f'  {" ".join(options)}\n  mda "cat >> {out}"\n')
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    result = subprocess.run(["fetchmail", "-f", str(rc), "-i", str(tmp_path / "fetchids"), "--nodetach", "-v"],
                            capture_output=True, text=True, env=env, timeout=TIMEOUT)
    log = result.stdout + result.stderr
    log_file = tmp_path / "fetchmail.log"
    if log_file.exists():
        log += log_file.read_text(errors="replace")
    return result.returncode, out.read_bytes() if out.exists() else b"", log


def test_fetchmail_keep_then_fetch_and_delete(svc: Service, tmp_path: Path) -> None:
    box = svc.mailbox("fetch@clients.test")
    code, delivered, log = fetchmail(svc, tmp_path, "fetch@clients.test", keep=True, stls=False)
    assert code == 0, log
    assert delivered.count(b"Subject: client test") == 3
    assert b"\n.dotted line 0\n" in delivered                 # un-stuffed by the client
    assert svc.count(box) == 3
    # fetchmail asks "LIST n" and "UIDL n" — visible in the service log at Maximum
    text = wait_for(lambda: (t := svc.log_text()) and "C: LIST 1" in t and t, what="the command log")
    assert re.search(r"C: (UIDL|LIST) \d", text)
    (tmp_path / "delivered").unlink()
    code, delivered, log = fetchmail(svc, tmp_path, "fetch@clients.test", keep=False, stls=False)
    assert code == 0, log
    assert delivered.count(b"Subject: client test") == 3
    assert svc.count(box) == 0


def test_fetchmail_over_stls(svc: Service, tmp_path: Path) -> None:
    box = svc.mailbox("fetchtls@clients.test")
    svc.set("sparequired", 1)
    try:
        code, delivered, log = fetchmail(svc, tmp_path, "fetchtls@clients.test", keep=False, stls=True)
    finally:
        svc.set("sparequired", 0)
    assert code == 0, log
    assert delivered.count(b"Subject: client test") == 3
    assert svc.count(box) == 0


# -- mpop -----------------------------------------------------------------------------------
def mpop(svc: Service, tmp_path: Path, address: str, auth: str, *, tls: str = "off") -> tuple[int, bytes, str]:
    mbox = tmp_path / "mbox"
    mbox.touch()
    rc = tmp_path / "mpoprc"
    lines = ["defaults", f"tls {'off' if tls == 'off' else 'on'}", "account default", "host 127.0.0.1",
             f"user {address}", f"password {PASSWORD}", f"auth {auth}", "keep on", "only_new off",
             f"delivery mbox {mbox}", f"uidls_file {tmp_path / 'uidls'}"]
    if tls == "implicit":
        lines += [f"port {svc.pop3s}", "tls_starttls off", f"tls_trust_file {svc.cert}", "tls_host_override localhost"]
    elif tls == "stls":
        lines += [f"port {svc.pop3}", "tls_starttls on", f"tls_trust_file {svc.cert}", "tls_host_override localhost"]
    else:
        lines += [f"port {svc.pop3}"]
    rc.write_text("\n".join(lines) + "\n")
    rc.chmod(0o600)
    result = subprocess.run(["mpop", "-C", str(rc), "-a"], capture_output=True, text=True, timeout=TIMEOUT,
                            env=dict(os.environ, HOME=str(tmp_path)))
    return result.returncode, mbox.read_bytes(), result.stdout + result.stderr


@pytest.mark.parametrize(("auth", "tls"), [("cram-md5", "off"), ("scram-sha-256", "off"), ("apop", "off"),
                                           ("user", "stls"), ("plain", "implicit")],
                         ids=["cram-md5", "scram-sha-256", "apop", "user-stls", "plain-pop3s"])
def test_mpop(svc: Service, tmp_path: Path, auth: str, tls: str) -> None:
    address = f"mpop-{auth}-{tls}@clients.test"
    svc.mailbox(address)
    svc.set("sparequired", 1)       # the secure mechanisms need no TLS; the plaintext ones get it
    try:
        code, mbox, output = mpop(svc, tmp_path, address, auth, tls=tls)
    finally:
        svc.set("sparequired", 0)
    assert code == 0, output
    assert mbox.count(b"Subject: client test") == 3, output


# -- two service processes, one database ----------------------------------------------------
def test_session_lock_across_processes_and_after_a_crash(svc: Service, tmp_path: Path) -> None:
    svc.mailbox("shared@clients.test", count=1)
    other = ServiceProcess(tmp_path / "node2", extra_args=("--db-url", svc.db.url))
    other.start()
    try:
        first = logon_poplib(svc, "shared@clients.test")
        client = poplib.POP3("127.0.0.1", other.ports["pop3"], timeout=TIMEOUT)
        client.user("shared@clients.test")
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            client.pass_(PASSWORD)
        first.quit()
        client.user("shared@clients.test")
        client.pass_(PASSWORD)                              # free once the first session quit
        # The second node crashes while holding the mailbox: the first node may take it over at once
        # (the holder's process is gone), without waiting for the lease to run out.
        other.kill()
        again = logon_poplib(svc, "shared@clients.test")
        assert again.stat()[0] == 1
        again.quit()
    finally:
        other.stop()


# -- bans through the admin channel (last: it bans 127.0.0.1 for a moment) ----------------------
def test_failed_logons_ban_listed_and_lifted_through_the_admin_channel(svc: Service) -> None:
    svc.mailbox("banned@clients.test", count=1)
    svc.set("throttle_delay_ms", 0)
    svc.set("throttle_failures", 3)
    svc.set("throttle_allow", "192.0.2.1")   # loopback is allow-listed by default; ban it here
    try:
        refused = b""
        for _ in range(6):   # bounded: earlier tests may already have counted a failure
            try:
                client = poplib.POP3("127.0.0.1", svc.pop3, timeout=TIMEOUT)
            except poplib.error_proto as exc:      # the greeting itself is the refusal
                refused = exc.args[0]
                break
            client.user("banned@clients.test")
            try:
                client.pass_("wrong")
            except poplib.error_proto as exc:
                if b"from your address" in exc.args[0]:
                    refused = exc.args[0]
                    break
            client.close()
        assert b"Too many failed logons from your address" in refused
        bans = svc.proc.call("ban.list")["items"]
        assert any(b["kind"] == "address" and b["value"] == "127.0.0.1" for b in bans), bans
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] Too many failed logons"):
            poplib.POP3("127.0.0.1", svc.pop3, timeout=TIMEOUT)
        assert svc.proc.call("ban.lift", value="127.0.0.1")["lifted"] >= 1
        assert svc.proc.call("ban.list")["items"] == []
        client = logon_poplib(svc, "banned@clients.test")
        assert client.stat()[0] == 1
        client.quit()
    finally:
        svc.proc.call("ban.lift", value="127.0.0.1")
        svc.set("throttle_failures", 10)
        svc.set("throttle_allow", "127.0.0.0/8, ::1")
