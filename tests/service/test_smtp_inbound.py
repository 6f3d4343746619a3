"""Inbound mail on port 25 against the real SMTP service: RCPT policy, DATA, limits, hygiene."""
from __future__ import annotations

import smtplib
import socket

import pytest

from tests.service.test_smtp_harness import SmtpHarness, message, smtp_service, wait_for  # noqa: F401


def raw_session(port: int, lines: list[bytes], *, read_greeting: bool = True) -> list[str]:
    """Send ``lines`` one at a time and collect the reply to each (multi-line replies joined)."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")

        def reply() -> str:
            out = []
            while True:
                line = reader.readline().decode()
                if not line:
                    break
                out.append(line.rstrip("\r\n"))
                if len(line) < 4 or line[3] != "-":
                    break
            return "\n".join(out)

        if read_greeting:
            replies.append(reply())
        for line in lines:
            try:
                sock.sendall(line)
                replies.append(reply())
            except OSError:   # the server hung up: that is the answer
                replies.append("")
                break
    return replies


def test_local_delivery_adds_received_header(smtp_service: SmtpHarness) -> None:
    with smtp_service.client() as client:
        client.ehlo("sender.remote.test")
        client.sendmail("carol@remote.test", ["alice@example.com"], message())
    stored = smtp_service.messages("alice@example.com")[0]
    assert stored.startswith(b"Received: from sender.remote.test ([127.0.0.1])\n\tby mx.test (POP3 Service) with ESMTP")
    assert b"for <alice@example.com>" in stored
    assert smtp_service.counters()["smtp_accepted"] == 1


def test_many_local_recipients_share_one_file(smtp_service: SmtpHarness) -> None:
    with smtp_service.client() as client:
        client.sendmail("carol@remote.test", ["alice@example.com", "BOB@Example.COM"], message())
    alice = smtp_service.store.list_messages(smtp_service.admin.mailbox_get("alice@example.com") and 1)
    assert len(smtp_service.messages("alice@example.com")) == 1
    assert len(smtp_service.messages("bob@example.com")) == 1
    import os
    assert os.stat(alice[0].path).st_nlink == 2   # hard links: stored once


@pytest.mark.parametrize("rcpt, expected", [
    ("nobody@example.com", "550 5.1.1"),
    ("alice@unknown-domain.test", "554 5.7.1"),
    ("victim%elsewhere.org@example.com", "550 5.1.1"),
    ('"victim@elsewhere.org"@example.com', "550 5.1.1"),
    ("elsewhere.org!victim@example.com", "550 5.1.1"),
    ("@example.com:victim@elsewhere.org", "554 5.7.1"),
    ("victim", "501 5.1.3"),
    ("victim@[192.0.2.1]", "554 5.7.1"),
], ids=["unknown-mailbox", "foreign-domain", "percent-hack", "quoted-local", "bang-path", "source-route",
        "unqualified", "address-literal"])
def test_recipients_refused_at_rcpt(smtp_service: SmtpHarness, rcpt: str, expected: str) -> None:
    with smtp_service.client() as client:
        client.ehlo("x.test")
        client.mail("carol@remote.test")
        code, text = client.rcpt(f"<{rcpt}>" if not rcpt.startswith("@") else f"<{rcpt}>")
    assert f"{code} {text.decode()}".startswith(expected)
    assert smtp_service.queue() == []


def test_relay_allowed_for_allow_listed_network(smtp_service: SmtpHarness) -> None:
    smtp_service.set("relay_networks", "127.0.0.0/8")
    smtp_service.set("smtp_routes", "elsewhere.org=127.0.0.1:9")   # discard port: nobody there
    with smtp_service.client() as client:
        client.sendmail("carol@remote.test", ["bob@elsewhere.org"], message(to="bob@elsewhere.org"))
    queued = smtp_service.queue()
    assert queued[0]["recipients"] == ["bob@elsewhere.org"]


def test_size_limit_announced_and_enforced(smtp_service: SmtpHarness) -> None:
    smtp_service.set("max_message_size", 10000)
    with smtp_service.client() as client:
        client.ehlo("x.test")
        assert client.esmtp_features["size"] == "10000"
        code, _ = client.mail("carol@remote.test", ["SIZE=20000"])
        assert code == 552
        client.rset()
        client.mail("carol@remote.test")
        client.rcpt("alice@example.com")
        code, _ = client.data(message(body="x" * 70 + "\r\n") * 200)
        assert code == 552
    assert smtp_service.messages("alice@example.com") == []


def test_quota_full_and_too_big(smtp_service: SmtpHarness) -> None:
    smtp_service.admin.mailbox_set_quota("bob@example.com", 2000)
    with smtp_service.client() as client:
        client.ehlo("x.test")
        client.mail("carol@remote.test", ["SIZE=5000"])
        code, text = client.rcpt("bob@example.com")
        assert (code, text[:5]) == (552, b"5.2.2")
        client.rset()
        client.sendmail("carol@remote.test", ["bob@example.com"], message(body=("y" * 70 + "\r\n") * 20))
        smtp_service.server.directory.invalidate()
        client.mail("carol@remote.test", ["SIZE=600"])
        code, text = client.rcpt("bob@example.com")
        assert (code, text[:5]) == (452, b"4.2.2")
        client.rset()
        smtp_service.set("quota_full_tempfail", False)
        client.mail("carol@remote.test", ["SIZE=600"])
        code, text = client.rcpt("bob@example.com")
        assert (code, text[:5]) == (552, b"5.2.2")
        code, _ = client.rcpt("alice@example.com")   # other recipients are not affected
        assert code == 250


@pytest.mark.parametrize("payload", [
    b"Subject: a\r\n\r\nline one\nline two\r\n.\r\n",
    b"Subject: a\r\n\r\nsmuggle\n.\r\nMAIL FROM:<x@y.z>\r\n.\r\n",
    b"Subject: a\r\n\r\nsmuggle\r.\r\n.\r\n",
], ids=["bare-lf", "lf-dot-crlf", "bare-cr-dot"])
def test_bare_line_ends_refused(smtp_service: SmtpHarness, payload: bytes) -> None:
    replies = raw_session(smtp_service.ports["smtp"], [
        b"EHLO x.test\r\n", b"MAIL FROM:<carol@remote.test>\r\n", b"RCPT TO:<alice@example.com>\r\n",
        b"DATA\r\n", payload, b"QUIT\r\n"])
    assert replies[4].startswith("354")
    assert replies[5].startswith("550 5.6.11")
    assert smtp_service.messages("alice@example.com") == []


def test_mail_loop_refused(smtp_service: SmtpHarness) -> None:
    looping = b"".join(b"Received: from hop%d\r\n" % i for i in range(50)) + message()
    with smtp_service.client() as client:
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("carol@remote.test", ["alice@example.com"], looping)
    assert info.value.smtp_code == 554 and b"5.4.6" in info.value.smtp_error


def test_error_budget_hangs_up(smtp_service: SmtpHarness) -> None:
    smtp_service.set("smtp_error_budget", 3)
    replies = raw_session(smtp_service.ports["smtp"], [
        b"EHLO x.test\r\n", b"MAIL FROM:<a@b.test>\r\n",
        b"RCPT TO:<n1@example.com>\r\n", b"RCPT TO:<n2@example.com>\r\n", b"RCPT TO:<n3@example.com>\r\n",
        b"RCPT TO:<alice@example.com>\r\n"])
    assert replies[3].startswith("550") and replies[4].startswith("550")
    assert replies[5].startswith("421 4.7.0")
    assert replies[6] == ""     # the connection is closed


def test_unknown_commands_budget_and_long_lines(smtp_service: SmtpHarness) -> None:
    replies = raw_session(smtp_service.ports["smtp"],
                          [b"EHLO x.test\r\n", b"MAIL FROM:<" + b"a" * 1100 + b"@b.test>\r\n"] + [b"BOGUS\r\n"] * 5)
    assert replies[2].startswith("500")
    assert replies[-1].startswith("502 5.5.1")


def test_malformed_paths_get_553_not_a_local_error(smtp_service: SmtpHarness) -> None:
    """A lone "<" crashes the email parser aiosmtpd uses; the client must hear "malformed" (not
    451), while plain and quoted paths, with parameters, still work."""
    replies = raw_session(smtp_service.ports["smtp"], [
        b"EHLO x.test\r\n", b"MAIL FROM:<\r\n", b'MAIL FROM:<"carol x"@remote.test> SIZE=100\r\n',
        b"RCPT TO:<\r\n", b"RCPT TO: <alice@example.com>\r\n"])
    assert replies[2].startswith("553 5.1.3"), replies
    assert replies[3].startswith("250") and replies[4].startswith("553 5.1.3") and replies[5].startswith("250")


def test_a_slow_disk_never_keeps_a_second_client_waiting(smtp_service: SmtpHarness) -> None:
    """A lone session's delivery runs on the event loop (no other client to serve). Once one
    delivery is slow (a struggling disk, simulated by a store that takes 0.8 s), the next ones go
    to worker threads, so a client connecting meanwhile is greeted at once."""
    import threading
    import time

    store = smtp_service.store
    real = store.deliver_many
    entered = threading.Event()

    def slow_deliver(*args, **kwargs):
        entered.set()
        time.sleep(0.8)        # the simulated slow disk, not a synchronisation
        return real(*args, **kwargs)

    store.deliver_many = slow_deliver
    try:
        with smtp_service.client() as client:   # alone: on the loop, slow, so threads from now on
            client.sendmail("carol@remote.test", ["alice@example.com"], message())
        entered.clear()
        def send_second() -> None:
            with smtp_service.client() as second:
                second.sendmail("carol@remote.test", ["alice@example.com"], message())

        sender = threading.Thread(target=send_second)
        sender.start()
        assert entered.wait(10)
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", smtp_service.ports["smtp"]), timeout=10) as other:
            greeting = other.makefile("rb").readline()
        waited = time.monotonic() - started
        sender.join(10)
    finally:
        store.deliver_many = real
    assert greeting.startswith(b"220") and waited < 0.5, waited
    assert len(smtp_service.messages("alice@example.com")) == 2


def test_huge_lines_are_refused_and_the_session_goes_on(smtp_service: SmtpHarness) -> None:
    """A 200 KB command line (past the reader's 64 KB buffer) and a 2,000-octet message line."""
    replies = raw_session(smtp_service.ports["smtp"], [
        b"EHLO x.test\r\n", b"NOOP " + b"x" * 200_000 + b"\r\n", b"MAIL FROM:<a@b.test>\r\n",
        b"RCPT TO:<alice@example.com>\r\n", b"DATA\r\n", b"Subject: x\r\n\r\n" + b"y" * 2000 + b"\r\n.\r\n",
        b"NOOP\r\n"])
    assert replies[2].startswith("500") and replies[3].startswith("250") and replies[5].startswith("354")
    assert replies[6].startswith("500 Line too long") and replies[7].startswith("250")
    assert smtp_service.messages("alice@example.com") == []


def test_pipelining_replies_in_order(smtp_service: SmtpHarness) -> None:
    """RFC 2920: MAIL, RCPTs and DATA in one write; then the message, QUIT in the same write."""
    with socket.create_connection(("127.0.0.1", smtp_service.ports["smtp"]), timeout=10) as sock:
        reader = sock.makefile("rb")

        def replies(count: int) -> list[bytes]:
            out = []
            while len(out) < count:
                line = reader.readline()
                assert line, out
                if line[3:4] != b"-":
                    out.append(line[:3])
            return out

        replies(1)
        sock.sendall(b"EHLO x.test\r\n")
        assert replies(1) == [b"250"]
        sock.sendall(b"MAIL FROM:<carol@remote.test>\r\nRCPT TO:<alice@example.com>\r\n"
                     b"RCPT TO:<nobody@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
        assert replies(5) == [b"250", b"250", b"550", b"250", b"354"]
        sock.sendall(message() + b".\r\nNOOP\r\nQUIT\r\n")
        assert replies(3) == [b"250", b"250", b"221"]
    assert len(smtp_service.messages("alice@example.com")) == len(smtp_service.messages("bob@example.com")) == 1


def test_smtputf8_and_8bitmime(smtp_service: SmtpHarness) -> None:
    body = "Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode()
    with smtp_service.client() as client:
        client.ehlo("x.test")
        assert client.has_extn("smtputf8") and client.has_extn("8bitmime")
        client.sendmail("j\u00fcrgen@remote.test", ["alice@example.com"], body,
                        mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    assert "na\u00efve".encode() in smtp_service.messages("alice@example.com")[0]


def test_null_sender_accepted_for_local_recipient(smtp_service: SmtpHarness) -> None:
    with smtp_service.client() as client:
        client.sendmail("", ["alice@example.com"], message(subject="bounce"))
    assert len(smtp_service.messages("alice@example.com")) == 1


def test_paused_listener_refuses_with_421(smtp_service: SmtpHarness) -> None:
    smtp_service.listeners["smtp"].pause()
    with pytest.raises(smtplib.SMTPConnectError) as info:
        smtp_service.client()
    assert info.value.smtp_code == 421


def test_submission_port_requires_auth(smtp_service: SmtpHarness) -> None:
    with smtp_service.client("submission") as client:
        client.ehlo("x.test")
        code, text = client.mail("alice@example.com")
    assert code == 530


def test_counters_move(smtp_service: SmtpHarness) -> None:
    with smtp_service.client() as client:
        client.sendmail("carol@remote.test", ["alice@example.com"], message())
        client.mail("carol@remote.test")
        client.rcpt("nobody@example.com")
    counters = smtp_service.counters()
    assert counters["smtp_accepted"] == 1 and counters["smtp_refused"] >= 1
