"""A bounded fuzz run (issue 12 §5): the POP3 and SMTP command parsers and the admin channel of a
real service process, fed random mutations of a corpus of valid sessions.

Seeded (the same inputs every run) and bounded: a fixed number of sessions per protocol, and a
wall-clock budget as a backstop on a loaded machine. It fails if the service log shows a
traceback or an ERROR record, if an admin answer is not a JSON object, or if the service does not
answer normally afterwards.
"""
from __future__ import annotations

import base64
import json
import poplib
import random
import smtplib
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import ServiceProcess

PASSWORD = "Fuzz-pw-12345"
SEED = 20261130
SESSIONS = 600          # per protocol (and per SMTP port)
BUDGET = 15.0           # seconds per protocol, a backstop only
READ_TIMEOUT = 2.0

TOKENS = [b"\x00", b"\xff", b"\r", b"\n", b"\r\n", b" ", b"\t", b"<", b">", b"<>", b"@", b":", b"%s%n", b".",
          b"..", b"=", b"*", b"\xc3\x28", "\u00fc\u00e5".encode(), b"A" * 1100, b"9" * 30, b"-1", b"0",
          b"\"", b"\\", b"[", b"]", b"(", b")", b",", b"SIZE=99999999999999999999", b"SMTPUTF8",
          b"=?utf-8?b?AAAA?=", b"{}", b"\x1b[2J", b"x" * 70_000]

PLAIN = base64.b64encode(b"\0alice@example.com\0" + PASSWORD.encode())
POP3_CORPUS = [
    [b"CAPA", b"USER alice@example.com", b"PASS " + PASSWORD.encode(), b"STAT", b"LIST", b"LIST 1", b"UIDL",
     b"UIDL 1", b"TOP 1 0", b"RETR 1", b"DELE 2", b"RSET", b"NOOP", b"QUIT"],
    [b"APOP alice@example.com 0123456789abcdef0123456789abcdef", b"STAT", b"QUIT"],
    [b"AUTH PLAIN " + PLAIN, b"LIST", b"RETR 2", b"QUIT"],
    [b"AUTH LOGIN", base64.b64encode(b"alice@example.com"), base64.b64encode(PASSWORD.encode()), b"UIDL"],
    [b"AUTH CRAM-MD5", b"YWxpY2UgMDAwMA==", b"CAPA"],
    [b"AUTH SCRAM-SHA-256 " + base64.b64encode(b"n,,n=alice@example.com,r=abcdefgh"), b"*", b"QUIT"],
    [b"AUTH NTLM", b"TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==", b"*"],
    [b"STLS", b"CAPA"],
]
MESSAGE = [b"From: <carol@remote.test>", b"To: <alice@example.com>", b"Subject: fuzz", b"", b"body", b"..dot",
           b"."]
