"""The DATA reader: a message from the client's stream up to CRLF "." CRLF, un-stuffed, held once.

aiosmtpd reads a message a line at a time (60 reads, lists and joins for 4 KB) and keeps a bytes
object per line (a 25 MB message of short lines cost ~430 MB). This reads whole chunks, finds the
end with one search for CRLF "." CRLF, and checks (length, size limit), un-stuffs and appends each
chunk's complete lines at once. Bytes a client sent after the end (pipelined commands) go back to
the reader, in order. Text lines are held to RFC 5321's 1000 octets (aiosmtpd lets 1001 through).
Its answers are aiosmtpd's, byte for byte (tests/service/test_smtp_data_reader.py compares).
aiosmtpd_hooks.SmtpProtocol.smtp_DATA plugs it in.
"""
from __future__ import annotations

import asyncio

END_OF_DATA = b"\r\n.\r\n"     # RFC 5321 §4.1.1.4: only CRLF "." CRLF ends the data (no bare LF)
DATA_LINE_LIMIT = 1000         # octets of a text line with its CRLF: RFC 5321 §4.5.3.1.6
READ_ALL = 1 << 20             # more than the stream reader holds (2 x its limit, plus one 256 KB recv)
TOO_MUCH = "552 Error: Too much mail data"               # aiosmtpd's replies, word for word
LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"


def lines_fit(buf: bytearray, start: int, stop: int) -> bool:
    """True if every CRLF-ended line in ``buf[start:stop]`` (which ends with CRLF) is at most
    DATA_LINE_LIMIT octets. One C search per ~1000 octets, however short the lines: the last
    CRLF inside each window of DATA_LINE_LIMIT octets starts the next window."""
    pos = start
    while stop - pos > DATA_LINE_LIMIT:
        crlf = buf.rfind(b"\r\n", pos, pos + DATA_LINE_LIMIT)
        if crlf < 0:
            return False
        pos = crlf + 2
    return True


async def read_message(reader: asyncio.StreamReader, size_limit: int | None) -> tuple[bytearray, str | None]:
    """The message up to CRLF "." CRLF, un-stuffed, or a refusal with aiosmtpd's replies (a
    line over DATA_LINE_LIMIT octets, or more than ``size_limit`` octets; where both, aiosmtpd
    names the one it met first, this the size). An over-size or over-long message is read to its
    end but not kept. Raises CancelledError when the stream ends first.

    Streaming: each read's complete lines are checked, un-stuffed and appended to the result at
    once, so the reader's buffer holds at most one partial line and a read's worth of data, and
    no step costs more than one read (at most ~1 MB) on the event loop. The message is held
    once, in the bytearray returned; no per-line object is ever made."""
    # buf holds 2 octets of context (the DATA line's CRLF, later the last 2 octets taken) and
    # then what is not yet taken: an end mark may start in the context.
    buf = bytearray(b"\r\n")
    out = bytearray()
    size = 0                  # octets of the lines taken, CRLFs included, before un-stuffing
    too_long = False
    searched = 0
    while True:
        end = buf.find(END_OF_DATA, searched)
        stop = end + 2 if end >= 0 else buf.rfind(b"\r\n", 2) + 2   # complete lines only
        if stop > 2:
            size += stop - 2
            if size_limit and size > size_limit:
                out.clear()   # over the limit: nothing more is kept (the 552 comes at the end)
            elif not too_long:
                too_long = not lines_fit(buf, 2, stop)
                if too_long:
                    out.clear()
                else:
                    # RFC 5321 §4.5.2: a line's leading "." is removed; buf[2] starts a line.
                    start = 3 if buf[2] == 0x2E else 2
                    piece = buf[start:stop]
                    out += piece.replace(b"\r\n.", b"\r\n") if b"\r\n." in piece else piece
            del buf[:stop - 2]
        if end >= 0:
            break
        if len(buf) - 2 >= DATA_LINE_LIMIT:
            # A partial line already too long: refuse, and keep only what an end mark needs.
            too_long = True
            out.clear()
            size += len(buf) - 6
            del buf[:-4]
            buf[:0] = b"xx"   # context that cannot start an end mark
        searched = max(0, len(buf) - len(END_OF_DATA) + 1)   # an end mark may start in the last 4
        chunk = await reader.read(READ_ALL)
        if not chunk:            # end of stream: the protocol cancels us on EOF anyway
            raise asyncio.CancelledError
        buf += chunk
    rest = bytes(buf[len(END_OF_DATA):])
    if rest:   # pipelined commands: the reader is empty now, so this puts them back in order
        reader.feed_data(rest)
    if size_limit and size > size_limit:
        return bytearray(), TOO_MUCH
    if too_long:
        return bytearray(), LINE_TOO_LONG
    return out, None
