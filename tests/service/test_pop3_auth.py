"""Logon over POP3: USER/PASS, APOP, AUTH (RFC 5034) with PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256
and NTLM (pyspnego's client), "Require SPA", locked mailboxes and domains, throttling and bans,
and logs that never hold a password or an AUTH payload."""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import poplib
from datetime import UTC

import pytest
import spnego

from core.catalog import SETTINGS
from core.settings import Settings
from service.live_settings import LiveSettings
from service.throttle import LoginThrottle
from tests.service.test_pop3_support import PASSWORD, Pop3Harness, RawClient, message, pop3  # noqa: F401

ALICE = "alice@example.com"
PLAINTEXT_REFUSED = (b"-ERR [AUTH] Plaintext logons are refused on an unencrypted connection: use STLS "
                     b"(or port 995) or a secure mechanism (APOP, AUTH CRAM-MD5, SCRAM-SHA-256 or NTLM).\r\n")


@pytest.fixture
def alice(pop3: Pop3Harness) -> int:  # noqa: F811
    box = pop3.add_mailbox(ALICE)
    pop3.deliver(box, message(1))
    return box


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def greeted(pop3: Pop3Harness, **kwargs) -> tuple[RawClient, bytes]:  # noqa: F811
    c = RawClient(pop3.port, **kwargs)
    greeting = c.line()
    assert greeting.startswith(b"+OK")
    return c, greeting


