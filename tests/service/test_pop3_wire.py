"""POP3 response formatting and message encoding, as pure unit tests (no sockets)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.store.maildir import pop3_size
from service.pop3 import wire


def encode(data: bytes, chunk: int = 7, body_lines: int | None = None) -> tuple[bytes, int]:
    encoder = wire.MessageEncoder(body_lines)
    out = b"".join(encoder.feed(data[i:i + chunk]) for i in range(0, len(data), chunk)) + encoder.finish()
    return out, encoder.octets


def unstuff(wire_bytes: bytes) -> bytes:
    lines = wire_bytes.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@pytest.mark.parametrize(("stored", "sent"), [
    (b"", b""),
    (b"a\n", b"a\r\n"),
    (b"a", b"a\r\n"),
    (b"a\r\nb\n", b"a\r\nb\r\n"),
    (b".hidden\n..two\n", b"..hidden\r\n...two\r\n"),
    (b"x\n.\n", b"x\r\n..\r\n"),
    (b"bare\rcr\n", b"bare\rcr\r\n"),
    (b"ends in cr\r", b"ends in cr\r\r\n"),
], ids=["empty", "lf", "no-final-newline", "crlf-kept", "dot-stuffing", "lone-dot-line", "bare-cr", "trailing-cr"])
def test_encoder_examples(stored: bytes, sent: bytes) -> None:
    for chunk in (1, 2, 3, 100):
        out, octets = encode(stored, chunk)
        assert out == sent
        assert octets == pop3_size(stored)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300).map(lambda b: b.replace(b"x", b"\n").replace(b"y", b"\r").replace(b"z", b".")),
       st.integers(min_value=1, max_value=50))
def test_encoder_size_matches_the_index_and_lines_are_crlf(stored: bytes, chunk: int) -> None:
    out, octets = encode(stored, chunk)
    assert octets == pop3_size(stored)
    assert len(unstuff(out)) == octets
    assert b"\r\n.\r\n" not in b"\r\n" + out          # the body can never end the response early
    if out:
        assert out.endswith(b"\r\n")
    assert b"\n" not in out.replace(b"\r\n", b"")     # no bare LF goes out


MESSAGE = b"From: a\nSubject: b\n\nline 1\n.line 2\nline 3\n"


@pytest.mark.parametrize(("lines", "expected"), [
    (0, b"From: a\r\nSubject: b\r\n\r\n"),
    (1, b"From: a\r\nSubject: b\r\n\r\nline 1\r\n"),
    (2, b"From: a\r\nSubject: b\r\n\r\nline 1\r\n..line 2\r\n"),
    (10, b"From: a\r\nSubject: b\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n"),
], ids=["headers-only", "one-line", "stuffed-line", "more-than-there-are"])
def test_top_cuts_after_header_and_n_lines(lines: int, expected: bytes) -> None:
    for chunk in (1, 3, 5, 1000):
        assert encode(MESSAGE, chunk, body_lines=lines)[0] == expected


def test_top_without_a_body_or_blank_line() -> None:
    assert encode(b"Subject: only\n", 4, body_lines=3)[0] == b"Subject: only\r\n"
    assert encode(b"\nbody\nmore\n", 2, body_lines=1)[0] == b"\r\nbody\r\n"
    assert encode(b"H: 1\r\n\r\nb1\r\nb2\r\n", 3, body_lines=1)[0] == b"H: 1\r\n\r\nb1\r\n"


def test_reply_lines() -> None:
    assert wire.ok() == b"+OK\r\n"
    assert wire.ok("2 320") == b"+OK 2 320\r\n"
    assert wire.err("Mailbox busy", "IN-USE") == b"-ERR [IN-USE] Mailbox busy\r\n"
    assert wire.multiline(b"+OK\r\n", ["TOP", ".dot"]) == b"+OK\r\nTOP\r\n..dot\r\n.\r\n"


@pytest.mark.parametrize(("line", "parsed"), [
    (b"USER alice@example.com", ("USER", "alice@example.com")),
    (b"list 2", ("LIST", "2")),
    (b"PASS with spaces  inside", ("PASS", "with spaces  inside")),
    (b"STAT", ("STAT", "")),
    (b"", None),
    (b" STAT", None),
    (b"ST4T", None),
    (b"USER \x00", None),
    (b"\xff\xfe", None),
    (b"X" * 17, None),
], ids=["user", "lower-case", "pass-spaces", "bare", "empty", "leading-space", "digit", "nul", "not-utf8", "long-verb"])
def test_split_command(line: bytes, parsed: tuple[str, str] | None) -> None:
    assert wire.split_command(line) == parsed


@pytest.mark.parametrize(("arg", "number"), [("1", 1), (" 12 ", 12), ("", None), ("-1", None), ("1a", None),
                                              ("²", None), ("99999999999", None)])
def test_parse_number(arg: str, number: int | None) -> None:
    assert wire.parse_number(arg) == number
