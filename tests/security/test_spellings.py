"""One spelling per mailbox: case, a trailing dot, full-width or mathematical letters in the
domain all reach the same mailbox (logon, RCPT, admin) and count against one failure budget; a
guesser from one address cannot lock the real user out, and loopback is never banned by default."""
from __future__ import annotations

import base64
import hashlib
import hmac
import poplib
import smtplib

import pytest

from tests.service.test_pop3_support import PASSWORD, Pop3Harness, pop3  # noqa: F401
from tests.support import ServiceProcess, unverified_tls, wait_for

ALICE = "alice@example.com"
SPELLINGS = ["ALICE@Example.COM", "alice@example.com.", "alice@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
             "alice@\U0001d41e\U0001d431\U0001d41a\U0001d426\U0001d429\U0001d425\U0001d41e.com",
             "Alice@EXAMPLE\u3002com"]
IDS = ["case", "trailing-dot", "full-width", "mathematical-bold", "ideographic-dot"]


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    service = ServiceProcess(tmp_path_factory.mktemp("spellings") / "data").start()
    service.add_mailbox(ALICE, PASSWORD)
    for name, value in (("throttle_delay_ms", 0), ("sparequired", False)):
        service.call("settings.set", name=name, value=value)
    yield service
    service.stop()


@pytest.mark.parametrize("login", SPELLINGS, ids=IDS)
def test_every_spelling_logs_on_to_the_one_mailbox(svc: ServiceProcess, login: str) -> None:
    client = poplib.POP3("127.0.0.1", svc.ports["pop3"], timeout=10)
    client.user(login)
    assert client.pass_(PASSWORD).startswith(b"+OK alice@example.com ")
    client.quit()
    # AUTH CRAM-MD5 (the challenge-response path looks the name up the same way)
    client = poplib.POP3("127.0.0.1", svc.ports["pop3"], timeout=10)
    client._putcmd("AUTH CRAM-MD5")
    challenge = base64.b64decode(client._getline()[0][2:])
    digest = hmac.new(PASSWORD.encode(), challenge, hashlib.md5).hexdigest()
    client._putcmd(base64.b64encode(f"{login} {digest}".encode()).decode())
    assert client._getline()[0].startswith(b"+OK alice@example.com ")
    client.quit()
    with smtplib.SMTP_SSL("127.0.0.1", svc.ports["smtps"], timeout=10, context=unverified_tls()) as smtp:
        smtp.ehlo("laptop")
        code, _ = smtp.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{login}\0{PASSWORD}".encode()).decode())
        assert code == 235


def test_rcpt_and_admin_names_use_the_same_spelling(svc: ServiceProcess) -> None:
    with smtplib.SMTP("127.0.0.1", svc.ports["smtp"], timeout=10) as smtp:
        smtp.ehlo("mx.example.org")
        smtp.command_encoding = "utf-8"   # RFC 6531: the full-width domain needs SMTPUTF8
        assert smtp.mail("sender@example.org", options=["SMTPUTF8"])[0] == 250
        assert smtp.rcpt("ALICE@EXAMPLE.COM")[0] == 250
        # RFC 5321 §4.1.2 has no trailing dot in a Domain: a syntax error there, not another mailbox
        assert smtp.rcpt("alice@example.com.")[0] == 553
        assert smtp.rcpt("alice@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com")[0] == 250
        assert smtp.data(b"Subject: one spelling\r\n\r\nhello\r\n")[0] == 250
    wait_for(lambda: svc.call("mailbox.get", address=SPELLINGS[2])["message_count"] == 1, 10,
             what="the message in alice's mailbox")
    for spelling in SPELLINGS:
        assert svc.call("mailbox.get", address=spelling)["address"] == ALICE
    for domain in ("EXAMPLE.com.", "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"):
        with pytest.raises(Exception, match="already exists"):
            svc.call("domain.add", name=domain)
    with pytest.raises(Exception, match="look like Latin"):
        svc.call("domain.add", name="\u0430\u0440\u0440\u04cf\u0435.com")      # Cyrillic "аррӏе"
    with pytest.raises(Exception, match="already exists"):
        svc.call("mailbox.add", address="ALICE@example.com.", password="another one")
    with pytest.raises(Exception, match="RFC 5321"):
        svc.call("mailbox.add", address="alice.@example.com", password="another one")


