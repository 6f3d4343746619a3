"""Abuse and accidents: bad-command and line-length limits, arbitrary bytes (Hypothesis), the
idle timeout, and a 50 MB message streamed with memory that does not grow with its size."""
from __future__ import annotations

import gc
import hashlib
import logging
import socket
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.pop3 import wire
from tests.service.test_pop3_support import PASSWORD, Pop3Harness, RawClient, message, pop3  # noqa: F401

ALICE = "alice@example.com"


@pytest.fixture
def alice(pop3: Pop3Harness) -> int:  # noqa: F811
    box = pop3.add_mailbox(ALICE)
    for n in range(3):
        pop3.deliver(box, message(n))
    return box


def test_bad_command_limit_ends_the_session(pop3: Pop3Harness) -> None:  # noqa: F811
    pop3.set("pop3_bad_commands", 5)
    c = RawClient(pop3.port)
    c.line()
    c.send(b"HELO\r\n\xff\xfe\r\n\x00\r\nRETR 1\r\n")
    assert c.line() == b"-ERR Unknown command HELO.\r\n"
    assert c.line() == b"-ERR Unrecognised command.\r\n"
    assert c.line() == b"-ERR Unrecognised command.\r\n"
    assert c.line() == b"-ERR RETR is not allowed in the AUTHORIZATION state.\r\n"
    assert c.cmd("GET / HTTP/1.0") == b"-ERR Too many bad commands; closing the connection.\r\n"
    assert c.closed()
    assert pop3.stats()["pop3.bad_command_hangups"] == 1


