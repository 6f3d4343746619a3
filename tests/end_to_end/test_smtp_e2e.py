"""SMTP against real service processes (main.py service): swaks, msmtp and smtplib as clients,
two installations exchanging mail through a test MX map, and a SIGKILL with mail in the queue."""
from __future__ import annotations

import json
import os
import poplib
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import unverified_tls as tls
from tests.support import wait_for as support_wait_for

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "e2e password 7"
NAMES = ("pop3", "pop3s", "smtp", "submission", "smtps")

pytestmark = pytest.mark.slow


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return ports


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    return support_wait_for(predicate, timeout=timeout, interval=0.05, what=what)


class Service:
    """One installation: a data directory, fixed ports, and its service process when running."""

    def __init__(self, data: Path, domain: str, mx: str = "") -> None:
        self.data = data
        self.domain = domain
        self.mx = mx
        self.ports = dict(zip(NAMES, free_ports(len(NAMES)), strict=True))
        self.proc: subprocess.Popen | None = None
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), POP3SVC_TEST_MX=mx)
        self.env.pop("POP3SVC_DATA_DIR", None)

    def start(self) -> Service:
        args = [sys.executable, str(ROOT / "main.py"), "service", "--data-dir", str(self.data), "--bind", "127.0.0.1"]
        for name, port in self.ports.items():
            args += [f"--{name}-port", str(port)]
        self.data.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.data / "stderr.log", "ab"))

        def ready() -> bool:
            assert self.proc.poll() is None, (self.data / "stderr.log").read_text()[-3000:]
            try:
                with socket.create_connection(("127.0.0.1", self.ports["smtp"]), timeout=1):
                    return True
            except OSError:
                return False
        wait_for(ready, what=f"service in {self.data}")
        return self

    def winpop(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "service.winpop", "--data-dir", str(self.data), *args],
                              cwd=ROOT, env=self.env, input=input, text=True, capture_output=True, check=check,
                              timeout=60)

    def add(self, *mailboxes: str) -> None:
        self.winpop("add", self.domain)
        for name in mailboxes:
            self.winpop("add", f"{name}@{self.domain}", "--password-stdin", input=PASSWORD + "\n")

    def queue(self) -> list[dict]:
        return json.loads(self.winpop("--json", "queue").stdout)["items"]

    def fetch(self, user: str) -> list[bytes]:
        """Every message of ``user`` over POP3 (port 995, TLS: the password never in clear)."""
        client = poplib.POP3_SSL("127.0.0.1", self.ports["pop3s"], context=tls(), timeout=20)
        try:
            client.user(f"{user}@{self.domain}")
            client.pass_(PASSWORD)
            count, _ = client.stat()
            return [b"\r\n".join(client.retr(i + 1)[1]) for i in range(count)]
        finally:
            client.quit()

    def submit(self, user: str, to: list[str], subject: str) -> None:
        sender = f"{user}@{self.domain}"
        with smtplib.SMTP_SSL("127.0.0.1", self.ports["smtps"], context=tls(), timeout=20) as client:
            client.login(sender, PASSWORD)
            client.sendmail(sender, to, f"From: <{sender}>\r\nTo: <{to[0]}>\r\nSubject: {subject}\r\n\r\nbody\r\n")

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def services(tmp_path: Path):
    made: list[Service] = []

    def make(name: str, domain: str, mx: str = "") -> Service:
        service = Service(tmp_path / name, domain, mx)
        made.append(service)
        return service

    yield make
    for service in made:
        service.kill()