# -- USER/PASS and SPA --------------------------------------------------------------------
def test_wrong_password_is_auth_error_and_counted(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    c, _ = greeted(pop3)
    assert c.cmd(f"USER {ALICE}").startswith(b"+OK")
    assert c.cmd("PASS wrong") == b"-ERR [AUTH] Invalid login name or password.\r\n"
    assert c.cmd("USER nobody@example.com").startswith(b"+OK")   # says nothing about existence
    assert c.cmd("PASS wrong") == b"-ERR [AUTH] Invalid login name or password.\r\n"
    assert c.cmd(f"USER {ALICE}").startswith(b"+OK")
    assert c.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    assert pop3.stats()["pop3.logon_failures"] == 2
    c.cmd("QUIT")


def test_spa_refuses_plaintext_outside_tls(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("sparequired", True)
    c, _ = greeted(pop3)
    assert c.cmd(f"USER {ALICE}") == PLAINTEXT_REFUSED
    assert c.cmd("PASS x") == b"-ERR Give USER first.\r\n"
    assert c.cmd("AUTH PLAIN " + b64(f"\0{ALICE}\0{PASSWORD}".encode()).decode()) == PLAINTEXT_REFUSED
    assert c.cmd("AUTH LOGIN") == PLAINTEXT_REFUSED
    assert c.cmd("AUTH") == b"+OK Supported mechanisms follow\r\n"
    assert c.multi() == [b"SCRAM-SHA-256\r\n", b"CRAM-MD5\r\n", b"NTLM\r\n"]
    # inside TLS the same logon works
    assert c.cmd("STLS").startswith(b"+OK")
    c.upgrade(pop3.client_tls())
    assert c.cmd(f"USER {ALICE}").startswith(b"+OK")
    assert c.cmd(f"PASS {PASSWORD}").startswith(b"+OK alice@example.com has 1 messages")
    c.cmd("QUIT")


def test_locked_mailbox_and_domain_are_refused_but_still_receive(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.lock(ALICE)
    c, _ = greeted(pop3)
    c.cmd(f"USER {ALICE}")
    assert c.cmd(f"PASS {PASSWORD}") == (
        b"-ERR [SYS/PERM] The mailbox alice@example.com is locked by the administrator; mail is still "
        b"delivered, but it cannot be retrieved until the lock is removed.\r\n")
    pop3.deliver(alice, message(2))                    # delivery goes on
    pop3.lock(ALICE, locked=False)
    pop3.lock(ALICE, domain=True)
    c.cmd(f"USER {ALICE}")
    assert c.cmd(f"PASS {PASSWORD}").startswith(b"-ERR [SYS/PERM] The domain example.com is locked")
    c.cmd(f"USER {ALICE}")
    assert c.cmd("PASS wrong") == b"-ERR [AUTH] Invalid login name or password.\r\n"  # no hint without the password
    pop3.lock(ALICE, domain=True, locked=False)
    c.cmd(f"USER {ALICE}")
    assert c.cmd(f"PASS {PASSWORD}") .startswith(b"+OK alice@example.com has 2 messages")
    c.cmd("QUIT")


# -- APOP -----------------------------------------------------------------------------------
def test_apop_with_poplib(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("sparequired", True)          # APOP sends no password: allowed without TLS
    client = poplib.POP3("127.0.0.1", pop3.port, timeout=10)
    assert client.apop(ALICE, PASSWORD).startswith(b"+OK")
    assert client.stat()[0] == 1
    client.quit()
    client = poplib.POP3("127.0.0.1", pop3.port, timeout=10)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        client.apop(ALICE, "wrong")
    with pytest.raises(poplib.error_proto, match="Syntax"):
        client._shortcmd("APOP alice@example.com nothex")
    client.quit()


# -- AUTH -----------------------------------------------------------------------------------
def test_auth_plain_initial_response_continuation_and_cancel(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    token = b64(f"\0{ALICE}\0{PASSWORD}".encode())
    c, _ = greeted(pop3)
    assert c.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert c.cmd(b"*") == b"-ERR Authentication cancelled.\r\n"
    assert c.cmd(b"AUTH PLAIN =") .startswith(b"-ERR [AUTH]")          # empty initial response: fails
    assert c.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert c.cmd(b"not base64!") == b"-ERR The response is not valid base64; authentication cancelled.\r\n"
    assert c.cmd(b"AUTH PLAIN !!!") == b"-ERR The initial response is not valid base64; authentication cancelled.\r\n"
    assert c.cmd(b"AUTH X-UNKNOWN") .startswith(b"-ERR Unsupported authentication mechanism X-UNKNOWN")
    assert c.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert c.cmd(token).startswith(b"+OK alice@example.com has 1 messages")
    c.cmd("QUIT")
    c, _ = greeted(pop3)
    assert c.cmd(b"AUTH plain " + token).startswith(b"+OK alice@example.com")
    c.cmd("QUIT")


def test_auth_login(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    c, _ = greeted(pop3)
    assert c.cmd(b"AUTH LOGIN") == b"+ " + b64(b"Username:") + b"\r\n"
    assert c.cmd(b64(ALICE.encode())) == b"+ " + b64(b"Password:") + b"\r\n"
    assert c.cmd(b64(PASSWORD.encode())).startswith(b"+OK alice@example.com")
    c.cmd("QUIT")


def test_auth_cram_md5(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("sparequired", True)
    c, _ = greeted(pop3)
    line = c.cmd(b"AUTH CRAM-MD5")
    assert line.startswith(b"+ ")
    challenge = base64.b64decode(line[2:].strip())
    assert challenge.startswith(b"<") and challenge.endswith(b">")
    digest = hmac.new(PASSWORD.encode(), challenge, hashlib.md5).hexdigest()
    assert c.cmd(b64(f"{ALICE} {digest}".encode())).startswith(b"+OK alice@example.com")
    c.cmd("QUIT")


def scram_exchange(c: RawClient, login: str, password: str) -> bytes:
    """A minimal SCRAM-SHA-256 client (RFC 5802 / 7677), to drive the server from the test."""
    nonce = base64.b64encode(os.urandom(18)).decode()
    bare = f"n={login},r={nonce}"
    first = c.cmd(b"AUTH SCRAM-SHA-256 " + b64(f"n,,{bare}".encode()))
    assert first.startswith(b"+ ")
    server_first = base64.b64decode(first[2:].strip()).decode()
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = c.cmd(b64(f"{without_proof},p={base64.b64encode(proof).decode()}".encode()))
    if not final.startswith(b"+ "):
        return final
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    expected = base64.b64encode(hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode()
    assert base64.b64decode(final[2:].strip()).decode() == f"v={expected}"   # RFC 5034 §4: data with success
    return c.cmd(b"")


def test_auth_scram_sha_256(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("sparequired", True)
    c, _ = greeted(pop3)
    assert scram_exchange(c, ALICE, "wrong").startswith(b"-ERR [AUTH]")
    assert scram_exchange(c, ALICE, PASSWORD).startswith(b"+OK alice@example.com has 1 messages")
    c.cmd("QUIT")


@pytest.mark.parametrize("initial", [False, True], ids=["empty-challenge-first", "initial-response"])
def test_auth_ntlm_with_pyspnego(pop3: Pop3Harness, alice: int, initial: bool) -> None:  # noqa: F811
    pop3.set("sparequired", True)
    client = spnego.client(ALICE, PASSWORD, protocol="ntlm")
    c, _ = greeted(pop3)
    if initial:
        reply = c.cmd(b"AUTH NTLM " + b64(client.step()))
    else:
        assert c.cmd(b"AUTH NTLM") == b"+ \r\n"
        reply = c.cmd(b64(client.step()))
    assert reply.startswith(b"+ ")
    assert c.cmd(b64(client.step(base64.b64decode(reply[2:].strip()))))\
        .startswith(b"+OK alice@example.com has 1 messages")
    c.cmd("QUIT")
    wrong = spnego.client(ALICE, "wrong", protocol="ntlm")
    c, _ = greeted(pop3)
    reply = c.cmd(b"AUTH NTLM " + b64(wrong.step()))
    assert c.cmd(b64(wrong.step(base64.b64decode(reply[2:].strip())))).startswith(b"-ERR [AUTH]")
    c.close()


# -- logs -----------------------------------------------------------------------------------
def test_maximum_logging_never_shows_secrets(pop3: Pop3Harness, alice: int, caplog) -> None:  # noqa: F811
    pop3.set("logging", 3)
    token = b64(f"\0{ALICE}\0{PASSWORD}".encode())
    with caplog.at_level(logging.DEBUG, logger="service.pop3"):
        c, _ = greeted(pop3)
        c.cmd(f"USER {ALICE}")
        c.cmd(f"PASS {PASSWORD}")
        c.cmd("QUIT")
        c, _ = greeted(pop3)
        c.cmd(b"AUTH PLAIN " + token)
        c.cmd("QUIT")
        c, _ = greeted(pop3)
        c.cmd(b"AUTH PLAIN")
        c.cmd(b64(f"\0{ALICE}\0wrong-{PASSWORD}".encode()))
        c.cmd("QUIT")
        assert c.closed()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "C: PASS ****" in text and "C: AUTH PLAIN ****" in text and "logged on" in text
    assert "logon (AUTH PLAIN) failed" in text
    assert PASSWORD not in text and token.decode() not in text and "s3cret" not in text


# -- throttling and bans --------------------------------------------------------------------
def test_failed_logons_ban_the_address_until_lifted(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("throttle_allow", "")   # loopback is allow-listed by default; ban it here
    pop3.set("throttle_failures", 3)
    c, _ = greeted(pop3)
    for _ in range(2):
        c.cmd(f"USER {ALICE}")
        assert c.cmd("PASS wrong") == b"-ERR [AUTH] Invalid login name or password.\r\n"
    c.cmd("USER mallory@example.com")
    assert c.cmd("PASS wrong") == b"-ERR [AUTH] Too many failed logons from your address; try again later.\r\n"
    assert c.closed()
    refused = RawClient(pop3.port)
    assert refused.line() == b"-ERR [AUTH] Too many failed logons from your address; try again later.\r\n"
    bans = pop3.in_loop(pop3.throttle.list_bans)
    assert [(b["kind"], b["value"], b["failures"]) for b in bans] == [("address", "127.0.0.1", 3)]
    assert pop3.in_loop(lambda: pop3.throttle.lift("127.0.0.1")) == 1
    assert pop3.in_loop(pop3.throttle.list_bans) == []
    c, _ = greeted(pop3)
    c.cmd(f"USER {ALICE}")
    assert c.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    c.cmd("QUIT")


def test_login_name_ban_and_allow_list(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("throttle_allow", "")   # loopback is allow-listed by default; ban it here
    pop3.set("throttle_failures", 2)
    throttle = pop3.throttle
    # failures for alice from other addresses ban the name alice@example.com
    for address in ("192.0.2.1", "192.0.2.2"):
        pop3.call(throttle.failure(address, ALICE.upper()))
    assert pop3.in_loop(lambda: throttle.is_login_banned(ALICE))
    c, _ = greeted(pop3)
    c.cmd(f"USER {ALICE}")
    assert c.cmd(f"PASS {PASSWORD}") == b"-ERR [AUTH] Too many failed logons for this login name; try again later.\r\n"
    # the office network is never banned
    pop3.set("throttle_allow", "127.0.0.0/8, 10.0.0.0/8")
    c.cmd(f"USER {ALICE}")
    assert c.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    c.cmd("QUIT")
    for _ in range(5):
        assert pop3.call(throttle.failure("10.1.2.3", "x@example.com")) is None
    assert not pop3.in_loop(lambda: throttle.is_banned("10.1.2.3"))
    assert {b["value"] for b in pop3.in_loop(throttle.list_bans)} == {ALICE}
    assert pop3.in_loop(lambda: throttle.lift(ALICE)) == 1


def test_ban_expires(pop3: Pop3Harness) -> None:  # noqa: F811
    from datetime import datetime, timedelta

    from core.tables import Ban
    throttle = pop3.throttle
    with pop3.db.write() as session:
        session.add(Ban(kind="address", value="198.51.100.7", reason="test", failures=9,
                        expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.add(Ban(kind="address", value="198.51.100.8", reason="test", failures=9,
                        expires_at=datetime.now(UTC) + timedelta(seconds=60)))
    pop3.in_loop(throttle._refresh_now)     # what the periodic refresh does (a ban from another node)
    assert not pop3.in_loop(lambda: throttle.is_banned("198.51.100.7"))
    assert pop3.in_loop(lambda: throttle.is_banned("198.51.100.8"))
    assert [b["value"] for b in pop3.in_loop(throttle.list_bans)] == ["198.51.100.8"]


def test_delay_escalates_and_is_capped(pop3: Pop3Harness, monkeypatch) -> None:  # noqa: F811
    import asyncio

    from service import throttle as throttle_module
    pop3.set("throttle_delay_ms", 500)
    pop3.set("throttle_failures", 100)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(throttle_module.asyncio, "sleep", fake_sleep)
    throttle = pop3.throttle

    async def run() -> None:
        for _ in range(8):
            await throttle.failure("203.0.113.9", "bob@example.com")
            await throttle.delay("203.0.113.9", "bob@example.com")
        await throttle.delay("192.0.2.77", None)   # a fresh address: the base delay
    pop3.call(run())
    monkeypatch.setattr(throttle_module.asyncio, "sleep", asyncio.sleep)
    assert slept == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 0.5]


def test_stored_settings_count_from_the_start(pop3: Pop3Harness) -> None:  # noqa: F811
    """The settings cache holds every setting of the catalog as soon as it is filled (nothing
    registers later), so what an administrator stored counts from the first session."""
    with pop3.db.write() as session:
        Settings.put(session, "throttle_allow", "10.9.0.0/16")
        Settings.put(session, "pop3_bad_commands", 7)
    settings = LiveSettings.load(pop3.db, fallback_hostname="pop.test")
    throttle = LoginThrottle(pop3.db, settings, pop3.workers, pop3.counters, pop3.events)
    assert throttle.allowed("10.9.1.2") and settings.get("pop3_bad_commands") == 7
    assert {name: settings.get(name) for name in SETTINGS} == _all_settings(pop3)



def _all_settings(pop3: Pop3Harness) -> dict:
    with pop3.db.read() as session:
        return Settings.get_all(session)