SMTP_CORPUS = [
    [b"EHLO fuzz.test", b"MAIL FROM:<carol@remote.test> SIZE=100 BODY=8BITMIME", b"RCPT TO:<alice@example.com>",
     b"RCPT TO:<postmaster>", b"DATA", *MESSAGE, b"QUIT"],
    [b"HELO fuzz.test", b"MAIL FROM:<>", b"RCPT TO:<bob@example.com>", b"DATA", *MESSAGE, b"RSET", b"VRFY alice",
     b"EXPN list", b"HELP", b"HELP MAIL", b"NOOP", b"QUIT"],
    [b"EHLO fuzz.test", b"AUTH PLAIN " + PLAIN, b"MAIL FROM:<alice@example.com>", b"RCPT TO:<x@remote.test>",
     b"DATA", b"From: alice@example.com", b"", b"hi", b".", b"QUIT"],
    [b"EHLO fuzz.test", b"AUTH LOGIN", base64.b64encode(b"alice@example.com"), base64.b64encode(b"wrong"),
     b"AUTH CRAM-MD5", b"AAAA", b"QUIT"],
    [b"EHLO fuzz.test", b"MAIL FROM:<j\xc3\xbcrgen@remote.test> SMTPUTF8", b"RCPT TO:<alice@example.com>",
     b"BDAT 10 LAST", b"DATA", *MESSAGE],
    [b"EHLO fuzz.test", b"STARTTLS", b"EHLO again"],
    [b"EHLO fuzz.test", b"AUTH LOGIN", b"A" * 70_000, b"AUTH PLAIN", b"=", b"NOOP"],
    [b"EHLO fuzz.test", b"MAIL FROM:<\"q u\"@[127.0.0.1]>", b"RCPT TO:<@a.test,@b.test:alice@example.com>",
     b"RCPT TO:<alice%remote.test@example.com>", b"DATA", b"."],
]
ADMIN_CORPUS: list[dict] = [
    {"op": "server.info", "params": {}}, {"op": "service.status", "params": {}},
    {"op": "settings.get", "params": {"name": "logging"}}, {"op": "settings.describe", "params": {}},
    {"op": "domain.list", "params": {"offset": 0, "limit": 10, "filter": "ex", "sort": "name", "descending": True}},
    {"op": "domain.get", "params": {"name": "example.com"}}, {"op": "domain.add", "params": {"name": "fuzz.test"}},
    {"op": "domain.lock", "params": {"name": "fuzz.test"}}, {"op": "domain.unlock", "params": {"name": "fuzz.test"}},
    {"op": "mailbox.list", "params": {"domain": "example.com", "limit": 5}},
    {"op": "mailbox.get", "params": {"address": "alice@example.com"}},
    {"op": "mailbox.add", "params": {"address": "f@fuzz.test", "password": "Fuzz-pw-99999", "quota": "10MB"}},
    {"op": "mailbox.lock", "params": {"address": "f@fuzz.test"}},
    {"op": "mailbox.unlock", "params": {"address": "f@fuzz.test"}},
    {"op": "mailbox.set_quota", "params": {"address": "f@fuzz.test", "quota": 1000}},
    {"op": "mailbox.set_password", "params": {"address": "f@fuzz.test", "password": "Fuzz-pw-88888"}},
    {"op": "stat", "params": {"domain": "example.com"}}, {"op": "log.recent", "params": {"limit": 3}},
    {"op": "audit.list", "params": {"limit": 3}}, {"op": "ban.list", "params": {}}, {"op": "queue.list", "params": {}},
    {"op": "queue.show", "params": {"id": 1}}, {"op": "admin.token_list", "params": {}},
    {"op": "auth.login", "params": {"token": "nope"}}, {"op": "events.subscribe", "params": {}},
]
JSON_VALUES = [None, True, False, -1, 0, 2**70, 1.5, float("1e308"), "", "x" * 5000, [], {}, {"a": [1, {"b": None}]},
               "../../etc/passwd", "\u0000", "\u00e9@fuzz.test", "a@b@c", "fuzz.test", "-" * 300, [None] * 50]


def mutate_lines(rng: random.Random, lines: list[bytes], corpus: list[list[bytes]]) -> list[bytes]:
    """1-4 random edits of a session: lines dropped, repeated, swapped or spliced in from another
    session, bytes flipped, tokens inserted, lines cut, stretched or left without their end."""
    lines = list(lines)
    for _ in range(rng.randint(1, 4)):
        if not lines:
            lines = [b""]
        i = rng.randrange(len(lines))
        line = lines[i]
        kind = rng.randrange(10)
        if kind == 0:
            del lines[i]
        elif kind == 1:
            lines.insert(i, line)
        elif kind == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == 3:
            lines.insert(i, rng.choice(rng.choice(corpus)))
        elif kind == 4 and line:
            pos = rng.randrange(len(line))
            lines[i] = line[:pos] + bytes([rng.randrange(256)]) + line[pos + 1:]
        elif kind == 5:
            pos = rng.randint(0, len(line))
            lines[i] = line[:pos] + rng.choice(TOKENS) + line[pos:]
        elif kind == 6:
            lines[i] = line[:rng.randint(0, len(line))]
        elif kind == 7:
            lines[i] = line * rng.randint(2, 40)
        elif kind == 8:
            lines[i] = line + rng.choice([b"\n", b"\r", b"\r\r\n", b"\n\r"])   # an odd line end of its own
        else:
            lines[i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return lines


def mutate_request(rng: random.Random) -> bytes:
    """A request of the corpus with its values, keys, types or bytes changed."""
    request = json.loads(json.dumps(rng.choice(ADMIN_CORPUS)))
    request["id"] = rng.randrange(1000)
    params = request["params"]
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(8)
        if kind == 0 and params:
            params[rng.choice(sorted(params))] = rng.choice(JSON_VALUES)
        elif kind == 1 and params:
            del params[rng.choice(sorted(params))]
        elif kind == 2:
            params[rng.choice(["extra", "name", "address", "limit", "id", "__class__"])] = rng.choice(JSON_VALUES)
        elif kind == 3:
            request["id"] = rng.choice(JSON_VALUES)
        elif kind == 4:
            request["params"] = rng.choice(JSON_VALUES)
        elif kind == 5:
            op = str(request.get("op"))
            request["op"] = rng.choice(JSON_VALUES + [op.upper(), op + "."])
        elif kind == 6:
            request.pop(rng.choice(["id", "op", "params"]), None)
    line = json.dumps(request).encode()
    if rng.random() < 0.3:   # and, now and then, the bytes themselves
        line = b"".join(mutate_lines(rng, [line], [[line]]))
    return line.replace(b"\n", b" ") if rng.random() < 0.8 else line


def converse(sock: socket.socket, payload: bytes) -> bytes:
    """Send ``payload``, close our side, and read until the service closes or READ_TIMEOUT."""
    sock.settimeout(READ_TIMEOUT)
    received = []
    try:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + READ_TIMEOUT
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received.append(chunk)
    except (TimeoutError, ConnectionError):
        pass   # the service may hang up on a hostile client: that is its right
    finally:
        sock.close()
    return b"".join(received)


def run_sessions(make_payload: Callable[[random.Random], bytes], connect: Callable[[], socket.socket],
                 check: Callable[[bytes, bytes], None] | None = None) -> int:
    rng = random.Random(SEED)
    started = time.monotonic()
    done = 0
    for _ in range(SESSIONS):
        if time.monotonic() - started > BUDGET:
            break
        payload = make_payload(rng)
        answer = converse(connect(), payload)
        if check is not None:
            check(payload, answer)
        done += 1
    return done


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory):
    svc = ServiceProcess(tmp_path_factory.mktemp("fuzz") / "data")
    svc.start()
    try:
        svc.add_mailbox("alice@example.com", PASSWORD)
        svc.add_mailbox("bob@example.com", PASSWORD)
        for name, value in {"throttle_delay_ms": 0, "throttle_allow": "127.0.0.1/32", "sparequired": False,
                            "smtp_routes": "*=127.0.0.1:9", "queue_retry_interval": 3600}.items():
            svc.call("settings.set", name=name, value=value)
        with smtplib.SMTP("127.0.0.1", svc.ports["smtp"], timeout=20) as client:
            for n in range(3):
                client.sendmail("carol@remote.test", ["alice@example.com"], f"Subject: {n}\r\n\r\nbody\r\n".encode())
        yield svc
    finally:
        svc.stop()


