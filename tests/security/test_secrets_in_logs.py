"""No secret reaches a log: at logging level 3 (Maximum) a password never appears in the service's
logs or its standard output, in any form (as typed, upper-cased, base64 of "\\0user\\0pass", base64
of the password alone), through POP3 USER/PASS, APOP, AUTH PLAIN/LOGIN (initial response and
continuation) and SMTP AUTH PLAIN/LOGIN, including after a refused AUTH and a malformed base64 line."""
from __future__ import annotations

import base64
import hashlib
import re
import smtplib
import socket
from pathlib import Path

import pytest

from tests.support import ServiceProcess, unverified_tls, wait_for

ALICE = "alice@example.com"
PASSWORD = "Tr0ub4dor&3-zq"   # mixed case, so the upper-cased form differs
LETTERS_ONLY = "cGFzcwordQmVlZg"   # base64-looking letters a POP3 parser would take for a verb


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


FORMS = {
    "as typed": PASSWORD,
    "upper-cased": PASSWORD.upper(),
    "base64 of \\0user\\0pass": b64(f"\0{ALICE}\0{PASSWORD}"),
    "base64 of \\0user\\0pass, upper-cased": b64(f"\0{ALICE}\0{PASSWORD}").upper(),
    "base64 of the password": b64(PASSWORD),
    "base64 of the password, upper-cased": b64(PASSWORD).upper(),
    "base64 of the password without padding": b64(PASSWORD).rstrip("="),
}


class Line:
    """A line-at-a-time client over a (possibly TLS) socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def line(self) -> bytes:
        return self.reader.readline()

    def send(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def multiline(self, text: str) -> list[bytes]:
        first = self.send(text)
        lines = [first]
        if first.startswith(b"+OK"):
            while (line := self.line()) not in (b".\r\n", b""):
                lines.append(line)
        return lines

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    service = ServiceProcess(tmp_path_factory.mktemp("secrets") / "data").start()
    service.add_mailbox(ALICE, PASSWORD)
    for name, value in (("logging", 3), ("throttle_delay_ms", 0), ("throttle_failures", 1000)):
        service.call("settings.set", name=name, value=value)
    yield service
    service.stop()


def pop3(svc: ServiceProcess, *, tls: bool = False) -> tuple[Line, bytes]:
    sock = socket.create_connection(("127.0.0.1", svc.ports["pop3s" if tls else "pop3"]), timeout=10)
    if tls:
        sock = unverified_tls().wrap_socket(sock)
    client = Line(sock)
    return client, client.line()


def quit_pop3(client: Line) -> None:
    assert client.send("QUIT").startswith(b"+OK")
    client.close()


def everything_logged(svc: ServiceProcess) -> str:
    """Every file in the data directory (logs, database, audit) and the process's output."""
    texts = [svc.log_path.read_bytes()]
    for path in Path(svc.data_dir).rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes())
    return b"\n".join(texts).decode("latin-1")


def assert_no_secret(text: str) -> None:
    for what, form in FORMS.items():
        assert form not in text, f"the password ({what}) is in a log"


