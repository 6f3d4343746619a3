"""RETR/TOP of a message read in several pieces: each piece after the first is read and encoded
(LF -> CRLF, byte-stuffing) on a reader thread, and the reader threads work one at a time unless
the first is stuck (service.workers.ReaderPool)."""
from __future__ import annotations

import threading

import pytest

from service import workers as service_workers
from service.pop3 import wire
from service.pop3.session import READ_CHUNK
from service.workers import ReaderPool
from tests.service.test_loop_never_waits import logged_in
from tests.service.test_pop3_support import Pop3Harness, RawClient, pop3  # noqa: F401

ALICE = "alice@example.com"


def _thread_name() -> str:
    return threading.current_thread().name


def test_the_lane_takes_every_read_while_it_keeps_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_workers.ReaderPool, "STUCK_AFTER", 60.0)
    pool = ReaderPool(spares=2)
    release, started = threading.Event(), threading.Event()

    def stuck() -> str:
        started.set()
        assert release.wait(10)
        return _thread_name()

    try:
        assert {pool.submit(_thread_name).result(10) for _ in range(20)} == {"read_0"}
        blocked = pool.submit(stuck)
        assert started.wait(10)
        queued = pool.submit(_thread_name)   # the lane is busy, not stuck: this waits for it
        assert not queued.done()
        release.set()
        assert blocked.result(10) == "read_0" and queued.result(10) == "read_0"
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_a_stuck_lane_hands_new_reads_to_the_spares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_workers.ReaderPool, "STUCK_AFTER", 0.0)   # any wait is "stuck"
    pool = ReaderPool(spares=2)
    release, started = threading.Event(), threading.Event()

    def stuck() -> str:
        started.set()
        assert release.wait(10)
        return _thread_name()

    try:
        blocked = pool.submit(stuck)
        assert started.wait(10)
        assert pool.submit(_thread_name).result(10).startswith("read-spare")   # while the lane is stuck
        assert not blocked.done()
        release.set()
        assert blocked.result(10) == "read_0"
        assert pool.submit(_thread_name).result(10) == "read_0"   # the lane is idle again: its work
    finally:
        release.set()
        pool.shutdown(wait=True)


def _piece_edges() -> bytes:
    """A message whose piece boundaries fall on a dot line's start, inside a CRLF, and between
    bare LFs: what the encoder carries from one piece (one reader-thread hop) to the next."""
    text = b"Subject: pieces\n\n"
    text += b"a" * (READ_CHUNK - len(text) - 1) + b"\n"        # piece 1 ends with LF ...
    text += b".dot starts piece 2\n"                           # ... piece 2 starts with a dot line
    text += b"b" * (2 * READ_CHUNK - len(text) - 1) + b"\r"    # piece 2 ends inside a CRLF
    text += b"\n..two dots\r\nc\n" * 20000                     # piece 3 and on
    text += b".\nlast line without an end"
    return text


def _raw_multi(client: RawClient) -> bytes:
    out = []
    while True:
        line = client.file.readline()
        assert line, "closed inside a multi-line response"
        out.append(line)
        if line == b".\r\n":
            return b"".join(out)


def test_retr_and_top_across_pieces_match_the_encoder(pop3: Pop3Harness) -> None:  # noqa: F811
    text = _piece_edges()
    assert len(text) > 3 * READ_CHUNK
    alice = pop3.add_mailbox(ALICE)
    pop3.deliver(alice, text)
    encoder = wire.MessageEncoder()
    expected = encoder.feed(text) + encoder.finish() + wire.TERMINATOR
    client = logged_in(pop3.port, ALICE)
    for _ in range(2):   # twice: the second RETR after the first's pieces were all read
        assert client.cmd("RETR 1") == b"+OK %d octets\r\n" % encoder.octets
        assert _raw_multi(client) == expected
    top = wire.MessageEncoder(body_lines=2)
    assert client.cmd("TOP 1 2").startswith(b"+OK")
    assert _raw_multi(client) == top.feed(text) + top.finish() + wire.TERMINATOR
    assert client.cmd("NOOP").startswith(b"+OK")
    assert pop3.stats()["pop3.bytes_retrieved"] == 2 * encoder.octets
