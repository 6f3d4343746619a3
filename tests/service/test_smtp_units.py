"""Pure parts of the SMTP service: addresses, routes, rates, reports, trace headers."""
from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from core.errors import Invalid
from core.parsing import parse_rate, parse_routes
from service.smtp.delivery import Hop, MxResolver, Outcome
from service.smtp.dsn import RecipientStatus, build_report
from service.smtp.message import has_bare_line_end, received_header
from service.smtp.policy import parse_address, same_address
from service.smtp.queue import backoff


@pytest.mark.parametrize("text, local, domain", [
    ("alice@Example.COM", "alice", "example.com"),
    ("victim%elsewhere.org@example.com", "victim%elsewhere.org", "example.com"),
    ('"a@b"@example.com', '"a@b"', "example.com"),
    ("x@[192.0.2.1]", "x", "[192.0.2.1]"),
    ("x@b\u00fccher.example", "x", "xn--bcher-kva.example"),
], ids=["case", "percent", "quoted", "literal", "idna"])
def test_parse_address(text: str, local: str, domain: str) -> None:
    parsed = parse_address(text)
    assert (parsed.local, parsed.domain) == (local, domain)


@pytest.mark.parametrize("text", ["victim", "x@", "@example.com", "x@[not-an-ip]", "x@exa mple.com"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(Invalid):
        parse_address(text)


def test_same_address_ignores_case_only() -> None:
    assert same_address("Alice@EXAMPLE.com", "alice@example.com")
    assert not same_address("alice@example.com", "alice@example.org")
    assert not same_address("", "alice@example.com")


@pytest.mark.parametrize("data, bare", [
    (b"a\r\nb\r\n", False), (b"a\nb\r\n", True), (b"a\r.\r\n", True), (b"\n.\r\n", True), (b"", False),
])
def test_bare_line_ends(data: bytes, bare: bool) -> None:
    assert has_bare_line_end(data) is bare


def test_received_header_names_one_recipient_only() -> None:
    one = received_header(helo="client(x)", ip="192.0.2.7", hostname="mx.test", protocol="ESMTPSA",
                          queue_id="Q1", recipients=["a@b.test"])
    assert one.startswith(b"Received: from clientx ([192.0.2.7])\r\n\tby mx.test (POP3 Service) with ESMTPSA id Q1")
    assert b"for <a@b.test>" in one and one.endswith(b"\r\n")
    many = received_header(helo="c", ip="192.0.2.7", hostname="mx.test", protocol="ESMTP", queue_id="Q2",
                           recipients=["a@b.test", "c@d.test"])
    assert b"for <" not in many


@pytest.mark.parametrize("text, expected", [
    ("200/hour", (200, 3600)), ("30/min", (30, 60)), ("5/10m", (5, 600)), ("0", (0, 0)), ("1000/day", (1000, 86400)),
])
def test_parse_rate(text: str, expected: tuple[int, int]) -> None:
    assert parse_rate(text) == expected


def test_parse_rate_refuses_nonsense() -> None:
    with pytest.raises(Invalid):
        parse_rate("lots")


def test_routes_and_resolver_order() -> None:
    routes = parse_routes("Elsewhere.org=127.0.0.1:2525 [::1]:25, *=relay.test")
    assert routes == {"elsewhere.org": [("127.0.0.1", 2525), ("::1", 25)], "*": [("relay.test", 25)]}
    resolver = MxResolver(routes="elsewhere.org=127.0.0.1:2525", smarthost="hub.test:587",
                          smarthost_auth=("u", "p"), environ={"POP3SVC_TEST_MX": "test.org=127.0.0.1:9"})
    assert resolver.route("elsewhere.org").hops == [Hop("127.0.0.1", 2525)]
    assert resolver.route("test.org").hops == [Hop("127.0.0.1", 9)]
    assert resolver.route("[192.0.2.1]").hops == [Hop("192.0.2.1", 25)]
    assert resolver.route("other.net").hops == [Hop("hub.test", 587, ("u", "p"))]


def test_outcome_status() -> None:
    assert Outcome(550, "550 5.1.1 <x>: no such user").status == "5.1.1"
    assert Outcome(554, "554 go away").status == "5.0.0"
    assert Outcome(0, "cannot connect").status == "4.4.1"
    assert Outcome(451, "451 4.3.0 later").status == "4.3.0"


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [backoff(n, 300) for n in (1, 2, 3, 4, 5, 6)] == [300, 600, 1200, 2400, 3600, 3600]


def test_report_is_rfc3464() -> None:
    original = b"From: <a@b.test>\r\nSubject: the original\r\n\r\nsecret body\r\n"
    data = build_report(reporting_mta="mx.test", sender="a@b.test", original=original,
                        recipients=[RecipientStatus("x@y.test", "5.1.1", "550 5.1.1 no\r\nsuch user", "mx.y.test")],
                        arrival=datetime(2026, 1, 2, tzinfo=UTC))
    assert b"\n" not in data.replace(b"\r\n", b"")
    report = email.message_from_bytes(data, policy=email.policy.default)
    assert "a@b.test" in report["To"] and report["Auto-Submitted"] == "auto-replied"
    text, status, headers = report.iter_parts()
    fields = [dict(block.items()) for block in status.get_payload()]
    assert fields[0]["Reporting-MTA"] == "dns; mx.test"
    assert fields[1]["Final-Recipient"] == "rfc822; x@y.test" and fields[1]["Action"] == "failed"
    assert fields[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"   # no header injection
    assert "the original" in headers.get_content() and "secret body" not in headers.get_content()


def test_delay_report() -> None:
    data = build_report(reporting_mta="mx.test", sender="a@b.test", original=b"Subject: s\r\n\r\nb\r\n",
                        recipients=[RecipientStatus("x@y.test", "4.4.1", "cannot connect")], delayed=True,
                        arrival=datetime(2026, 1, 2, tzinfo=UTC),
                        retry_until=datetime(2026, 1, 7, tzinfo=UTC))
    assert b"Action: delayed" in data and b"Will-Retry-Until: " in data and b"Delayed Mail" in data


# -- the protocol's fast path for plain MAIL/RCPT paths answers exactly as aiosmtpd's parser ------
_PATHS = ["<a@b.c>", " <a@b.c> SIZE=10", "<a.b@c-d.e>  BODY=8BITMIME", "<>", "a@b.c", '<"q x"@b.c>',
          "<@r.s:a@b.c>", "<a..b@c.d>", "<.a@b.c>", "<a@[1.2.3.4]>", "<a@b.c>x", "<a@b.c> ", "<ä@b.c>",
          "<a@b..c>", "<a@-b.c>", "<a@b.c.>", "<a%b@c.d>", "<a!b@c.d>", "<a@b.c>>", "<a@b.c> (comment) X=1",
          "\t<a@b.c>\tSIZE=1", "<", "a@[", "<" + "l" * 65 + "@b.c>", "<" + "l" * 64 + "@b.c>", "<a@b", "<a b@c.d>"]


def _protocols():
    from aiosmtpd.smtp import SMTP

    from service.smtp.aiosmtpd_hooks import SmtpProtocol
    return SmtpProtocol(object()), SMTP(object())


@pytest.mark.parametrize("arg", _PATHS)
def test_fast_address_path_matches_aiosmtpd(arg: str) -> None:
    fast, reference = _protocols()
    assert fast._getaddr(arg) == _reference(reference, arg)


def _reference(protocol, arg: str):
    try:
        return protocol._getaddr(arg)
    except Exception:   # aiosmtpd's parser crashes on "<" or "a@["; ours calls those malformed
        return None, None


def test_fast_address_path_matches_aiosmtpd_on_generated_paths() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    fast, reference = _protocols()
    pieces = st.sampled_from(["a", "Z", "0", ".", "@", "<", ">", " ", "\t", "-", "+", '"', "(", ")", "[", "]",
                              ":", ",", "=", "%", "!", "é", "\\", "SIZE=1"])

    @settings(max_examples=2000, deadline=None)
    @given(st.lists(pieces, max_size=14).map("".join))
    def check(arg: str) -> None:
        assert fast._getaddr(arg) == _reference(reference, arg)

    check()


def test_directory_cache_survives_counter_events() -> None:
    """While mail arrives the service publishes new counters four times a second; that must not
    throw away the recipient cache, but a quota change must drop the mailbox's entry."""
    from service.smtp.policy import Directory, LocalMailbox

    directory = Directory(None, None, None)  # type: ignore[arg-type] - only the cache is used
    directory._domains = frozenset({"example.com"})
    alice, bob = LocalMailbox(1, "alice@example.com", None), LocalMailbox(2, "bob@example.com", 100)
    directory._boxes = {("example.com", "alice"): (1e12, alice), ("example.com", "bob"): (1e12, bob)}
    directory.on_event("domain.changed", {"name": "example.com", "message_count": 9})
    directory.on_event("mailbox.changed", {"address": "Bob@example.com", "quota_bytes": 200})
    assert directory._domains == {"example.com"}
    assert set(directory._boxes) == {("example.com", "alice")}
    directory.on_event("mailbox.deleted", {"address": "alice@example.com"})
    assert directory._boxes == {} and directory._domains is None
