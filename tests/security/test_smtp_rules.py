"""SMTP rules against hostile or sloppy clients (issue 12 §1/§4, issues 13 and 14), on the real
SMTP service (the in-process harness, real sockets) and, for shutdown, the real service process."""
from __future__ import annotations

import smtplib
import socket
from pathlib import Path

import pytest

from tests.service.test_smtp_harness import PASSWORD, SmtpHarness, client_tls, message, smtp_service  # noqa: F401
from tests.support import ServiceProcess

ALREADY_TLS = b"503 5.5.1"
NEEDS_SMTPUTF8 = "553 5.6.7"


def _replies(sock_file, count: int) -> list[bytes]:
    """The next ``count`` replies (multi-line ones as their last line)."""
    out = []
    while len(out) < count:
        line = sock_file.readline()
        assert line, out
        if line[3:4] != b"-":
            out.append(line)
    return out


def raw(port: int, commands: list[bytes], *, tls: bool = False) -> list[bytes]:
    """Send each command in lock step and collect one reply each (after the greeting)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    if tls:
        sock = client_tls().wrap_socket(sock)
    with sock:
        reader = sock.makefile("rb")
        out = _replies(reader, 1)
        for command in commands:
            sock.sendall(command)
            out += _replies(reader, 1)
        return out


# -- STARTTLS inside TLS (RFC 3207 §4.2) ---------------------------------------------------
def test_starttls_after_starttls_is_refused(smtp_service: SmtpHarness) -> None:
    with smtp_service.client("submission") as client:
        client.ehlo("x.test")
        client.starttls(context=client_tls())
        client.ehlo("x.test")
        assert not client.has_extn("starttls")
        code, text = client.docmd("STARTTLS")
        assert (code, text[:5]) == (503, b"5.5.1"), (code, text)
        assert client.noop()[0] == 250   # still a working TLS session


def test_starttls_on_implicit_tls_port_is_refused(smtp_service: SmtpHarness) -> None:
    replies = raw(smtp_service.ports["smtps"], [b"EHLO x.test\r\n", b"STARTTLS\r\n", b"NOOP\r\n"], tls=True)
    assert b"STARTTLS" not in replies[1]
    assert replies[2].startswith(ALREADY_TLS) and replies[3].startswith(b"250")


# -- line lengths (RFC 5321 §4.5.3.1.4, §4.5.3.1.6) ------------------------------------------
@pytest.mark.parametrize("text, accepted", [(998, True), (999, False)], ids=["1000-octets", "1001-octets"])
def test_text_line_limit_is_1000_octets_with_crlf(smtp_service: SmtpHarness, text: int, accepted: bool) -> None:
    body = b"Subject: long\r\n\r\n" + b"x" * text + b"\r\n"
    replies = raw(smtp_service.ports["smtp"], [
        b"EHLO x.test\r\n", b"MAIL FROM:<carol@remote.test>\r\n", b"RCPT TO:<alice@example.com>\r\n",
        b"DATA\r\n", body + b".\r\n", b"NOOP\r\n"])
    assert replies[5].startswith(b"250" if accepted else b"500 Line too long"), replies[5]
    assert replies[6].startswith(b"250")
    assert len(smtp_service.messages("alice@example.com")) == (1 if accepted else 0)


def test_long_command_line_is_refused_and_changes_nothing(smtp_service: SmtpHarness) -> None:
    replies = raw(smtp_service.ports["smtp"], [
        b"EHLO x.test\r\n", b"MAIL FROM:<carol@remote.test> " + b"X" * 1000 + b"\r\n",
        b"RCPT TO:<alice@example.com>\r\n", b"NOOP\r\n"])
    assert replies[2].startswith(b"500") and replies[3].startswith(b"503") and replies[4].startswith(b"250")


def test_overlong_auth_answer_is_refused_and_the_session_goes_on(smtp_service: SmtpHarness) -> None:
    smtp_service.set("sparequired", False)
    replies = raw(smtp_service.ports["smtp"], [b"EHLO x.test\r\n", b"AUTH LOGIN\r\n", b"A" * 100_000 + b"\r\n",
                                               b"NOOP\r\n"])
    assert replies[2].startswith(b"334") and replies[3].startswith(b"500 5.5.6"), replies
    assert replies[4].startswith(b"250")


# -- SMTPUTF8 (RFC 6531 §3.7.4.1) ------------------------------------------------------------------
def test_non_ascii_sender_needs_smtputf8(smtp_service: SmtpHarness) -> None:
    replies = raw(smtp_service.ports["smtp"], [
        b"EHLO x.test\r\n", "MAIL FROM:<j\u00fcrgen@remote.test>\r\n".encode(),
        "MAIL FROM:<j\u00fcrgen@remote.test> SMTPUTF8\r\n".encode(), b"RCPT TO:<alice@example.com>\r\n"])
    assert replies[2].startswith(NEEDS_SMTPUTF8.encode()), replies[2]
    assert replies[3].startswith(b"250") and replies[4].startswith(b"250")


def test_non_ascii_recipient_needs_smtputf8(smtp_service: SmtpHarness) -> None:
    replies = raw(smtp_service.ports["smtp"], [
        b"EHLO x.test\r\n", b"MAIL FROM:<carol@remote.test>\r\n", "RCPT TO:<\u00e5sa@example.com>\r\n".encode()])
    assert replies[3].startswith(NEEDS_SMTPUTF8.encode()), replies[3]


def test_address_that_is_not_utf8_gets_a_reply_not_a_crash(smtp_service: SmtpHarness) -> None:
    replies = raw(smtp_service.ports["smtp"], [
        b"EHLO x.test\r\n", b"MAIL FROM:<carol@remote.test> SMTPUTF8\r\n", b"RCPT TO:<\xff\xfe@example.com>\r\n",
        b"RCPT TO:<bob@\xc3example.com>\r\n", b"NOOP\r\n"])
    assert replies[3].startswith(b"553 5.6.7") and replies[4].startswith(b"553 5.6.7"), replies
    assert replies[5].startswith(b"250")


# -- postmaster (RFC 5321 §4.5.1) ---------------------------------------------------------------
def test_postmaster_goes_to_the_chosen_mailbox(smtp_service: SmtpHarness) -> None:
    smtp_service.set("postmaster_mailbox", "Bob@Example.com")
    with smtp_service.client() as client:
        client.sendmail("carol@remote.test", ["postmaster"], message(to="postmaster"))
        client.sendmail("carol@remote.test", ["PostMaster@EXAMPLE.com"], message(to="postmaster@example.com"))
    assert len(smtp_service.messages("bob@example.com")) == 2
    assert smtp_service.messages("alice@example.com") == []


def test_postmaster_without_a_setting_goes_to_the_domains_first_mailbox(smtp_service: SmtpHarness) -> None:
    with smtp_service.client() as client:
        client.sendmail("carol@remote.test", ["postmaster@example.com", "<postmaster>"], message())
    assert len(smtp_service.messages("alice@example.com")) == 1
    with smtp_service.client() as client:   # other domains still refuse it
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("carol@remote.test", ["postmaster@elsewhere.test"], message())


def test_a_mailbox_named_postmaster_gets_its_own_mail(smtp_service: SmtpHarness) -> None:
    smtp_service.add_mailbox("postmaster@example.com")
    with smtp_service.client() as client:
        client.sendmail("carol@remote.test", ["postmaster@example.com"], message())
    assert len(smtp_service.messages("postmaster@example.com")) == 1


def test_postmaster_setting_must_be_an_address(smtp_service: SmtpHarness) -> None:
    from core.errors import Invalid
    with pytest.raises(Invalid):
        smtp_service.set("postmaster_mailbox", "not an address")


# -- local senders on port 25 -----------------------------------------------------------------
def test_local_sender_from_outside_without_auth_is_refused(smtp_service: SmtpHarness) -> None:
    with smtp_service.client() as client:
        client.ehlo("x.test")
        code, text = client.mail("alice@example.com")
        assert code == 550 and text.startswith(b"5.7.1"), (code, text)
        assert client.rset()[0] == 250
        assert client.mail("")[0] == 250   # bounces (null sender) still come in
    smtp_service.set("relay_networks", "127.0.0.1/32")   # the office network may
    with smtp_service.client() as client:
        client.sendmail("alice@example.com", ["bob@example.com"], message(sender="alice@example.com"))
    smtp_service.set("relay_networks", "")
    smtp_service.set("reject_local_senders", False)    # and the setting turns it off
    with smtp_service.client() as client:
        client.sendmail("alice@example.com", ["bob@example.com"], message(sender="alice@example.com"))
    assert len(smtp_service.messages("bob@example.com")) == 2


# -- From: header on submission ---------------------------------------------------------------
def _submit(harness: SmtpHarness, data: bytes) -> None:
    with harness.client("smtps") as client:
        client.login("alice@example.com", PASSWORD)
        client.sendmail("alice@example.com", ["bob@example.com"], data)


@pytest.mark.parametrize("header", [
    b"From: The Boss <boss@example.com>\r\n",
    b"From: alice@example.com,\r\n boss@example.com\r\n",            # a folded second address
    b"From: <alice@example.com>\r\nfrom: <boss@example.com>\r\n",    # a second From field
    b"FROM:\r\n\t<boss@example.com>\r\n",
], ids=["other", "folded-list", "two-fields", "folded-only"])
def test_submission_from_header_must_be_the_users(smtp_service: SmtpHarness, header: bytes) -> None:
    with pytest.raises(smtplib.SMTPDataError) as info:
        _submit(smtp_service, header + b"Subject: x\r\n\r\nbody\r\n")
    assert info.value.smtp_code == 550 and b"5.7.1" in info.value.smtp_error
    assert smtp_service.messages("bob@example.com") == []


def test_submission_own_from_header_passes_and_setting_relaxes(smtp_service: SmtpHarness) -> None:
    _submit(smtp_service, b"From: Alice <ALICE@example.com>\r\nSubject: x\r\n\r\nFrom: boss@example.com\r\n")
    smtp_service.set("from_must_match", False)
    _submit(smtp_service, b"From: The Boss <boss@example.com>\r\nSubject: x\r\n\r\nbody\r\n")
    assert len(smtp_service.messages("bob@example.com")) == 2


def test_relay_account_free_to_use_any_envelope_sender_is_free_in_from_too(smtp_service: SmtpHarness) -> None:
    """sender_must_match off (a relay account of another server): the From: rule is off with it."""
    smtp_service.set("sender_must_match", False)
    _submit(smtp_service, b"From: Someone <someone@elsewhere.test>\r\nSubject: x\r\n\r\nbody\r\n")
    assert len(smtp_service.messages("bob@example.com")) == 1


# -- issue 13: a full mailbox says 552 at the end of DATA when told to --------------------------
def test_full_mailbox_is_permanent_at_end_of_data_without_size(smtp_service: SmtpHarness) -> None:
    """Room at RCPT (no SIZE declared), none once the message is in: 552 when quota_full_tempfail is
    off, 452 when on; nothing stored either way."""
    smtp_service.add_mailbox("small@example.com", quota=2000)
    with smtp_service.client() as client:
        client.sendmail("carol@remote.test", ["small@example.com"], message(body=("f" * 58 + "\r\n") * 20))
    session = [b"EHLO x.test\r\n", b"MAIL FROM:<carol@remote.test>\r\n", b"RCPT TO:<small@example.com>\r\n",
               b"DATA\r\n", message(to="small@example.com", body=("w" * 58 + "\r\n") * 15) + b".\r\n"]
    smtp_service.set("quota_full_tempfail", False)
    replies = raw(smtp_service.ports["smtp"], session)
    assert replies[3].startswith(b"250") and replies[5].startswith(b"552 5.2.2"), replies
    smtp_service.set("quota_full_tempfail", True)
    replies = raw(smtp_service.ports["smtp"], session)
    assert replies[3].startswith(b"250") and replies[5].startswith(b"452 4.2.2"), replies
    assert len(smtp_service.messages("small@example.com")) == 1


# -- issue 14: shutdown says 421 (RFC 5321 §3.8) ----------------------------------------------
def test_shutdown_says_421_to_open_sessions(tmp_path: Path) -> None:
    svc = ServiceProcess(tmp_path / "data")
    svc.start()
    try:
        plain = socket.create_connection(("127.0.0.1", svc.ports["smtp"]), timeout=20)
        tls = client_tls().wrap_socket(socket.create_connection(("127.0.0.1", svc.ports["smtps"]), timeout=20))
        readers = [plain.makefile("rb"), tls.makefile("rb")]
        for sock, reader in zip((plain, tls), readers, strict=True):
            assert reader.readline().startswith(b"220")
            sock.sendall(b"EHLO x.test\r\n")
            _replies(reader, 1)
        assert svc.stop() == 0
        for reader in readers:
            assert reader.readline().startswith(b"421 4.3.2"), "no 421 before the close"
        plain.close()
        tls.close()
    finally:
        svc.stop()