def test_line_length_limit(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    c = RawClient(pop3.port)
    c.line()
    assert c.cmd(b"USER " + b"a" * (wire.MAX_LINE + 10)) == (
        f"-ERR Line too long (the limit is {wire.MAX_LINE} octets).\r\n".encode())
    # an endless line without a line end is cut off and answered once, then the session goes on
    c.send(b"X" * (wire.MAX_LINE * 4))
    c.send(b"Y" * 100 + b"\r\n")
    assert c.line().startswith(b"-ERR Line too long")
    assert c.cmd(f"USER {ALICE}").startswith(b"+OK")
    assert c.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    # Random USER/PASS pairs are failed logons: the allow-list keeps the fuzzer from banning itself.
    harness = Pop3Harness(tmp_path_factory.mktemp("fuzz") / "data",
                          settings={"pop3_bad_commands": 1000, "throttle_allow": "127.0.0.0/8"})
    box = harness.add_mailbox(ALICE)
    for n in range(3):
        harness.deliver(box, message(n))
    yield harness
    harness.close()


COMMANDS = st.sampled_from([b"USER", b"PASS", b"APOP", b"AUTH", b"CAPA", b"STAT", b"LIST", b"RETR", b"DELE",
                            b"NOOP", b"RSET", b"TOP", b"UIDL", b"STLS", b"QUIT", b"LAST", b"XTND"])
LINES = st.one_of(
    st.binary(max_size=200),
    st.tuples(COMMANDS, st.binary(max_size=40)).map(lambda t: t[0] + b" " + t[1]),
    st.tuples(COMMANDS, st.integers(-5, 2**40)).map(lambda t: t[0] + b" %d" % t[1]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(LINES, max_size=12), st.booleans(), st.sampled_from([b"\r\n", b"\n", b"\r"]))
def test_arbitrary_bytes_never_crash_the_session(fuzz_target: Pop3Harness, lines: list[bytes],  # noqa: F811
                                                 logged_on: bool, end: bytes) -> None:
    c = RawClient(fuzz_target.port, timeout=10)
    try:
        assert c.line().startswith(b"+OK")
        if logged_on:
            c.cmd(f"USER {ALICE}")
            if not c.cmd(f"PASS {PASSWORD}").startswith(b"+OK"):
                logged_on = False       # an earlier example still holds the mailbox: fuzz AUTHORIZATION
        # no QUIT from the fuzzer: keep the mailbox's messages for the next example
        payload = b"".join(line.replace(b"QUIT", b"NOOP") + end for line in lines)
        # "*" ends any SASL exchange the fuzz started; then a marker every state answers.
        c.send(payload + b"\r\n*\r\nXENDMARKER\r\n")
        c.sock.settimeout(10)
        seen = b""
        while b"Unknown command XENDMARKER." not in seen and b"+OK Begin TLS negotiation now" not in seen:
            chunk = c.sock.recv(65536)
            if not chunk:
                break               # the server may hang up (STLS handshake garbage, limits)
            seen += chunk
        for line in seen.split(b"\r\n"):
            assert b"Internal server error" not in line
    finally:
        c.close()
    # the server still serves
    probe = RawClient(fuzz_target.port)
    assert probe.line().startswith(b"+OK")
    assert probe.cmd("CAPA").startswith(b"+OK")
    probe.close()


def test_fuzzing_left_no_errors(fuzz_target: Pop3Harness, caplog) -> None:  # noqa: F811
    with caplog.at_level(logging.ERROR):
        c = RawClient(fuzz_target.port)
        c.line()
        c.send(bytes(range(256)) * 4 + b"\r\n")
        assert c.line().startswith(b"-ERR")
        c.close()
    assert not [r for r in caplog.records if r.name.startswith("service.pop3") and r.levelno >= logging.ERROR]


def test_idle_timeout_closes_without_update(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    pop3.set("idle_timeout", 0.3)       # the stored setting is ≥ 600 s; the test shortens it directly
    c = RawClient(pop3.port)
    c.line()
    c.cmd(f"USER {ALICE}")
    c.cmd(f"PASS {PASSWORD}")
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.closed(timeout=10)
    pop3.set("idle_timeout", 600)
    assert pop3.count(alice)[0] == 3        # RFC 1939 §3: no UPDATE after a timeout
    again = RawClient(pop3.port)            # and the lock was given back
    again.line()
    again.cmd(f"USER {ALICE}")
    assert again.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    again.cmd("QUIT")


def big_message(size: int) -> bytes:
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\n"
    dotted = b".starts with a dot\n"
    block = line * 40 + dotted
    body = block * (size // len(block) + 1)
    return b"From: big@example.org\nSubject: big\n\n" + body[:size].rpartition(b"\n")[0] + b"\n"


def test_fifty_megabyte_message_streams_in_bounded_memory(pop3: Pop3Harness) -> None:  # noqa: F811
    box = pop3.add_mailbox("big@example.com")
    data = big_message(50 * 1000 * 1000)
    wire_form = data.replace(b"\n", b"\r\n")
    expected_size = len(wire_form)
    expected = hashlib.sha256(wire_form.replace(b"\r\n.", b"\r\n..") + b".\r\n").hexdigest()
    pop3.deliver(box, data)
    del data, wire_form
    gc.collect()
    c = RawClient(pop3.port, timeout=30)
    c.line()
    c.cmd("USER big@example.com")
    assert c.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    tracemalloc.start()          # traces every thread: the server's loop runs in this process
    try:
        assert c.cmd("RETR 1") == f"+OK {expected_size} octets\r\n".encode()
        digest = hashlib.sha256()
        received = 0
        tail = b""
        while not tail.endswith(b"\r\n.\r\n"):
            chunk = c.file.read1(1 << 20)
            assert chunk, "the server closed the connection in the middle of the message"
            digest.update(chunk)
            received += len(chunk)
            tail = (tail + chunk)[-5:]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == expected
    assert peak < 10 * 1000 * 1000, f"peak traced memory {peak / 1e6:.1f} MB for a 50 MB message"
    assert c.cmd("QUIT").startswith(b"+OK")
    assert pop3.stats()["pop3.bytes_retrieved"] == expected_size


def test_client_that_pipelines_but_never_reads_does_not_grow_server_buffers(pop3: Pop3Harness, alice: int) -> None:  # noqa: F811
    big = pop3.add_mailbox("reader@example.com")
    pop3.deliver(big, b"Subject: x\n\n" + b"y" * 200_000 + b"\n")
    c = RawClient(pop3.port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.line()
    c.cmd("USER reader@example.com")
    assert c.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    c.sock.sendall(b"RETR 1\r\n" * 500)   # 100 MB of replies if nobody pushed back
    session = next(iter(pop3.server.sessions))

    def progress() -> tuple[int, int]:
        return len(session._lines), session.transport.get_write_buffer_size() + session._out_size
    # Poll until the server stops making progress (bounded), then look at what it holds.
    import time
    last, still = None, 0
    deadline = time.monotonic() + 20
    while still < 10 and time.monotonic() < deadline:
        now = pop3.in_loop(progress)
        still = still + 1 if now == last else 0
        last = now
        if now[0] == 0:
            break
        time.sleep(0.02)
    queued, buffered = last
    assert queued > 0, "the server answered everything into its buffers"
    assert buffered < 4 * 1024 * 1024
    c.close()
