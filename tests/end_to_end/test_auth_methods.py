"""The local (PAM) and directory (LDAP) methods end to end: the real service, winpop, poplib and
smtplib over TLS, real system accounts and a real slapd."""
from __future__ import annotations

import os
import poplib
import secrets
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from tests.slapd import SERVICE_PW, Slapd, missing_reason
from tests.support import ServiceProcess, free_port
from tests.support import unverified_tls as tls

PASSWORD = "E2e-auth-pw-31"
TEMP = b"[SYS/TEMP]"

pytestmark = pytest.mark.slow


def pop3_logon(service: ServiceProcess, login: str, password: str) -> int:
    """Log on over port 995-style TLS; the message count, or poplib.error_proto."""
    client = poplib.POP3_SSL("127.0.0.1", service.ports["pop3s"], context=tls(), timeout=30)
    try:
        client.user(login)
        client.pass_(password)
        return client.stat()[0]
    finally:
        try:
            client.quit()
        except (poplib.error_proto, OSError):
            pass


def smtp_auth(service: ServiceProcess, login: str, password: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", service.ports["submission"], timeout=30) as smtp:
        smtp.ehlo()
        assert "auth" not in smtp.esmtp_features     # no mechanism can be offered before TLS (SPA required)
        smtp.starttls(context=tls())
        smtp.ehlo()
        assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]   # honest: PAM/LDAP check only these
        try:
            return smtp.login(login, password)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code, exc.smtp_error


def capabilities(service: ServiceProcess) -> tuple[dict, dict]:
    """CAPA before and after STLS on the plain POP3 port."""
    client = poplib.POP3("127.0.0.1", service.ports["pop3"], timeout=30)
    try:
        before = client.capa()
        client.stls(context=tls())
        return before, client.capa()
    finally:
        client.quit()


# --- local system accounts -------------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="the local accounts method needs root (system accounts, PAM)")
def test_local_accounts_end_to_end(service):
    name, other = "pop3t_" + secrets.token_hex(4), "pop3t_" + secrets.token_hex(4)
    try:
        service.winpop("set", "auth", "local", check=True)
        for d in ("a.example", "b.example"):
            service.winpop("add", d, check=True)
        refused = service.winpop("set", "auth", "directory")
        assert refused.returncode == 1 and "only while no domain exists" in refused.stderr
        service.winpop("add", f"{name}@a.example", "--createuser", "--password-stdin", input=PASSWORD + "\n",
                       check=True)
        dup = service.winpop("add", f"{name}@b.example", "--createuser", "--password-stdin", input=PASSWORD + "\n")
        assert dup.returncode == 1 and "unique across all domains" in dup.stderr
        service.winpop("add", f"{other}@b.example", "--createuser", "--password-stdin", input=PASSWORD + "\n",
                       check=True)

        before, after = capabilities(service)
        assert "SASL" not in before and "USER" not in before and "STLS" in before
        assert after["SASL"] == ["PLAIN", "LOGIN"] and "USER" in after

        assert pop3_logon(service, f"{name}@a.example", PASSWORD) == 0
        assert pop3_logon(service, name, PASSWORD) == 0          # the account name alone
        assert smtp_auth(service, f"{name}@a.example", PASSWORD)[0] == 235

        service.winpop("changepwd", f"{name}@a.example", "--password-stdin", input="Changed-e2e-9\n", check=True)
        assert pop3_logon(service, name, "Changed-e2e-9") == 0

        # PAM takes ~2 s to refuse a password: another session logs on meanwhile, unhindered.
        sent, slow_done = threading.Event(), threading.Event()
        slow_reply: list[bytes] = []

        def slow_wrong_logon() -> None:
            raw = tls().wrap_socket(socket.create_connection(("127.0.0.1", service.ports["pop3s"]), timeout=30))
            with raw, raw.makefile("rb") as reader:
                reader.readline()
                raw.sendall(f"USER {name}\r\n".encode())
                reader.readline()
                raw.sendall(b"PASS not-the-password\r\n")
                sent.set()
                slow_reply.append(reader.readline())
                slow_done.set()

        thread = threading.Thread(target=slow_wrong_logon)
        started = time.monotonic()
        thread.start()
        assert sent.wait(30)
        assert pop3_logon(service, f"{other}@b.example", PASSWORD) == 0
        fast = time.monotonic() - started
        assert not slow_done.is_set(), "the wrong password was refused before the other logon finished"
        thread.join(30)
        assert slow_reply and slow_reply[0].startswith(b"-ERR [AUTH]")
        assert fast < time.monotonic() - started

        service.winpop("delete", f"{name}@a.example", "--deleteuser", check=True)
        assert subprocess.run(["id", name], capture_output=True).returncode != 0
    finally:
        for n in (name, other):
            subprocess.run(["userdel", n], capture_output=True)


