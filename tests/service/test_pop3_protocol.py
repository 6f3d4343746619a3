"""RFC 1939 behaviour against the POP3 server on 127.0.0.1: the states, every command, the
example conversations of the RFC, CAPA per state, STLS and port 995, pipelining, UPDATE."""
from __future__ import annotations

import poplib
import re

import pytest

from tests.service.test_pop3_support import PASSWORD, Pop3Harness, RawClient, message, pop3  # noqa: F401

ALICE = "alice@example.com"


@pytest.fixture
def alice(pop3: Pop3Harness) -> int:  # noqa: F811
    box = pop3.add_mailbox(ALICE)
    for n in (1, 2):
        pop3.deliver(box, message(n))
    return box


def logon(pop3: Pop3Harness, **kwargs) -> RawClient:  # noqa: F811
    client = RawClient(pop3.port, **kwargs)
    assert client.line().startswith(b"+OK ")
    assert client.cmd(f"USER {ALICE}").startswith(b"+OK")
    assert client.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    return client


def test_rfc1939_example_session(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    """RFC 1939 §10: the example POP3 session (with USER/PASS for APOP, see test_pop3_auth)."""
    sizes = [len(message(n).replace(b"\n", b"\r\n")) for n in (1, 2)]
    c = RawClient(pop3.port)
    greeting = c.line()
    assert re.match(rb"^\+OK .*<\d+\.[0-9a-f]+\.\d+@pop\.test>\r\n$", greeting)
    assert c.cmd(f"USER {ALICE}").startswith(b"+OK")
    assert c.cmd(f"PASS {PASSWORD}") == f"+OK {ALICE} has 2 messages ({sum(sizes)} octets)\r\n".encode()
    assert c.cmd("STAT") == f"+OK 2 {sum(sizes)}\r\n".encode()
    assert c.cmd("LIST") == f"+OK 2 messages ({sum(sizes)} octets)\r\n".encode()
    assert c.multi() == [f"1 {sizes[0]}\r\n".encode(), f"2 {sizes[1]}\r\n".encode()]
    assert c.cmd("RETR 1") == f"+OK {sizes[0]} octets\r\n".encode()
    assert b"".join(c.multi()) == message(1).replace(b"\n", b"\r\n")
    assert c.cmd("DELE 1") == b"+OK message 1 deleted\r\n"
    assert c.cmd("RETR 2").startswith(b"+OK")
    c.multi()
    assert c.cmd("DELE 2") == b"+OK message 2 deleted\r\n"
    assert c.cmd("QUIT") == f"+OK {ALICE} signing off (2 messages deleted, 0 left)\r\n".encode()
    assert c.closed()
    assert pop3.count(alice) == (0, 0)


def test_rfc1939_command_examples(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    """The examples under each command of RFC 1939 §5-§7."""
    size1 = len(message(1).replace(b"\n", b"\r\n"))
    c = logon(pop3)
    assert c.cmd("LIST 2").startswith(b"+OK 2 ")
    assert c.cmd("LIST 3") == b"-ERR No such message.\r\n"
    assert c.cmd("DELE 1") == b"+OK message 1 deleted\r\n"
    assert c.cmd("DELE 1") == b"-ERR No such message.\r\n"          # "message 1 already deleted"
    assert c.cmd("RETR 1") == b"-ERR No such message.\r\n"
    assert c.cmd("LIST 1") == b"-ERR No such message.\r\n"
    assert c.cmd("LIST").startswith(b"+OK 1 messages")
    assert [line.split()[0] for line in c.multi()] == [b"2"]
    assert c.cmd("NOOP") == b"+OK\r\n"
    assert c.cmd("RSET") == f"+OK maildrop has 2 messages ({size1 * 2} octets)\r\n".encode()
    assert c.cmd("TOP 1 1") == b"+OK top of message follows\r\n"
    assert c.multi() == [b"From: sender1@example.org\r\n", b"To: alice@example.com\r\n",
                         b"Subject: message 1\r\n", b"\r\n", b"line 0 of message 1\r\n"]
    assert c.cmd("TOP 1 x") == b"-ERR Syntax: TOP message-number lines.\r\n"
    assert c.cmd("UIDL") == b"+OK unique-id listing follows\r\n"
    uidls = c.multi()
    assert len(uidls) == 2 and uidls[0].startswith(b"1 ") and uidls[0] != uidls[1]
    assert c.cmd("UIDL 2") == b"+OK " + uidls[1]
    assert c.cmd("UIDL 9") == b"-ERR No such message.\r\n"
    assert c.cmd("QUIT").startswith(b"+OK")
    assert pop3.count(alice)[0] == 2                                  # RSET undid the DELE


def test_commands_belong_to_their_state(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    c = RawClient(pop3.port)
    c.line()
    assert c.cmd("STAT") == b"-ERR STAT is not allowed in the AUTHORIZATION state.\r\n"
    assert c.cmd("PASS x") == b"-ERR Give USER first.\r\n"
    assert c.cmd("BOGUS") == b"-ERR Unknown command BOGUS.\r\n"
    assert c.cmd(f"user {ALICE}").startswith(b"+OK")                   # keywords are case-insensitive
    assert c.cmd(f"pass {PASSWORD}").startswith(b"+OK")
    assert c.cmd("USER bob") == b"-ERR USER is not allowed in the TRANSACTION state.\r\n"
    assert c.cmd("STLS") == b"-ERR STLS is not allowed in the TRANSACTION state.\r\n"
    assert c.cmd("RETR") == b"-ERR A message number is required.\r\n"
    assert c.cmd("QUIT").startswith(b"+OK")


def test_quit_in_authorization_state(pop3: Pop3Harness) -> None:  # noqa: F811
    c = RawClient(pop3.port)
    c.line()
    assert c.cmd("QUIT") == b"+OK pop.test POP3 Service signing off\r\n"
    assert c.closed()


def capabilities(client: RawClient) -> list[str]:
    assert client.cmd("CAPA").startswith(b"+OK")
    return [line.decode().strip() for line in client.multi()]


def test_capa_follows_state_tls_and_spa(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("sparequired", True)
    c = RawClient(pop3.port)
    c.line()
    plain = capabilities(c)
    assert plain == ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER",
                     "SASL SCRAM-SHA-256 CRAM-MD5 NTLM", "STLS", "IMPLEMENTATION POP3-Service"]
    assert c.cmd("STLS") == b"+OK Begin TLS negotiation now\r\n"
    c.upgrade(pop3.client_tls())
    secured = capabilities(c)
    assert "USER" in secured and "STLS" not in secured
    assert "SASL SCRAM-SHA-256 CRAM-MD5 NTLM PLAIN LOGIN" in secured
    assert c.cmd(f"USER {ALICE}").startswith(b"+OK")
    assert c.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    assert capabilities(c) == ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER",
                               "IMPLEMENTATION POP3-Service"]
    c.cmd("QUIT")


def test_implicit_tls_port(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("sparequired", True)
    client = poplib.POP3_SSL("127.0.0.1", pop3.tls_port, context=pop3.client_tls(), timeout=10)
    assert "STLS" not in client.capa() and "USER" in client.capa()
    client.user(ALICE)
    client.pass_(PASSWORD)
    assert client.stat()[0] == 2
    assert b"".join(line + b"\n" for line in client.retr(2)[1]) == message(2)
    client.quit()


def test_stls_with_poplib_and_injection_is_dropped(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    client = poplib.POP3("127.0.0.1", pop3.port, timeout=10)
    client.stls(pop3.client_tls())
    client.user(ALICE)
    client.pass_(PASSWORD)
    assert client.list(1) == b"+OK 1 " + str(len(message(1).replace(b"\n", b"\r\n"))).encode()
    client.quit()
    # Commands sent in the same packet as STLS must not run inside TLS (RFC 2595 §4 rationale).
    c = RawClient(pop3.port)
    c.line()
    c.send(b"STLS\r\nUSER injected@example.com\r\n")
    assert c.line() == b"+OK Begin TLS negotiation now\r\n"
    c.upgrade(pop3.client_tls())
    assert c.cmd("PASS x") == b"-ERR Give USER first.\r\n"
    assert c.cmd("STLS") == b"-ERR This connection already uses TLS.\r\n"
    c.close()


def test_pipelined_commands_are_answered_in_order(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    c = RawClient(pop3.port)
    c.line()
    c.send(f"USER {ALICE}\r\nPASS {PASSWORD}\r\nSTAT\r\nRETR 1\r\nLIST 2\r\nRETR 2\r\nDELE 1\r\nSTAT\r\nQUIT\r\n"
           .encode())
    assert c.line().startswith(b"+OK")
    assert c.line().startswith(b"+OK alice@example.com has 2")
    assert c.line().startswith(b"+OK 2 ")
    assert c.line().startswith(b"+OK") and b"".join(c.multi()) == message(1).replace(b"\n", b"\r\n")
    assert c.line().startswith(b"+OK 2 ")
    assert c.line().startswith(b"+OK") and b"".join(c.multi()) == message(2).replace(b"\n", b"\r\n")
    assert c.line() == b"+OK message 1 deleted\r\n"
    assert c.line().startswith(b"+OK 1 ")
    assert c.line().startswith(b"+OK alice@example.com signing off (1 messages deleted")
    assert c.closed()


def test_quit_sent_before_hanging_up_still_commits(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    c = logon(pop3)
    c.send(b"DELE 1\r\nQUIT\r\n")
    c.sock.shutdown(1)   # half-close right after QUIT, as some clients do
    assert c.line() == b"+OK message 1 deleted\r\n"
    assert c.line().startswith(b"+OK")
    c.close()
    assert pop3.count(alice)[0] == 1


def test_dropped_connection_deletes_nothing(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    c = logon(pop3)
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.cmd("DELE 2").startswith(b"+OK")
    c.close()
    again = poll_logon(pop3)
    assert again.stat()[0] == 2
    again.quit()
    assert pop3.count(alice)[0] == 2


def poll_logon(pop3: Pop3Harness, login: str = ALICE, tries: int = 100) -> poplib.POP3:  # noqa: F811
    """Log on, retrying while the previous session's lock is still being released ([IN-USE])."""
    for _ in range(tries):
        client = poplib.POP3("127.0.0.1", pop3.port, timeout=10)
        client.user(login)
        try:
            client.pass_(PASSWORD)
            return client
        except poplib.error_proto as exc:
            client.close()
            if b"[IN-USE]" not in exc.args[0]:
                raise
            import time
            time.sleep(0.02)
    raise AssertionError("the mailbox stayed locked")


def test_messages_arriving_during_a_session_wait_for_the_next(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    client = poll_logon(pop3)
    pop3.deliver(alice, message(3))
    assert client.stat()[0] == 2
    assert len(client.list()[1]) == 2
    assert client.dele(2)
    client.quit()
    client = poll_logon(pop3)
    assert client.stat()[0] == 2
    assert [line.split()[0] for line in client.uidl()[1]] == [b"1", b"2"]
    assert b"Subject: message 3" in b"\n".join(client.retr(2)[1])
    client.quit()


def test_quit_updates_counters_and_stats(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    before = pop3.count(alice)
    client = poll_logon(pop3)
    client.retr(1)
    client.dele(1)
    client.quit()
    count, size = pop3.count(alice)
    assert count == before[0] - 1 and size == before[1] - len(message(1).replace(b"\n", b"\r\n"))
    stats = pop3.stats()
    assert stats["pop3.logons"] == 1 and stats["pop3.messages_deleted"] == 1
    assert stats["pop3.messages_retrieved"] == 1
    assert stats["pop3.bytes_retrieved"] == len(message(1).replace(b"\n", b"\r\n"))
    assert stats["pop3.sessions_total"] >= 1


def test_message_file_missing_is_sys_perm_and_dropped(pop3: Pop3Harness, alice: int, caplog) -> None:  # noqa: F811
    """A file deleted behind the service's back: [SYS/PERM], and the index forgets it (issue 14;
    tests/service/test_missing_file.py has the rest)."""
    import os
    path = pop3.store.list_messages(alice)[0].path
    c = logon(pop3)
    os.unlink(path)
    with caplog.at_level("WARNING", logger="core.store"):
        assert c.cmd("RETR 1").startswith(b"-ERR [SYS/PERM] Message 1 is no longer in the mail store")
        assert c.cmd("TOP 1 0").startswith(b"-ERR [SYS/PERM]")
    assert any("is gone" in r.getMessage() for r in caplog.records)
    assert c.cmd("RETR 2").startswith(b"+OK")
    c.multi()
    assert c.cmd("QUIT").startswith(b"+OK")


def test_refusal_texts(pop3: Pop3Harness) -> None:  # noqa: F811
    from service.listeners import Refusal
    for reason in Refusal:
        text = pop3.server.refusal(reason)
        assert text.startswith(b"-ERR [") and text.endswith(b"\r\n")
    pop3.in_loop(pop3.pop3.pause)
    c = RawClient(pop3.port)
    assert c.line() == b"-ERR [SYS/TEMP] The POP3 service is paused; try again later.\r\n"
    pop3.in_loop(pop3.pop3.resume)


def test_connection_limit_per_address(tmp_path) -> None:
    from service.listeners import Limits
    harness = Pop3Harness(tmp_path / "d", limits=Limits(10, 2))
    try:
        held = [RawClient(harness.port) for _ in range(2)]
        for c in held:
            assert c.line().startswith(b"+OK")
        extra = RawClient(harness.port)
        assert extra.line() == (b"-ERR [SYS/TEMP] Too many connections from your address; "
                                b"close some and try again.\r\n")
        for c in held:
            c.close()
    finally:
        harness.close()