def _tcp(svc: ServiceProcess, name: str) -> Callable[[], socket.socket]:
    return lambda: socket.create_connection(("127.0.0.1", svc.ports[name]), timeout=10)


def _text_payload(corpus: list[list[bytes]]) -> Callable[[random.Random], bytes]:
    return lambda rng: b"".join(line + b"\r\n" for line in mutate_lines(rng, rng.choice(corpus), corpus))


def _log_problems(svc: ServiceProcess) -> list[str]:
    text = (svc.data_dir / "logs" / "service.log").read_text(errors="replace") + svc.output()
    return [line for line in text.splitlines() if "Traceback" in line or " ERROR " in line or " CRITICAL " in line]


def _still_serves(svc: ServiceProcess) -> None:
    assert svc.call("service.status")
    pop = poplib.POP3("127.0.0.1", svc.ports["pop3"], timeout=20)
    try:
        pop.user("bob@example.com")
        pop.pass_(PASSWORD)
        assert pop.stat()[0] >= 0
    finally:
        pop.quit()
    with smtplib.SMTP("127.0.0.1", svc.ports["smtp"], timeout=20) as client:
        client.sendmail("carol@remote.test", ["bob@example.com"], b"Subject: after\r\n\r\nstill here\r\n")


def test_fuzz_pop3(fuzz_service: ServiceProcess) -> None:
    done = run_sessions(_text_payload(POP3_CORPUS), _tcp(fuzz_service, "pop3"))
    assert done >= 20
    assert _log_problems(fuzz_service) == []
    _still_serves(fuzz_service)


def test_fuzz_smtp(fuzz_service: ServiceProcess) -> None:
    done = run_sessions(_text_payload(SMTP_CORPUS), _tcp(fuzz_service, "smtp"))
    done += run_sessions(_text_payload(SMTP_CORPUS), _tcp(fuzz_service, "submission"))
    assert done >= 20
    assert _log_problems(fuzz_service) == []
    _still_serves(fuzz_service)


def test_fuzz_admin_channel(fuzz_service: ServiceProcess) -> None:
    path = str(Path(fuzz_service.data_dir) / "admin.sock")

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return sock

    def payload(rng: random.Random) -> bytes:
        return b"".join(mutate_request(rng) + b"\n" for _ in range(rng.randint(1, 6)))

    def check(sent: bytes, answer: bytes) -> None:
        for line in answer.splitlines():
            reply = json.loads(line)   # every answer is a JSON object ...
            assert isinstance(reply, dict) and ("result" in reply or "error" in reply or "event" in reply), reply
            if "error" in reply:       # ... and an error names a stable code
                assert isinstance(reply["error"].get("code"), str), reply

    done = run_sessions(payload, connect, check)
    assert done >= 20
    assert _log_problems(fuzz_service) == []
    _still_serves(fuzz_service)
