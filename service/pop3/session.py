"""One POP3 connection: buffering, pipelining, flow control, timeouts, and the session state.

``Pop3Session`` is an ``asyncio.Protocol``. ``data_received`` cuts the input into lines and
queues them; one coroutine per session takes them in order and runs the command table of the
current state (commands.py), so pipelined commands are answered in order (RFC 2449 §6.6).
Replies collect in an output buffer that is written when the input queue runs dry, so a
pipelining client gets many replies in one segment and a lock-step client one write per reply.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from core.model import MailboxRef, MessageInfo
from core.store.maildir import open_message, shown_path
from service.listeners import client_key
from service.lograte import CLIENT
from service.pop3 import commands, wire
from service.pop3.state import (
    LOG_MAXIMUM,
    LOG_MEDIUM,
    LOG_MINIMUM,
    TOO_LONG,
    SessionClosed,
    State,
    events,
    log,
)

if TYPE_CHECKING:
    from service.pop3.server import Pop3Server

READ_CHUNK = 256 * 1024        # a message is read from disk in pieces of this size
AHEAD_BELOW = 64 * 1024        # after RETR n, the small messages that follow are read ahead ...
AHEAD_BYTES = 128 * 1024       # ... in one hop to a reader thread, at most this much per session
FLUSH_AT = 64 * 1024           # write the output buffer out once it holds this much
WRITE_HIGH, WRITE_LOW = 512 * 1024, 128 * 1024   # transport buffer limits (flow control)
QUEUE_PAUSE, QUEUE_RESUME = 256, 32              # queued lines: stop / restart reading
class Pop3Session(asyncio.Protocol):
    """One client connection and its POP3 state."""

    def __init__(self, server: Pop3Server, *, implicit_tls: bool) -> None:
        self.server = server
        self.id = server.next_session_id()
        self.tls = implicit_tls
        self.state = State.AUTHORIZATION
        self.address = "?"
        self.client = "?"                       # the address's key for limits and log budgets (IPv6: its /64)
        self.transport: Any = None
        # the maildrop, after logon
        self.user: str | None = None            # name given with USER, waiting for PASS
        self.mailbox: MailboxRef | None = None
        self.messages: list[MessageInfo] = []
        self._unreadable_logged: set[int] = set()
        # Small messages read ahead (clients fetch in order): number → (path, text), and the read
        # under way (the numbers it covers, its future).
        self._ahead: dict[int, tuple[str, bytes]] = {}
        self._ahead_read: tuple[frozenset[int], asyncio.Future[dict[int, tuple[str, bytes]]]] | None = None
        # A large message next: its file opened and first piece read ahead (number, path, read).
        self._first_ahead: tuple[int, str, asyncio.Future[tuple[MessageFile, bytes]]] | None = None
        self.deleted: set[int] = set()          # 0-based indexes marked by DELE
        self.lock_holder: str | None = None
        self.bad_commands = 0
        self.closing = False                    # we decided to end the session
        self.lost = False                       # the connection is gone
        self.total_octets = 0                   # octets of the whole snapshot, set at logon
        self.timestamp = ""                     # APOP banner (RFC 1939 §7), set in the greeting
        self.retrieved = 0                      # for the session's log line
        # I/O
        self._inbuf = bytearray()
        self._lines: deque[Any] = deque()
        self._discarding = False
        self._reading_paused = False
        self._waiter: asyncio.Future | None = None
        self._eof = False
        self._out: list[bytes] = []
        self._out_size = 0
        self._writable: asyncio.Future | None = None
        self._write_paused = False
        self._last_activity = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._logon_timer: asyncio.TimerHandle | None = None
        self._upgrading = False                 # between STLS's +OK and the end of the handshake
        self._task: asyncio.Task | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        self.client = client_key(self.address)
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        self._last_activity = loop.time()
        self._timer = loop.call_later(self.idle_timeout(), self._check_idle)
        # A total time to log on, however slowly the client trickles its bytes (issue 12).
        self._logon_timer = loop.call_later(float(self.server.settings.get("pop3_logon_timeout")), self._logon_expired)
        self._task = loop.create_task(self._run())
        self.server.session_started(self, self._task)

    def data_received(self, data: bytes) -> None:
        self._last_activity = self.server.loop.time()
        buf = self._inbuf
        buf += data
        start = 0
        find = buf.find
        lines = self._lines
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                break
            if self._discarding:          # the rest of an over-long line
                self._discarding = False
            elif nl - start > wire.MAX_LINE:
                lines.append(TOO_LONG)
            else:
                end = nl - 1 if nl > start and buf[nl - 1] == 13 else nl
                lines.append(bytes(buf[start:end]))
            start = nl + 1
        if start:
            del buf[:start]
        if len(buf) > wire.MAX_LINE:
            if not self._discarding:
                lines.append(TOO_LONG)
                self._discarding = True
            buf.clear()
        if lines:
            if len(lines) > QUEUE_PAUSE and not self._reading_paused:
                self._reading_paused = True
                self.transport.pause_reading()
            self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        # Keep a plain connection half-open so queued commands (QUIT among them) can still be
        # answered; an SSL transport cannot do that and closes either way.
        return not self.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self.lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._logon_timer is not None:
            self._logon_timer.cancel()
            self._logon_timer = None
        self._wake()
        self._drop_ahead()
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(SessionClosed())
        self.server.session_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._last_activity = self.server.loop.time()   # the client is reading: not idle
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- input ----------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_line(self) -> Any:
        """The next queued line (bytes, or TOO_LONG), or None once the client has gone."""
        # Lines the client sent before it hung up are still taken: "DELE 1, QUIT" and a close
        # without waiting for the answer is a common client habit, and QUIT must still commit.
        while not self._lines:
            if self._eof or self.lost or self.closing:
                return None
            self.flush()   # nothing more to do until the client speaks: send what we have
            self._waiter = self.server.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        line = self._lines.popleft()
        if self._reading_paused and len(self._lines) <= QUEUE_RESUME and not self.lost:
            self._reading_paused = False
            self.transport.resume_reading()
        return line

    def drop_pending_input(self) -> None:
        """Forget anything the client sent ahead (before TLS starts: RFC 2595 §4 / STARTTLS
        command injection)."""
        self._lines.clear()
        self._inbuf.clear()
        self._discarding = False

    # -- output ---------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queue reply bytes; they go out when the input runs dry or the buffer fills."""
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    async def drain(self) -> None:
        """Flush, then wait while the client is slower than we are (memory stays bounded)."""
        self.flush()
        if self.lost:
            raise SessionClosed()
        while self._write_paused:
            self._writable = self.server.loop.create_future()
            try:
                await self._writable
            finally:
                self._writable = None

    def close(self) -> None:
        """End the session after the replies queued so far."""
        self.closing = True
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    async def start_tls(self) -> None:
        """Switch the connection to TLS in place (STLS, RFC 2595 §4)."""
        self.flush()
        self.drop_pending_input()
        loop = self.server.loop
        self._upgrading = True
        try:
            new_transport = await loop.start_tls(self.transport, self, self.server.tls.context(), server_side=True,
                                                 ssl_handshake_timeout=30)
        finally:
            self._upgrading = False
        if new_transport is None:
            raise SessionClosed()
        self.transport = new_transport
        new_transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.tls = True
        self._last_activity = loop.time()

    # -- timeouts -------------------------------------------------------------------------
    def idle_timeout(self) -> float:
        return float(self.server.settings.get("idle_timeout"))

    def _logon_expired(self) -> None:
        """The client has not logged on within pop3_logon_timeout: tell it and hang up."""
        self._logon_timer = None
        if self.lost or self.closing or self.state != State.AUTHORIZATION:
            return
        events("logon time limit", logging.INFO, "pop3 %s %s: no logon within %s s, closing",
               self.id, self.address, self.server.settings.get("pop3_logon_timeout"))
        self.server.counters.incr("pop3.logon_timeouts")
        self.closing = True
        transport = self.transport
        if self._upgrading:   # in the middle of a TLS handshake: no reply fits in there
            transport.abort()
            return
        self.write(wire.err("No logon within the time allowed; closing the connection.", "SYS/TEMP"))
        self.flush()
        if transport is not None:
            # A client that does not read would hold a closing transport (and its slot): abort then.
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()
        self._wake()

    def _check_idle(self) -> None:
        self._timer = None
        if self.lost:
            return
        loop = self.server.loop
        timeout = self.idle_timeout()
        idle = loop.time() - self._last_activity
        if self.closing:
            # Closing, but the connection is still there after the idle time: the client does not
            # read what is left to send. Abort, so it cannot keep its slot for ever.
            if idle >= timeout:
                self.abort()
            else:
                self._timer = loop.call_later(timeout - idle, self._check_idle)
            return
        if idle >= timeout:
            # RFC 1939 §3: an autologout timer closes the connection without entering UPDATE.
            self.log(LOG_MEDIUM, "idle for %.0f s, closing", idle)
            self.server.counters.incr("pop3.timeouts")
            # Give the mailbox back before the client sees the close, so a reconnect right after
            # it is not refused [IN-USE] (the lock is a database row, on another server maybe).
            self.server.loop.create_task(self._close_after_release())
            return
        self._timer = loop.call_later(timeout - idle, self._check_idle)

    async def _close_after_release(self) -> None:
        try:
            await self.release_lock()
        finally:
            self.abort()

    # -- the command loop -----------------------------------------------------------------
    async def _run(self) -> None:
        try:
            self.log(LOG_MEDIUM, "connected%s", " (TLS)" if self.tls else "")
            self.write(self.greeting())
            while not self.closing:
                line = await self.next_line()
                if line is None:
                    break
                await commands.dispatch(self, line)
                if self._write_paused:
                    # A client that pipelines and does not read: stop taking its commands until
                    # it catches up (the idle timer ends it if it never does).
                    await self.drain()
        except SessionClosed:
            pass
        except Exception:
            events("session error", logging.ERROR, "POP3 session %s from %s failed", self.id, self.address,
                   exc_info=True)
            self.write(wire.err("Internal server error; the session is ended and no message was deleted.",
                                "SYS/TEMP"))
        finally:
            self.close()
            try:
                await self.end()
            finally:
                # connection_lost does not come when a TLS handshake after STLS failed: the SSL
                # layer keeps it to itself. The session is over either way.
                self.server.session_lost(self)

    def greeting(self) -> bytes:
        hostname = self.server.settings.hostname
        text = f"{hostname} POP3 Service ready"
        if self.server.auth.provider.supports_challenge_response:
            # RFC 1939 §7: a unique timestamp in angle brackets makes APOP possible.
            self.timestamp = f"<{os.getpid()}.{secrets.token_hex(6)}.{int(time.time())}@{hostname}>"
            text += " " + self.timestamp
        return wire.ok(text)

    async def release_lock(self) -> None:
        holder, box = self.lock_holder, self.mailbox
        self.lock_holder = None
        if holder is not None and box is not None:
            await self.server.release_lock(box.id, holder)

    async def end(self) -> None:
        """Give the mailbox back, however the session ended (nothing is deleted here)."""
        box = self.mailbox
        await self.release_lock()
        self.log(LOG_MEDIUM, "disconnected%s", f" ({self.retrieved} retrieved)" if box is not None else "")

    # -- maildrop helpers -----------------------------------------------------------------
    def visible(self, number: int) -> MessageInfo | None:
        """Message ``number`` (1-based) if it exists and is not marked deleted."""
        index = number - 1
        if 0 <= index < len(self.messages) and index not in self.deleted:
            return self.messages[index]
        return None

    def totals(self) -> tuple[int, int]:
        """(messages, octets) of the maildrop, deleted ones excluded."""
        if not self.deleted:
            return len(self.messages), self.total_octets
        count = size = 0
        for index, info in enumerate(self.messages):
            if index not in self.deleted:
                count += 1
                size += info.size
        return count, size

    async def send_message(self, number: int, info: MessageInfo, *, body_lines: int | None = None) -> bool:
        """RETR / TOP: stream the file as RFC 1939 wants it, never holding it whole in memory.

        The file is opened and its first piece read (in one hop to a reader thread) before "+OK"
        is sent, so a missing or unreadable file is an ordinary -ERR [SYS/TEMP] (RFC 3206 §4).
        Every open, read and close runs on a reader thread, never on the event loop (issue 14);
        while one piece goes out the next is read, so at most two pieces are held at a time."""
        first_read = min(READ_CHUNK, info.size + 1)   # a message smaller than a piece: one hop in all
        whole = await self._read_ahead(number, info, keep=body_lines is not None)
        try:
            if whole is not None:
                handle, chunk = MessageFile(None), whole
            else:
                handle, chunk = await (self._take_first_ahead(number, info.path)
                                       or self.server.workers.read_file(_open_and_read, info.path, first_read))
        except FileNotFoundError as exc:
            moved = await self._missing(number, info, exc)
            if moved is None:
                return False
            info = moved
            try:
                handle, chunk = await self.server.workers.read_file(_open_and_read, info.path, first_read)
            except OSError as error:
                return self._unreadable(number, info, error)
        except OSError as exc:
            return self._unreadable(number, info, exc)
        ahead: asyncio.Future[bytes] | None = None
        try:
            encoder = wire.MessageEncoder(body_lines)
            if body_lines is None:
                self.write(b"+OK %d octets\r\n" % info.size)
            else:
                self.write(b"+OK top of message follows\r\n")
            out = encoder.feed(chunk)
            while True:
                if out:
                    self.write(out)
                if encoder.complete or handle.closed:
                    break
                await self.drain()   # what is written goes out while the next piece is read
                # The next piece is read and encoded on a reader thread, started only now that the
                # loop has nothing left to do for this session: the thread then finds the GIL free
                # instead of taking turns with the loop at every system call (a context switch each).
                # The encoder is touched by that hop alone until it is awaited. Awaiting it always
                # suspends, so a fast client never keeps the other sessions waiting.
                ahead = self.server.workers.read_file(_read_encoded, handle, encoder, READ_CHUNK)
                try:
                    out = await ahead
                except OSError as exc:
                    # "+OK" and part of the text are out: the only honest end is to hang up.
                    log.error("POP3 session %s: reading %s failed mid-message: %s; closing the connection",
                              self.id, info.path, exc)
                    self.abort()
                    raise SessionClosed() from None
                ahead = None
            self.write(encoder.finish() + wire.TERMINATOR)
        finally:
            if ahead is not None:   # a read nobody waits for any more: its failure is no news
                ahead.add_done_callback(_ignore_outcome)
            if not handle.closed:   # TOP ended early, or the client went away
                self.server.workers.close_file(handle)
        if body_lines is None:
            self._plan_ahead(number)
            self.retrieved += 1
            self.server.counters.incr("pop3.messages_retrieved")
            self.server.counters.incr("pop3.bytes_retrieved", encoder.octets)
        return True

    async def _read_ahead(self, number: int, info: MessageInfo, *, keep: bool) -> bytes | None:
        """The text of message ``number`` if it was read ahead (waiting for a read under way that
        covers it), else None. ``keep`` (TOP) leaves it for a RETR that may follow."""
        if number not in self._ahead and self._ahead_read is not None and number in self._ahead_read[0]:
            future = self._ahead_read[1]
            try:
                found = await future
            except Exception:   # noqa: BLE001 - the ordinary read reports what is wrong
                found = {}
            if self._ahead_read is not None and self._ahead_read[1] is future:
                self._ahead_read = None
                self._ahead.update(found)
        got = self._ahead.get(number) if keep else self._ahead.pop(number, None)
        return got[1] if got is not None and got[0] == info.path else None

    def _plan_ahead(self, number: int) -> None:
        """After RETR ``number``: when nothing is read ahead any more, read the small messages that
        follow in one hop, so a client fetching in order seldom waits for a reader thread."""
        for old in [n for n in self._ahead if n <= number]:
            del self._ahead[old]
        if self._ahead or self._ahead_read is not None or self.lost or self.closing:
            return
        wanted: list[tuple[int, str, int]] = []
        total = 0
        for following in range(number + 1, len(self.messages) + 1):
            info = self.visible(following)
            if info is None:
                continue
            if info.size >= AHEAD_BELOW or total + info.size > AHEAD_BYTES:
                break
            wanted.append((following, info.path, info.size))
            total += info.size
        if wanted:
            numbers = frozenset(n for n, _p, _s in wanted)
            self._ahead_read = (numbers, self.server.workers.read_file(_read_whole, wanted))
            return
        next_visible = next((n for n in range(number + 1, len(self.messages) + 1) if self.visible(n)), None)
        if next_visible is not None and self._first_ahead is None:
            info = self.messages[next_visible - 1]
            first_piece = min(READ_CHUNK, info.size + 1)
            self._first_ahead = (next_visible, info.path,
                                 self.server.workers.read_file(_open_and_read, info.path, first_piece))

    def _take_first_ahead(self, number: int, path: str) -> asyncio.Future[tuple[MessageFile, bytes]] | None:
        """The read ahead of message ``number``'s first piece, if there is one (else it is dropped)."""
        first, self._first_ahead = self._first_ahead, None
        if first is not None and first[0] == number and first[1] == path:
            return first[2]
        if first is not None:
            first[2].add_done_callback(self._close_unused)
        return None

    def _close_unused(self, future: asyncio.Future[tuple[MessageFile, bytes]]) -> None:
        if not future.cancelled() and future.exception() is None and not future.result()[0].closed:
            self.server.workers.close_file(future.result()[0])

    def _drop_ahead(self) -> None:
        self._ahead.clear()
        self._take_first_ahead(0, "")
        if self._ahead_read is not None:
            self._ahead_read[1].add_done_callback(_ignore_outcome)
            self._ahead_read = None

    async def _missing(self, number: int, info: MessageInfo, exc: OSError) -> MessageInfo | None:
        """The file of message ``number`` is gone: let the store find out why, in a thread. Renamed by a
        mail reader: the message under its new name. Deleted: the store drops it from the index and the
        counters, this session answers -ERR [SYS/PERM] and the next session no longer lists it."""
        box = self.mailbox
        if box is None:   # only TRANSACTION reads messages, and it has a mailbox
            self._unreadable(number, info, exc)
            return None
        try:
            missing = await self.server.workers.run(self.server.store.mark_missing, box.id, info.id)
        except Exception as error:   # the database is away: an ordinary temporary failure
            if number not in self._unreadable_logged:
                log.error("POP3 session %s: the missing file of message %d could not be looked into: %s",
                          self.id, number, error)
            self._unreadable(number, info, exc)
            return None
        if missing.outcome == "moved":
            moved = dataclasses.replace(info, path=missing.path)
            self.messages[number - 1] = moved
            return moved
        if missing.outcome == "dropped":
            if missing.path:   # "" when another session or the repair dropped it first: logged there
                self.server.counters.incr("pop3.messages_lost")
                self.log(LOG_MINIMUM, "message %d (%s) is no longer in the mail store; dropped from the index",
                         number, info.uidl)
            # RFC 3206 §4: SYS/PERM, a failure that trying again will not fix.
            self.write(wire.err(f"Message {number} is no longer in the mail store (its file was removed); "
                                "it will not be listed again.", "SYS/PERM"))
            return None
        self._unreadable(number, info, exc)
        return None

    def _unreadable(self, number: int, info: MessageInfo, exc: OSError) -> bool:
        if number not in self._unreadable_logged:   # a client asking again and again: one line per message
            self._unreadable_logged.add(number)
            log.error("POP3 session %s (%s): message %d cannot be read from %s: %s", self.id,
                      self.mailbox.address if self.mailbox else "?", number, shown_path(info.path),
                      exc.strerror or exc)
            self.server.counters.incr("pop3.read_errors")
        self.write(wire.err(f"Message {number} cannot be read right now; try again later.", "SYS/TEMP"))
        return False

    # -- logging --------------------------------------------------------------------------
    def log(self, level: int, message: str, *args: Any) -> None:
        """Log at one of the four levels of the "logging" setting (0 None … 3 Maximum): failures at
        Minimum (WARNING), sessions and logons at Medium (INFO), commands at Maximum (DEBUG)."""
        if int(self.server.settings.get("logging")) >= level:
            who = self.mailbox.address if self.mailbox is not None else (self.user or "-")
            log.log(_PY_LEVELS[level], "pop3 %s %s %s: " + message, self.id, self.address, who, *args,
                    extra={CLIENT: self.client})   # one flooding client cannot use up the log's budget


