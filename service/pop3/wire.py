"""POP3 on the wire, as pure functions: reply lines, multi-line listings, and the streaming
conversion of a stored message (LF line ends) into RFC 1939 form (CRLF, dot-stuffed, with TOP's
header-and-k-lines cut). No I/O here, so every rule is unit-tested on its own."""
from __future__ import annotations

from collections.abc import Iterable

CRLF = b"\r\n"
TERMINATOR = b".\r\n"          # RFC 1939 §3: a multi-line response ends with "." CRLF
MAX_LINE = 8192                # longest command line we accept (RFC 2449 §4 asks for 255; SASL needs more)


def ok(text: str = "") -> bytes:
    """A positive status line."""
    return b"+OK " + text.encode("utf-8") + CRLF if text else b"+OK" + CRLF


def err(text: str, code: str | None = None) -> bytes:
    """A negative status line, with an RFC 2449 §8 response code in brackets when given."""
    prefix = f"[{code}] " if code else ""
    return b"-ERR " + (prefix + text).encode("utf-8") + CRLF


def multiline(first: bytes, lines: Iterable[str | bytes]) -> bytes:
    """A status line, the given lines (dot-stuffed, RFC 1939 §3) and the terminating dot."""
    parts = [first]
    for line in lines:
        raw = line.encode("utf-8") if isinstance(line, str) else line
        if raw.startswith(b"."):
            raw = b"." + raw
        parts.append(raw + CRLF)
    parts.append(TERMINATOR)
    return b"".join(parts)


def split_command(line: bytes) -> tuple[str, str] | None:
    """Split one command line (without its line end) into an upper-case verb and its argument.

    Returns None for a line that cannot be a command: not UTF-8, control characters, an empty or
    non-alphabetic verb. Keywords are case-insensitive (RFC 1939 §3)."""
    if b"\x00" in line:
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(ch) < 0x20 and ch != "\t" for ch in text):
        return None
    verb, _, arg = text.partition(" ")
    if not verb or len(verb) > 16 or not verb.isascii() or not verb.isalpha():
        return None
    return verb.upper(), arg


def parse_number(arg: str) -> int | None:
    """A message number or line count: ASCII digits only (no sign, no spaces), else None."""
    arg = arg.strip()
    if not arg or len(arg) > 10 or not arg.isascii() or not arg.isdigit():
        return None
    return int(arg)


class MessageEncoder:
    """Turns a stored message, fed in chunks, into its RFC 1939 wire form.

    Bare LF becomes CRLF, CRLF stays, a bare CR stays; a line starting with "." gets a second
    "." (§3 byte-stuffing); a last line without a line end is given CRLF. The octets before
    stuffing therefore equal ``core.store.maildir.pop3_size`` of the file. With ``body_lines`` set, only
    the header, the blank line and that many body lines are passed (TOP, §7)."""

    __slots__ = ("_carry_cr", "_line_start", "_empty", "_top", "_in_header", "_body_left", "_done", "octets")

    def __init__(self, body_lines: int | None = None) -> None:
        self._carry_cr = False      # a trailing CR held back: it may be the first half of CRLF
        self._line_start = True     # the next output byte starts a line
        self._empty = True          # nothing emitted yet
        self._top = body_lines is not None
        self._in_header = True
        self._body_left = body_lines or 0
        self._done = False
        self.octets = 0             # octets sent, before stuffing

    @property
    def complete(self) -> bool:
        """TOP has sent all it needs; the rest of the file can stay unread."""
        return self._done

    def feed(self, chunk: bytes) -> bytes:
        """Wire bytes for the next chunk of the file (may be empty)."""
        if self._done or not chunk:
            return b""
        if self._carry_cr:
            chunk = b"\r" + chunk
            self._carry_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._carry_cr = True
            if not chunk:
                return b""
        if b"\r" in chunk:
            data = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        else:
            data = chunk.replace(b"\n", b"\r\n")
        if self._top:
            data = self._cut(data)
            if not data:
                return b""
        return self._stuff(data)

    def finish(self) -> bytes:
        """The end of the message: a held-back CR, a CRLF after an unterminated last line."""
        if self._done:
            return b""
        tail = b""
        if self._carry_cr:
            self._carry_cr = False
            tail = self._stuff(self._cut(b"\r") if self._top else b"\r")
        if not self._empty and not self._line_start:
            self.octets += 2
            tail += CRLF
        self._done = True
        return tail

    def _stuff(self, data: bytes) -> bytes:
        self.octets += len(data)
        out = data.replace(b"\r\n.", b"\r\n..")
        if self._line_start and out.startswith(b"."):
            out = b"." + out
        self._line_start = data.endswith(b"\n")
        self._empty = False
        return out

    def _cut(self, data: bytes) -> bytes:
        """TOP: keep the header, its blank line and ``body_lines`` lines (data is CRLF-normal)."""
        if self._in_header:
            if self._line_start and data.startswith(b"\r\n"):
                end = 0                     # empty header: the blank line comes first
            else:
                end = data.find(b"\r\n\r\n")
                if end >= 0:
                    end += 2
            if end < 0:
                return data                 # the header goes on in the next chunk
            self._in_header = False
            head, rest = data[: end + 2], data[end + 2:]
            return head + self._body(rest) if rest else head
        return self._body(data)

    def _body(self, data: bytes) -> bytes:
        if self._body_left <= 0:
            self._done = True
            return b""
        pos = 0
        while self._body_left > 0:
            nl = data.find(b"\n", pos)
            if nl < 0:
                return data                 # the line goes on in the next chunk
            pos = nl + 1
            self._body_left -= 1
        self._done = True
        return data[:pos]
