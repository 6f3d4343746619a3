"""Submission (587 STARTTLS, 465 implicit TLS) and AUTH on the real SMTP service."""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import smtplib

import pytest

from core.auth.scram import salted_password
from tests.service.test_smtp_harness import PASSWORD, SmtpHarness, client_tls, message, smtp_service  # noqa: F401


def scram_login(client: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    """RFC 5802 client side, over RFC 4954 AUTH (the server's v= comes in a 334)."""
    nonce = base64.b64encode(secrets.token_bytes(18)).decode()
    first_bare = f"n={user},r={nonce}"
    code, resp = client.docmd("AUTH", "SCRAM-SHA-256 " + base64.b64encode(("n,," + first_bare).encode()).decode())
    assert code == 334, resp
    server_first = base64.b64decode(resp).decode()
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    salted = salted_password(password, base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    final_bare = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.new(stored, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = f"{final_bare},p={base64.b64encode(proof).decode()}"
    code, resp = client.docmd(base64.b64encode(final.encode()).decode())
    if code == 334:   # v=ServerSignature; answer with an empty response
        code, resp = client.docmd("")
    return code, resp


def auth_mechs(client: smtplib.SMTP) -> set[str]:
    return set(client.esmtp_features.get("auth", "").split())


def test_starttls_then_auth_plain_and_send(smtp_service: SmtpHarness) -> None:
    with smtp_service.client("submission") as client:
        client.ehlo("laptop")
        assert "PLAIN" not in auth_mechs(client) and "CRAM-MD5" in auth_mechs(client)
        client.starttls(context=client_tls())
        client.ehlo("laptop")
        assert {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"} <= auth_mechs(client)
        client.login("alice@example.com", PASSWORD)
        client.sendmail("alice@example.com", ["bob@example.com"], message(sender="alice@example.com",
                                                                           to="bob@example.com"))
    stored = smtp_service.messages("bob@example.com")[0]
    assert b"with ESMTPSA" in stored


def test_commands_sent_with_starttls_in_the_clear_are_dropped(smtp_service: SmtpHarness) -> None:
    """STARTTLS command injection (CVE-2011-0411 class): plaintext that rides along with STARTTLS
    must not be executed inside the TLS session."""
    import socket

    with socket.create_connection(("127.0.0.1", smtp_service.ports["submission"]), timeout=10) as raw:
        reader = raw.makefile("rb")

        def reply(stream) -> bytes:
            while True:
                line = stream.readline()
                if line[3:4] != b"-":
                    return line

        reply(reader)
        raw.sendall(b"EHLO laptop\r\n")
        reply(reader)
        raw.sendall(b"STARTTLS\r\nEHLO evil\r\nMAIL FROM:<evil@remote.test>\r\n")
        assert reply(reader).startswith(b"220")
        tls = client_tls().wrap_socket(raw, server_hostname="localhost")
        secure = tls.makefile("rb")
        tls.sendall(b"RCPT TO:<alice@example.com>\r\n")
        answer = reply(secure)
        tls.sendall(b"QUIT\r\n")
    assert answer.startswith(b"503"), answer   # no EHLO, no MAIL: the injected lines were dropped


def test_implicit_tls_advertises_auth(smtp_service: SmtpHarness) -> None:
    # aiosmtpd's issue #281: AUTH was not advertised on 465.
    with smtp_service.client("smtps") as client:
        client.ehlo("laptop")
        assert {"PLAIN", "LOGIN"} <= auth_mechs(client)
        assert not client.has_extn("starttls")
        client.login("alice@example.com", PASSWORD)
        client.sendmail("alice@example.com", ["bob@example.com"], message(sender="alice@example.com"))
    assert len(smtp_service.messages("bob@example.com")) == 1


def test_plain_refused_before_tls(smtp_service: SmtpHarness) -> None:
    with smtp_service.client("submission") as client:
        client.ehlo("laptop")
        auth = base64.b64encode(f"\0alice@example.com\0{PASSWORD}".encode()).decode()
        code, text = client.docmd("AUTH", f"PLAIN {auth}")
    assert code == 538


def test_plain_allowed_without_tls_when_spa_not_required(smtp_service: SmtpHarness) -> None:
    smtp_service.set("sparequired", False)
    with smtp_service.client("submission") as client:
        client.ehlo("laptop")
        assert "PLAIN" in auth_mechs(client)
        client.login("alice@example.com", PASSWORD)


def test_cram_md5_without_tls(smtp_service: SmtpHarness) -> None:
    with smtp_service.client("submission") as client:
        client.ehlo("laptop")
        client.user, client.password = "alice@example.com", PASSWORD
        code, _ = client.auth("CRAM-MD5", client.auth_cram_md5)
        assert code == 235
        client.sendmail("alice@example.com", ["bob@example.com"], message(sender="alice@example.com"))


def test_scram_sha_256(smtp_service: SmtpHarness) -> None:
    with smtp_service.client("submission") as client:
        client.ehlo("laptop")
        code, resp = scram_login(client, "alice@example.com", PASSWORD)
        assert code == 235, resp
        code, _ = client.mail("alice@example.com")
        assert code == 250


def test_wrong_password(smtp_service: SmtpHarness) -> None:
    with smtp_service.client("smtps") as client:
        client.ehlo("laptop")
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login("alice@example.com", "wrong")
        assert info.value.smtp_code == 535
    assert smtp_service.counters()["smtp_logon_failures"] >= 1


def test_sender_must_be_own_address(smtp_service: SmtpHarness) -> None:
    with smtp_service.client("smtps") as client:
        client.login("alice@example.com", PASSWORD)
        code, text = client.mail("bob@example.com")
        assert code == 553 and b"5.7.1" in text
        code, _ = client.mail("Alice@EXAMPLE.com")
        assert code == 250
    smtp_service.set("sender_must_match", False)
    with smtp_service.client("smtps") as client:
        client.login("alice@example.com", PASSWORD)
        assert client.mail("bob@example.com")[0] == 250


def test_authenticated_user_relays_to_queue(smtp_service: SmtpHarness) -> None:
    smtp_service.set("smtp_routes", "elsewhere.org=127.0.0.1:9")
    with smtp_service.client("smtps") as client:
        client.login("alice@example.com", PASSWORD)
        client.sendmail("alice@example.com", ["bob@elsewhere.org", "bob@example.com"],
                        message(sender="alice@example.com", to="bob@elsewhere.org"))
    queued = smtp_service.queue()
    assert len(queued) == 1 and queued[0]["submitted_by"] == "alice@example.com"
    assert len(smtp_service.messages("bob@example.com")) == 1


def test_sending_rate_limit_tells_the_administrator(smtp_service: SmtpHarness) -> None:
    smtp_service.set("send_rate_limit", "3/hour")
    events = []
    smtp_service.events.subscribe(lambda name, data: events.append((name, data)))
    with smtp_service.client("smtps") as client:
        client.login("alice@example.com", PASSWORD)
        client.mail("alice@example.com")
        codes = [client.rcpt("bob@example.com")[0] for _ in range(3)]
        code, text = client.rcpt("bob@example.com")
    assert codes == [250, 250, 250] and code == 450 and b"4.7.1" in text
    smtp_service.call(_noop())   # let the event callback run on the loop
    assert ("smtp.rate_limited", {"login": "alice@example.com", "limit": 3, "window": 3600}) in events
    assert smtp_service.counters()["smtp_rate_limited"] == 1


async def _noop() -> None:
    return None


def test_password_never_logged(smtp_service: SmtpHarness, caplog: pytest.LogCaptureFixture) -> None:
    smtp_service.set("logging", 3)
    caplog.set_level(logging.DEBUG)
    with smtp_service.client("smtps") as client:
        client.login("alice@example.com", PASSWORD)
        client.mail("alice@example.com")
    secret = base64.b64encode(f"\0alice@example.com\0{PASSWORD}".encode()).decode()
    assert caplog.records
    assert secret not in caplog.text and PASSWORD not in caplog.text


def test_repeated_failures_ban_the_address(smtp_service: SmtpHarness) -> None:
    smtp_service.set("throttle_allow", "")   # loopback is allow-listed by default; ban it here
    smtp_service.set("throttle_failures", 3)
    with smtp_service.client("smtps") as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice@example.com", "wrong")   # smtplib tries CRAM-MD5, PLAIN, LOGIN
    assert smtp_service.throttle.is_banned("127.0.0.1")
    with pytest.raises(smtplib.SMTPConnectError) as info:
        smtp_service.client("submission")
    assert info.value.smtp_code == 421


@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "challenge-first"])
def test_ntlm_as_outlooks_secure_password_authentication(smtp_service: SmtpHarness, initial: bool) -> None:
    """Outlook's "Secure Password Authentication" is NTLM; checked against pyspnego's client."""
    import spnego

    def ntlm_login(client: smtplib.SMTP, password: str) -> tuple[int, bytes]:
        ntlm = spnego.client("alice@example.com", password, protocol="ntlm")
        first = base64.b64encode(ntlm.step()).decode()
        if initial:
            code, resp = client.docmd("AUTH", f"NTLM {first}")
        else:
            code, resp = client.docmd("AUTH", "NTLM")
            assert code == 334
            code, resp = client.docmd(first)
        assert code == 334, resp
        return client.docmd(base64.b64encode(ntlm.step(base64.b64decode(resp))).decode())

    with smtp_service.client("submission") as client:   # no TLS: NTLM sends no password
        client.ehlo("outlook")
        assert "NTLM" in auth_mechs(client)
        code, resp = ntlm_login(client, PASSWORD)
        assert code == 235, resp
        assert client.mail("alice@example.com")[0] == 250
    with smtp_service.client("submission") as client:
        client.ehlo("outlook")
        code, _ = ntlm_login(client, "not the password")
        assert code == 535