# -- the throttle (in-process: the failures are fed from several addresses) -------------------
@pytest.fixture
def alice(pop3: Pop3Harness) -> int:  # noqa: F811
    return pop3.add_mailbox(ALICE)


def logon(pop3: Pop3Harness, login: str = ALICE, password: str = PASSWORD) -> bytes:  # noqa: F811
    client = poplib.POP3("127.0.0.1", pop3.port, timeout=10)
    client.user(login)
    try:
        reply = client.pass_(password)
        client.quit()
    except poplib.error_proto as exc:
        reply = exc.args[0]
        client.close()
    return reply


def test_all_spellings_share_one_failure_budget(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("throttle_failures", len(SPELLINGS))
    throttle = pop3.throttle
    for i, spelling in enumerate(SPELLINGS):    # one failure per spelling, each from its own address
        assert not pop3.in_loop(lambda: throttle.is_login_banned(ALICE, "203.0.113.200"))
        pop3.call(throttle.failure(f"192.0.2.{i + 1}", spelling))
    for spelling in SPELLINGS:
        assert pop3.in_loop(lambda spelling=spelling: throttle.is_login_banned(spelling, "203.0.113.200"))
    assert [(b["kind"], b["value"]) for b in pop3.in_loop(throttle.list_bans)] == [("login", ALICE)]


def test_a_guesser_from_one_address_never_locks_the_user_out(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("throttle_allow", "")              # count loopback, to play both parts from here
    pop3.set("throttle_failures", 3)
    throttle = pop3.throttle
    for spelling in SPELLINGS[:3]:
        pop3.call(throttle.failure("198.51.100.66", spelling))
    assert pop3.in_loop(lambda: throttle.is_banned("198.51.100.66"))      # the guesser's address
    assert not pop3.in_loop(lambda: throttle.is_login_banned(ALICE, "203.0.113.5"))
    assert logon(pop3).startswith(b"+OK")                                   # the user, elsewhere


def test_a_login_ban_spares_the_networks_the_user_logged_on_from(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("throttle_allow", "")
    pop3.set("throttle_failures", 4)
    assert logon(pop3, SPELLINGS[1]).startswith(b"+OK")    # the user, from 127.0.0.1, earlier
    throttle = pop3.throttle
    for i in range(4):                                    # a distributed guess, any spelling
        pop3.call(throttle.failure(f"2001:db8:{i}::1", SPELLINGS[i]))
    assert pop3.in_loop(lambda: throttle.is_login_banned(ALICE, "203.0.113.5"))
    assert pop3.in_loop(lambda: throttle.is_login_banned(ALICE, "2001:db8:9::1"))
    assert not pop3.in_loop(lambda: throttle.is_login_banned(ALICE, "127.0.0.1"))
    assert logon(pop3).startswith(b"+OK")                 # the real user keeps working


def test_loopback_is_never_banned_by_default(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("throttle_failures", 3)
    for _ in range(10):                                   # ten typos on the server itself
        assert b"Invalid login name or password" in logon(pop3, password="typo")
    assert pop3.in_loop(pop3.throttle.list_bans) == []
    assert logon(pop3).startswith(b"+OK")
    assert pop3.in_loop(lambda: pop3.throttle.allowed("::1"))


def test_known_networks_are_shared_with_the_other_nodes_once(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    sent: list[tuple[str, dict]] = []

    class Cluster:
        def send(self, name: str, data: dict) -> None:
            sent.append((name, data))

    throttle = pop3.throttle
    throttle.peers = Cluster()
    try:
        for spelling in SPELLINGS[:3]:
            pop3.call(throttle.success("2001:db8:1:2::7", spelling))
        pop3.call(throttle.success("2001:db8:1:2::8", ALICE))   # the same /64: nothing new
    finally:
        throttle.peers = None
    assert sent == [("node.logon_ok", {"address": "2001:db8:1:2::7", "login": ALICE})]
    pop3.in_loop(lambda: throttle.remote_success({"address": "198.51.100.4", "login": "bob@example.com"}))
    assert pop3.in_loop(lambda: throttle.known("BOB@example.com.", "198.51.100.4"))
    assert not pop3.in_loop(lambda: throttle.known("bob@example.com", "198.51.100.5"))