def test_pop3_logons_in_every_form_leave_no_password_in_the_logs(svc: ServiceProcess) -> None:
    svc.call("settings.set", name="sparequired", value=False)
    # USER/PASS, right and wrong
    c, _ = pop3(svc)
    c.send(f"USER {ALICE}")
    assert c.send(f"PASS {PASSWORD}x").startswith(b"-ERR")
    c.send(f"USER {ALICE}")
    assert c.send(f"PASS {PASSWORD}").startswith(b"+OK")
    quit_pop3(c)
    # AUTH PLAIN with an initial response, then as a continuation
    c, _ = pop3(svc)
    assert c.send(f"AUTH PLAIN {b64(chr(0) + ALICE + chr(0) + PASSWORD)}").startswith(b"+OK")
    quit_pop3(c)
    c, _ = pop3(svc)
    assert c.send("AUTH PLAIN").startswith(b"+ ")
    assert c.send(b64(f"\0{ALICE}\0{PASSWORD}")).startswith(b"+OK")
    quit_pop3(c)
    # AUTH LOGIN: initial response (the name), then the password as a continuation
    c, _ = pop3(svc)
    assert c.send(f"AUTH LOGIN {b64(ALICE)}").startswith(b"+ ")
    assert c.send(b64(PASSWORD)).startswith(b"+OK")
    quit_pop3(c)
    # A malformed base64 line in the middle of an exchange: the password typed in clear
    c, _ = pop3(svc)
    assert c.send("AUTH LOGIN").startswith(b"+ ")
    assert c.send(b64(ALICE)).startswith(b"+ ")
    assert c.send(PASSWORD).startswith(b"-ERR")
    assert c.send(PASSWORD.upper()).startswith(b"-ERR")   # now a "command": the session goes on
    # APOP: the digest is a password equivalent for this banner, never logged either
    quit_pop3(c)
    c, banner = pop3(svc)
    stamp = re.search(rb"<[^>]+>", banner).group(0)
    digest = hashlib.md5(stamp + PASSWORD.encode()).hexdigest()
    assert c.send(f"APOP {ALICE} {digest}").startswith(b"+OK")
    quit_pop3(c)

    # SPA required: AUTH PLAIN/LOGIN refused in the clear; what the client sends next is not logged
    svc.call("settings.set", name="sparequired", value=True)
    c, _ = pop3(svc)
    assert c.send(f"AUTH PLAIN {b64(chr(0) + ALICE + chr(0) + PASSWORD)}").startswith(b"-ERR")
    for form in FORMS.values():
        assert c.send(form).startswith(b"-ERR")
    assert c.send(LETTERS_ONLY).startswith(b"-ERR")             # parses as a verb: still not logged
    assert c.send(f"AUTH {b64(PASSWORD)}").startswith(b"-ERR")   # a payload in the mechanism's place
    c.send("QUIT")
    c.close()
    # Inside TLS the same exchanges work and still log nothing secret
    c, _ = pop3(svc, tls=True)
    assert c.send("AUTH PLAIN").startswith(b"+ ")
    assert c.send(b64(f"\0{ALICE}\0{PASSWORD}x")).startswith(b"-ERR")
    c.send(f"USER {ALICE}")
    assert c.send(f"PASS {PASSWORD}").startswith(b"+OK")
    quit_pop3(c)

    def logged() -> bool:
        text = everything_logged(svc)
        return "APOP" in text and "not a command" in text
    text = wait_for(lambda: logged() and everything_logged(svc), 10, what="the session lines in the log")
    assert "C: USER alice@example.com" in text and "C: PASS ****" in text   # level 3 logs commands
    assert_no_secret(text)
    assert LETTERS_ONLY.upper() not in text and LETTERS_ONLY not in text


def _smtp(svc: ServiceProcess, listener: str) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", svc.ports[listener], timeout=10)
    client.ehlo("laptop")
    return client


def test_smtp_auth_in_every_form_leaves_no_password_in_the_logs(svc: ServiceProcess) -> None:
    svc.call("settings.set", name="sparequired", value=True)
    context = unverified_tls()
    # Refused in the clear (538), then the client sends its base64 anyway: read as commands
    for form in [*FORMS.values(), f"AUTH {b64(PASSWORD)}"]:   # one a connection: aiosmtpd hangs up
        client = _smtp(svc, "smtp")                           # after five unrecognised commands
        code, _ = client.docmd("AUTH", f"PLAIN {b64(chr(0) + ALICE + chr(0) + PASSWORD)}")
        assert code == 538
        assert client.docmd(form)[0] >= 500
        client.close()
    # Inside TLS: PLAIN with an initial response, PLAIN and LOGIN as continuations, a wrong one
    client = _smtp(svc, "submission")
    client.starttls(context=context)
    client.ehlo("laptop")
    assert client.docmd("AUTH", f"PLAIN {b64(chr(0) + ALICE + chr(0) + PASSWORD + 'x')}")[0] == 535
    assert client.docmd("AUTH", "PLAIN")[0] == 334
    assert client.docmd(b64(f"\0{ALICE}\0{PASSWORD}"))[0] == 235
    client.quit()
    client = _smtp(svc, "submission")
    client.starttls(context=context)
    client.ehlo("laptop")
    assert client.docmd("AUTH", "LOGIN")[0] == 334
    assert client.docmd(b64(ALICE))[0] == 334
    assert client.docmd(PASSWORD + "!")[0] == 501          # malformed base64: the password in clear
    assert client.docmd(PASSWORD.upper())[0] >= 500        # then read as a command
    assert client.docmd("AUTH", f"LOGIN {b64(ALICE)}")[0] == 334
    assert client.docmd(b64(PASSWORD))[0] == 235
    client.quit()
    with smtplib.SMTP_SSL("127.0.0.1", svc.ports["smtps"], timeout=10, context=context) as client:
        client.login(ALICE, PASSWORD)

    text = wait_for(lambda: "not a command" in everything_logged(svc) and "authenticated as" in
                    everything_logged(svc) and everything_logged(svc), 10, what="the SMTP lines in the log")
    assert "ehlo laptop" in text.lower()   # level 3: aiosmtpd's command lines are logged
    assert_no_secret(text)