_PY_LEVELS = {LOG_MINIMUM: logging.WARNING, LOG_MEDIUM: logging.INFO, LOG_MAXIMUM: logging.DEBUG}



class MessageFile:
    """An open message file, read on reader threads: a read and the close never overlap, and a
    read after the close (a session that went away mid-read) finds the end."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._lock = threading.Lock()

    def read(self, size: int) -> bytes:
        """The next ``size`` bytes; the file is closed at its end or on an error."""
        with self._lock:
            if self._handle is None:
                return b""
            try:
                chunk = self._handle.read(size)
            except BaseException:
                self._close()
                raise
            if len(chunk) < size:   # a short read of a regular file: its end
                self._close()
            return chunk

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _read_whole(wanted: list[tuple[int, str, int]]) -> dict[int, tuple[str, bytes]]:
    """On a reader thread: the whole text of small message files, by number. A file that cannot be
    read, or is larger than its indexed size (the POP3 size, CRLF counted: never less than the
    file's), is left out: RETR then reads it the ordinary way."""
    found: dict[int, tuple[str, bytes]] = {}
    for number, path, size in wanted:
        try:
            with open_message(path) as handle:
                text = handle.read(size + 1)
        except OSError:
            continue
        if len(text) <= size:   # a short read of a regular file: all of it
            found[number] = (path, text)
    return found


def _read_encoded(handle: MessageFile, encoder: wire.MessageEncoder, size: int) -> bytes:
    """On a reader thread: the wire form of the next ``size`` bytes of an open message file."""
    return encoder.feed(handle.read(size))


def _open_and_read(path: str, size: int) -> tuple[MessageFile, bytes]:
    """On a reader thread: open a message file and read its first ``size`` bytes (a file smaller
    than that is closed again in the same hop)."""
    handle = MessageFile(open_message(path))   # O_NOFOLLOW: never a link, nor anything but a file
    return handle, handle.read(size)