# --- directory -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    reason = missing_reason()
    if reason:
        pytest.skip(f"no OpenLDAP server: {reason}")
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    yield server
    server.stop()


def configure_directory(service: ServiceProcess, slapd: Slapd, **extra: object) -> None:
    for name, value in slapd.settings(**extra).items():
        service.winpop("set", name, str(int(value) if isinstance(value, bool) else value), check=True)


def test_directory_end_to_end(service, slapd):
    d = f"e{secrets.token_hex(3)}.example"
    other = f"f{secrets.token_hex(3)}.example"
    configure_directory(service, slapd)            # works before the method is switched
    shown = service.winpop("get")
    assert "(set)" in shown.stdout and SERVICE_PW not in shown.stdout
    service.winpop("set", "auth", "directory", check=True)
    service.winpop("set", "throttle_failures", "2", check=True)
    service.winpop("set", "throttle_delay_ms", "0", check=True)
    # Loopback is allow-listed by default; ban it here.
    service.winpop("set", "throttle_allow", "192.0.2.1", check=True)
    for domain in (d, other):
        service.winpop("add", domain, check=True)
        service.winpop("add", f"alice@{domain}", "--createuser", "--password-stdin", input=PASSWORD + "\n",
                       check=True)                 # the same name in two domains

    _before, after = capabilities(service)
    assert after["SASL"] == ["PLAIN", "LOGIN"]
    assert pop3_logon(service, f"alice@{d}", PASSWORD) == 0
    assert pop3_logon(service, f"alice@{other}", PASSWORD) == 0
    assert smtp_auth(service, f"alice@{d}", PASSWORD)[0] == 235

    # The directory goes away: a temporary error, logged, never counted as a wrong password.
    service.winpop("set", "ldap_urls", f"ldap://127.0.0.1:{free_port()}", check=True)
    service.winpop("set", "ldap_timeout", "2", check=True)
    for _ in range(3):                             # more than throttle_failures
        with pytest.raises(poplib.error_proto) as caught:
            pop3_logon(service, f"alice@{d}", PASSWORD)
        assert TEMP in caught.value.args[0]
    code, _text = smtp_auth(service, f"alice@{d}", PASSWORD)
    assert code == 454
    assert service.call("ban.list")["items"] == []
    assert "unreachable" in (service.data_dir / "logs" / "service.log").read_text()
    service.winpop("set", "ldap_urls", slapd.url, check=True)
    assert pop3_logon(service, f"alice@{d}", PASSWORD) == 0

    # A wrong password is what the throttle counts.
    for _ in range(2):
        with pytest.raises(poplib.error_proto) as caught:
            pop3_logon(service, f"alice@{other}", "wrong password")
        assert b"[AUTH]" in caught.value.args[0]
    assert service.call("ban.list")["items"]

    # The bind password is nowhere in clear: database, logs, audit, settings.
    for path in service.data_dir.rglob("*"):
        if path.is_file() and path.suffix != ".sock":
            assert SERVICE_PW.encode() not in path.read_bytes(), path
    assert SERVICE_PW not in service.winpop("audit", "200").stdout
    assert SERVICE_PW not in service.winpop("--json", "get").stdout


def test_migrate_moves_password_file_mailboxes_to_the_directory(service, slapd):
    d = f"m{secrets.token_hex(3)}.example"
    service.winpop("add", d, check=True)
    service.winpop("add", f"mia@{d}", "--password-stdin", input="mias-file-pw\n", check=True)
    assert pop3_logon(service, f"mia@{d}", "mias-file-pw") == 0
    configure_directory(service, slapd)
    result = service.winpop("migrate", f"mia@{d}", check=True)
    assert "password carried over" in result.stdout and "now uses the directory method" in result.stdout
    assert service.call("settings.get", name="auth") == {"auth": "directory"}
    assert slapd.exists(f"uid=mia@{d},ou=people,dc=example,dc=test")
    assert pop3_logon(service, f"mia@{d}", "mias-file-pw") == 0      # through the directory now
    again = service.winpop("migrate", f"mia@{d}")
    assert again.returncode == 1 and "uses the 'directory' method" in again.stderr