def test_the_redaction_helpers_keep_commands_and_cut_everything_else() -> None:
    from service.pop3.commands import redacted
    from service.smtp.aiosmtpd_hooks import loggable_line

    assert loggable_line(b"MAIL FROM:<a@b.c>") == b"MAIL FROM:<a@b.c>"
    assert loggable_line(b"AUTH PLAIN " + b64(PASSWORD).encode()) == b"AUTH PLAIN ***"
    assert loggable_line(b"auth " + b64(PASSWORD).encode()) == b"AUTH ***"
    assert PASSWORD.encode() not in loggable_line(PASSWORD.encode())
    assert redacted("USER", ALICE) == f"USER {ALICE}"
    assert redacted("PASS", PASSWORD) == "PASS ****"
    assert PASSWORD.upper() not in redacted(PASSWORD.upper(), "")
    assert redacted("AUTH", f"LOGIN {b64(ALICE)}") == "AUTH LOGIN ****"




# -- the database password: off the command line, never in a log -----------------------------
DB_SECRET = "Db-S3cret-pw"


def test_the_database_password_file_must_be_private(tmp_path: Path) -> None:
    from core.errors import Invalid
    from service.db_password import read_password_file

    path = tmp_path / "db.pw"
    path.write_text(DB_SECRET + "\n")
    path.chmod(0o644)
    with pytest.raises(Invalid, match="chmod 600"):
        read_password_file(path)
    path.chmod(0o600)
    assert read_password_file(path) == DB_SECRET
    link = tmp_path / "link.pw"
    link.symlink_to(path)
    with pytest.raises(Invalid, match="cannot be read"):
        read_password_file(link)
    with pytest.raises(Invalid, match="cannot be read"):
        read_password_file(tmp_path / "missing")


def test_the_database_password_comes_from_a_file_or_the_environment(tmp_path: Path, caplog) -> None:
    from service.db_password import PASSWORD_ENV, database_url, shown_url

    base = "postgresql+psycopg://pop3svc@db.example.com/mail"
    path = tmp_path / "db.pw"
    path.write_text(DB_SECRET)
    path.chmod(0o600)
    assert database_url(base, environ={}) == base
    from sqlalchemy.engine import make_url
    assert make_url(database_url(base, environ={PASSWORD_ENV: "from-env"})).password == "from-env"
    assert make_url(database_url(base, password_file=path, environ={PASSWORD_ENV: "x"})).password == DB_SECRET
    with caplog.at_level("WARNING"):
        database_url(f"postgresql+psycopg://pop3svc:{DB_SECRET}@db.example.com/mail", environ={})
    assert "--db-password-file" in caplog.text and DB_SECRET not in caplog.text
    assert DB_SECRET not in shown_url(f"postgresql+psycopg://u:{DB_SECRET}@h/d")
    assert database_url("sqlite:////tmp/x.db", environ={PASSWORD_ENV: "ignored"}) == "sqlite:////tmp/x.db"


def test_the_service_warns_of_a_password_in_the_url_and_never_logs_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support import ROOT, free_port
    data = tmp_path / "data"
    url = f"postgresql+psycopg://pop3svc:{DB_SECRET}@127.0.0.1:{free_port()}/mail?connect_timeout=3"
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "service", "--data-dir", str(data),
                             "--db-url", url, "--pop3-port", "0", "--pop3s-port", "0", "--smtp-port", "0",
                             "--submission-port", "0", "--smtps-port", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    logs = "".join(p.read_text(errors="replace") for p in data.rglob("*.log"))
    everything = result.stdout + result.stderr + logs
    assert "--db-password-file" in everything and "cannot open the database" in everything
    assert DB_SECRET not in everything
    # A password file others may read is refused before anything is opened
    path = tmp_path / "db.pw"
    path.write_text(DB_SECRET)
    path.chmod(0o640)
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "service", "--data-dir", str(data),
                             "--db-url", "postgresql+psycopg://pop3svc@127.0.0.1/mail", "--db-password-file",
                             str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "chmod 600" in result.stdout + result.stderr + "".join(p.read_text() for p in data.rglob("*.log"))
