"""What delivery needs to know of a message's text, found without parsing it into objects (bare
line ends, the Received: count, the From: fields), and the trace header this server adds.

Pure functions over bytes; a big message is scanned a MB at a time (one C call per MB), so the
caller may run them in a worker thread and the event loop never waits long for the GIL.
"""
from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass

INLINE_SCAN = 256 * 1024   # octets: a bigger message is inspected in a worker thread, ...
SCAN_CHUNK = 1 << 20       # ... one C call per MB, so the event loop never waits long for the GIL
MAX_HOPS = 50              # RFC 5321 §6.3: a Received count this high means a loop
MAX_FROM_FIELDS = 5
MAX_FROM_OCTETS = 8192     # a longer From: field is not read (and so is not anybody's address)

_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
_FROM = re.compile(rb"^from[ \t]*:", re.IGNORECASE | re.MULTILINE)
_FIELD_END = re.compile(rb"\r\n(?![ \t])")   # RFC 5322 §2.2.3: a CRLF not followed by WSP


@dataclass(frozen=True)
class MessageFacts:
    """What delivery needs to know of a message's text."""

    bare_line_end: bool
    hops: int                  # Received: fields in the header (counted up to MAX_HOPS)
    from_fields: list[str]     # the From: field bodies, unfolded (up to MAX_FROM_FIELDS + 1)


def has_bare_line_end(data: bytes | bytearray) -> bool:
    """True if ``data`` holds a LF without CR or a CR without LF: the SMTP smuggling vector
    (CVE-2024-27305 class), refused rather than repaired."""
    for start, stop in _windows(data):
        crlf = data.count(b"\r\n", start, stop)   # C speed; the regex is the slow way to say it
        if data.count(b"\n", start, stop) != crlf or data.count(b"\r", start, stop) != crlf:
            return True
    return False


def _windows(data: bytes | bytearray, size: int | None = None) -> list[tuple[int, int]]:
    """SCAN_CHUNK-sized (start, stop) ranges over ``data[:size]``, never cutting a CRLF in two."""
    out = []
    start, size = 0, len(data) if size is None else size
    while start < size:
        stop = min(start + SCAN_CHUNK, size)
        if stop < size and data[stop - 1] == 0x0D:
            stop += 1
        out.append((start, stop))
        start = stop
    return out


def header_end(data: bytes | bytearray) -> int:
    """Offset of the CRLF CRLF ending the header block (RFC 5322 §2.1), or len(data)."""
    if data.startswith(b"\r\n"):
        return 0
    for start, stop in _windows(data):
        found = data.find(b"\r\n\r\n", start, min(stop + 3, len(data)))
        if found >= 0:
            return found
    return len(data)


def inspect_message(data: bytes | bytearray, *, want_from: bool) -> MessageFacts:
    """Bare line ends, the Received: count and (if asked) the From: fields; only the header
    block is searched for fields, a MB at a time. Runs in a worker thread for big messages."""
    bare = has_bare_line_end(data)
    end = header_end(data)
    hops = 0
    froms: list[str] = []
    for start, stop in _windows(data, end):
        for match in _RECEIVED.finditer(data, start, min(stop + 16, end)):
            if match.start() < stop:
                hops += 1
        if hops >= MAX_HOPS:
            break
    if want_from:
        for start, stop in _windows(data, end):
            for match in _FROM.finditer(data, start, min(stop + 8, end)):
                if match.start() < stop and len(froms) <= MAX_FROM_FIELDS:
                    froms.append(_field_body(data, match.end(), end))
            if len(froms) > MAX_FROM_FIELDS:
                break
    return MessageFacts(bare, hops, froms)


def _field_body(data: bytes | bytearray, start: int, end: int) -> str:
    """The unfolded body of the field whose colon ends at ``start``; "" past MAX_FROM_OCTETS."""
    text = bytes(data[start:min(start + MAX_FROM_OCTETS, end) + 2])
    stop = _FIELD_END.search(text)
    if stop is None:
        if start + len(text) < end:   # longer than we read: judged as naming nobody
            return ""
        stop_at = len(text)
    else:
        stop_at = stop.start()
    return text[:stop_at].replace(b"\r\n", b"").decode("utf-8", "replace")


def from_addresses(fields: list[str]) -> list[str]:
    """The addresses of the From: fields ("" for a field that names none)."""
    out = []
    for value in fields:
        pairs = [addr for _, addr in email.utils.getaddresses([value])]
        out.extend(pairs if pairs and all(pairs) else [""])
    return out


class _TraceDate:
    """The RFC 5322 date for trace headers, formatted once per second (formatdate is slow)."""

    cached: tuple[int, str] = (0, "")

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if cls.cached[0] != second:
            cls.cached = (second, email.utils.formatdate(second, localtime=True))
        return cls.cached[1]


def received_header(*, helo: str, ip: str, hostname: str, protocol: str, queue_id: str,
                    recipients: list[str]) -> bytes:
    """RFC 5321 §4.4 trace header; ``for`` only with a single recipient (no list disclosed)."""
    date = _TraceDate.now()
    helo = "".join(ch for ch in helo if ch.isprintable() and ch not in "()\\")[:255] or "unknown"
    target = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
    return (f"Received: from {helo} ([{ip}])\r\n\tby {hostname} (POP3 Service) with {protocol} id {queue_id}"
            f"{target};\r\n\t{date}\r\n").encode("utf-8", "replace")
