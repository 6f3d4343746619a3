"""The protocol's own DATA reader against aiosmtpd's, byte for byte.

Both protocols serve real sockets on 127.0.0.1 with the same recording handler; the same client
bytes, cut into the same pieces, go to each, and the whole transcript of replies and the message
each handler received must be equal. Hypothesis builds the messages from the pieces that matter:
dots at line starts, bare CR and LF, CRLF "." CRLF inside the data (commands after it), lines
near the length limit, sizes around the size limit, and pipelined commands after the end.
"""
from __future__ import annotations

import asyncio

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.smtp.aiosmtpd_hooks import SmtpProtocol
from service.smtp.data_reader import DATA_LINE_LIMIT

SIZE_LIMIT = 3000
HEAD = b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@server.test>\r\nDATA\r\n"


class Recorder:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope.original_content)
        return "250 2.0.0 recorded"


async def _transcript(factory, pieces: list[bytes]) -> tuple[bytes, list[bytes]]:
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: factory(recorder, hostname="server.test", ident="test", data_size_limit=SIZE_LIMIT,
                        decode_data=False, loop=loop), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = [await reader.readline()]
        for line in HEAD.splitlines(keepends=True):   # lock step up to the 354
            writer.write(line)
            await writer.drain()
            while True:
                reply = await asyncio.wait_for(reader.readline(), 10)
                replies.append(reply)
                if reply[3:4] != b"-":
                    break
        for piece in pieces:   # then the message in the given pieces, as fast as it goes
            writer.write(piece)
            await writer.drain()
        writer.write(b"QUIT\r\n")
        rest = await asyncio.wait_for(reader.read(), 10)   # everything up to the server's close
        writer.close()
        return b"".join(replies) + rest, recorder.messages
    finally:
        server.close()
        await server.wait_closed()


class Rfc5321Smtp(SMTP):
    """aiosmtpd with RFC 5321 §4.5.3.1.6's 1000 octets (its default lets 1001 through)."""

    line_length_limit = DATA_LINE_LIMIT


def _both(pieces: list[bytes]):
    async def run():
        return await _transcript(Rfc5321Smtp, pieces), await _transcript(SmtpProtocol, pieces)
    return asyncio.run(run())


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)], strict=True) if data[a:b]]


def _same(theirs, ours) -> None:
    (their_replies, their_messages), (our_replies, our_messages) = theirs, ours
    if their_replies != our_replies:
        # A message both over the size limit and with an over-long line: aiosmtpd names the
        # condition it met first, this reader the size; both refuse and keep nothing.
        swap = their_replies.replace(b"500 Line too long (see RFC5321 4.5.3.1.6)", b"552 Error: Too much mail data")
        assert swap == our_replies
    assert their_messages == our_messages


@pytest.mark.parametrize("message", [
    b".\r\n",                                           # empty
    b"Subject: x\r\n\r\nbody\r\n.\r\n",
    b"..dot\r\n.x\r\n...\r\n.\r\n",                     # un-stuffing
    b"a\n.\nb\r.\r\n.\r\n",                             # bare LF / CR: data, not an end
    b"a\r\n.\r\nNOOP\r\n",                              # pipelined command after the end
    b"x" * (DATA_LINE_LIMIT - 2) + b"\r\n.\r\n",        # longest line allowed
    b"x" * (DATA_LINE_LIMIT - 1) + b"\r\n.\r\n",        # one octet too long
    (b"y" * 98 + b"\r\n") * 30 + b".\r\n",              # exactly the size limit
    (b"y" * 98 + b"\r\n") * 31 + b".\r\n",              # over it
    (b"z" * 998 + b"\r\n") * 200 + b".\r\n",            # far over it: read to the end, kept nowhere
])
@pytest.mark.parametrize("cuts", [[], [1], [2, 3, 4, 5, 6, 7], list(range(0, 4000, 7))])
def test_known_messages_read_exactly_as_aiosmtpd_does(message: bytes, cuts: list[int]) -> None:
    _same(*_both(_cut(message, cuts)))


_PIECES = st.sampled_from([b"a", b"word ", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b".\r\n",
                           b"\r\n.\r\n", b"x" * 500, b"x" * 998, b"y" * 3000, b"NOOP\r\n", b"RSET\r\n"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, max_size=40).map(b"".join), st.lists(st.integers(0, 10_000), max_size=8))
def test_generated_messages_read_exactly_as_aiosmtpd_does(body: bytes, cuts: list[int]) -> None:
    message = body + b"\r\n.\r\n"
    _same(*_both(_cut(message, cuts)))