def swaks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["swaks", "--silent", "2", "--timeout", "20", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks_inbound_submission_and_refusals(services) -> None:
    nobody_listens = free_ports(1)[0]
    a = services("a", "example.com", mx=f"elsewhere.org=127.0.0.1:{nobody_listens}").start()
    a.add("alice", "bob")
    a.winpop("set", "queue_retry_interval", "3600")
    smtp, sub, smtps = (f"127.0.0.1:{a.ports[n]}" for n in ("smtp", "submission", "smtps"))
    auth = ["--auth", "PLAIN", "--auth-user", "alice@example.com", "--auth-password", PASSWORD]
    assert swaks("--server", smtp, "--from", "carol@remote.test", "--to", "bob@example.com").returncode == 0
    # PIPELINING offered and used: MAIL, RCPT and DATA go out before the first reply comes back.
    pipelined = subprocess.run(["swaks", "--timeout", "20", "--server", smtp, "--pipeline", "--from",
                                "carol@remote.test", "--to", "bob@example.com"], capture_output=True, text=True,
                               timeout=60)
    assert pipelined.returncode == 0, pipelined.stdout + pipelined.stderr
    talk = [line for line in pipelined.stdout.splitlines() if line.startswith((" -> ", "<-  "))]
    mail = next(i for i, line in enumerate(talk) if line.startswith(" -> MAIL FROM"))
    assert talk[mail + 1].startswith(" -> RCPT TO") and talk[mail + 2] == " -> DATA", pipelined.stdout
    assert swaks("--server", sub, "-tls", *auth, "--from", "alice@example.com",
                 "--to", "bob@example.com").returncode == 0
    assert swaks("--server", smtps, "--tls-on-connect", *auth, "--from", "alice@example.com",
                 "--to", "bob@example.com").returncode == 0
    # Refusals: unknown mailbox, relay attempt, plaintext AUTH without TLS, oversize.
    unknown = swaks("--server", smtp, "--from", "carol@remote.test", "--to", "nobody@example.com")
    assert unknown.returncode != 0 and "550 5.1.1" in unknown.stdout + unknown.stderr
    relay = swaks("--server", smtp, "--from", "carol@remote.test", "--to", "victim@elsewhere.org")
    assert relay.returncode != 0 and "554 5.7.1" in relay.stdout + relay.stderr
    plain = swaks("--server", sub, *auth, "--from", "alice@example.com", "--to", "bob@example.com")
    assert plain.returncode != 0
    a.winpop("set", "max_message_size", "20000")
    big = swaks("--server", smtp, "--from", "carol@remote.test", "--to", "bob@example.com",
                "--body", "x" * 60 + "\n" * 1 + ("y" * 70 + "\n") * 400)
    assert big.returncode != 0 and "552" in big.stdout + big.stderr
    # Authenticated relay is queued.
    assert swaks("--server", smtps, "--tls-on-connect", *auth, "--from", "alice@example.com",
                 "--to", "bob@elsewhere.org").returncode == 0
    assert [q["recipients"] for q in a.queue()] == [["bob@elsewhere.org"]]
    assert len(a.fetch("bob")) == 4
    stat = json.loads(a.winpop("--json", "stat").stdout)
    counters = stat["counters"]
    assert counters["smtp_accepted"] == 5 and counters["smtp_queued"] == 1 and counters["smtp_refused"] >= 2
    relay_test = json.loads(a.winpop("--json", "relaytest").stdout)["items"]
    assert relay_test and not any(r["relayed"] for r in relay_test)


@pytest.mark.skipif(shutil.which("msmtp") is None, reason="msmtp is not installed")
def test_msmtp_as_the_users_client(services, tmp_path: Path) -> None:
    a = services("a", "example.com").start()
    a.add("alice", "bob")
    config = tmp_path / "msmtprc"
    config.write_text(
        "defaults\ntls on\ntls_certcheck off\nauth on\n"
        f"account office\nhost 127.0.0.1\nport {a.ports['submission']}\ntls_starttls on\n"
        f"from alice@example.com\nuser alice@example.com\npassword {PASSWORD}\n"
        f"account office465\nhost 127.0.0.1\nport {a.ports['smtps']}\ntls_starttls off\n"
        f"from alice@example.com\nuser alice@example.com\npassword {PASSWORD}\n")
    config.chmod(0o600)
    for account in ("office", "office465"):
        done = subprocess.run(["msmtp", "-C", str(config), "-a", account, "bob@example.com"],
                              input=f"Subject: via {account}\n\nhello from msmtp\n", text=True,
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
    got = a.fetch("bob")
    assert sorted(m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in got) == [b"via office", b"via office465"]


def test_two_installations_exchange_mail(services) -> None:
    a = services("a", "example.com")
    b = services("b", "elsewhere.org")
    a.env["POP3SVC_TEST_MX"] = f"elsewhere.org=127.0.0.1:{b.ports['smtp']}"
    b.env["POP3SVC_TEST_MX"] = f"example.com=127.0.0.1:{a.ports['smtp']}"
    a.start().add("alice")
    a.winpop("set", "queue_retry_interval", "1")
    b.start().add("bob")
    # A → B, fetched over POP3 on B; and B → A.
    a.submit("alice", ["bob@elsewhere.org"], "hello bob")
    got = wait_for(lambda: b.fetch("bob"), what="mail on B")
    assert b"Subject: hello bob" in got[0]
    b.submit("bob", ["alice@example.com"], "hello alice")
    wait_for(lambda: any(b"hello alice" in m for m in a.fetch("alice")), what="mail on A")
    # B down: queued on A and retried; delivered when B comes back.
    b.kill()
    a.submit("alice", ["bob@elsewhere.org"], "while you were out")
    wait_for(lambda: [q for q in a.queue() if q["attempts"] >= 2], what="two failed attempts")
    b.start()
    a.winpop("queue", "retry")
    wait_for(lambda: any(b"while you were out" in m for m in b.fetch("bob")), what="delivery after restart")
    wait_for(lambda: a.queue() == [], what="empty queue on A")
    # B refuses permanently: a non-delivery report lands in Alice's mailbox on A.
    a.submit("alice", ["nobody@elsewhere.org"], "to nobody")
    report = wait_for(lambda: [m for m in a.fetch("alice") if b"Undelivered Mail Returned" in m],
                      what="non-delivery report")[0]
    assert b"multipart/report; report-type=delivery-status" in report
    assert b"Final-Recipient: rfc822; nobody@elsewhere.org" in report and b"Status: 5.1.1" in report
    assert b"Subject: to nobody" in report


def test_sigkill_with_mail_queued_delivers_each_once(services) -> None:
    a = services("a", "example.com")
    b = services("b", "elsewhere.org")
    a.env["POP3SVC_TEST_MX"] = f"elsewhere.org=127.0.0.1:{b.ports['smtp']}"
    a.start().add("alice")
    a.winpop("set", "queue_retry_interval", "1")
    subjects = [f"queued {i}" for i in range(10)]
    for subject in subjects:
        a.submit("alice", ["bob@elsewhere.org"], subject)
    wait_for(lambda: len(a.queue()) == 10, what="ten queued")
    a.kill(signal.SIGKILL)
    b.start().add("bob")
    a.start()
    got = wait_for(lambda: (lambda m: len(m) >= 10 and m)(b.fetch("bob")), timeout=60, what="ten deliveries")
    wait_for(lambda: a.queue() == [], what="empty queue")
    time.sleep(0)   # nothing left to race: the queue is empty, so no further attempt can run
    received = sorted(m.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for m in b.fetch("bob"))
    assert received == sorted(subjects), received
    assert len(got) == 10
