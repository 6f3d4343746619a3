"""The SMTP service: aiosmtpd protocols on the service's own event loop for the listeners
``smtp`` (25), ``submission`` (587, STARTTLS) and ``smtps`` (465, implicit TLS), the local
delivery path, and the outgoing queue with its administration.

service/app.py builds one ``SmtpServer``, makes a Listener per name with ``protocol_factory(name)``
and ``refusal``, then calls ``start()`` and, at shutdown, ``stop()``.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, TLSSetupException, syntax

from core.db import Database
from core.errors import DiskFull, QuotaExceeded, Unavailable, database_error
from core.sealer import Sealer
from core.store import MailStore
from service.auth_methods import AuthSource
from service.counters import Counters
from service.event_bus import EventBus
from service.listeners import Listener, Refusal
from service.live_settings import LiveSettings
from service.lograte import EventLog
from service.smtp.delivery import MxResolver, local_helo
from service.smtp.dsn import RecipientStatus
from service.smtp.handler import OK_RCPT, SmtpHandler, delivery_reply, uses_tls  # noqa: F401
from service.smtp.policy import (
    Address,
    Directory,
    LocalMailbox,
    RelayPolicy,
    SendingLimit,
)
from service.smtp.queue import OutboundQueue
from service.smtp.relaytest import run_relay_test
from service.throttle import LoginThrottle
from service.tls import TlsMaterial
from service.workers import Workers

log = logging.getLogger("service.smtp")
events = EventLog(log)

IDENT = "POP3 Service ESMTP"
COMMAND_TIMEOUT = 300           # RFC 5321 §4.5.3.2.7: five minutes
# Per-connection command budgets (aiosmtpd's command_call_limit). MAIL/RCPT/DATA/RSET stay
# unlimited: one connection may carry thousands of messages.
CALL_LIMITS = {"AUTH": 10, "EHLO": 20, "HELO": 20, "NOOP": 50, "VRFY": 10, "EXPN": 10, "HELP": 10,
               "STARTTLS": 3, "*": 10**9}
# Total time limits against slow clients (issue 12) are the settings smtp_logon_timeout and
# smtp_transaction_timeout (core/catalog.py): aiosmtpd's COMMAND_TIMEOUT restarts with every byte,
# so a client trickling one byte a minute would otherwise stay for ever.
_REFUSALS = {
    Refusal.PAUSED: b"421 4.3.2 Service paused; try again later\r\n",
    Refusal.BUSY: b"421 4.3.2 Too many connections; try again later\r\n",
    Refusal.BUSY_ADDRESS: b"421 4.7.0 Too many connections from your address; try again later\r\n",
    Refusal.BANNED: b"421 4.7.0 Your address is blocked for a while after failed logons\r\n",
}


_SMTP_VERBS = frozenset({b"HELO", b"EHLO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"NOOP", b"QUIT", b"VRFY",
                         b"EXPN", b"HELP", b"STARTTLS"})
_SASL_NAMES = frozenset({b"PLAIN", b"LOGIN", b"CRAM-MD5", b"SCRAM-SHA-256", b"NTLM"})


def loggable_line(line: bytes) -> bytes:
    """A client's line as it may be logged: a command, with AUTH's payload cut; anything else (the
    base64 lines of an AUTH exchange, also those a client sends after a refused AUTH, which
    aiosmtpd then reads as commands) only by its length."""
    words = bytes(line).strip().split()
    verb = words[0].upper() if words else b""
    if verb == b"AUTH":
        mechanism = words[1].upper() if len(words) > 1 else b""
        if mechanism and mechanism not in _SASL_NAMES:   # a payload in the mechanism's place
            return b"AUTH ***"
        return b" ".join([b"AUTH", mechanism] if mechanism else [b"AUTH"]) + (b" ***" if len(words) > 2 else b"")
    if verb in _SMTP_VERBS:
        return bytes(line)
    return b"(not a command: %d octets, not logged)" % len(line)


class _RedactAuth(logging.Filter):
    """aiosmtpd logs every line a client sends (INFO and DEBUG: AUTH PLAIN's password, the base64
    a client sends after a refused AUTH, an undecodable AUTH response) and every unrecognised
    command upper-cased (WARNING): only commands reach the log, AUTH without its payload."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Session.login_data is deprecated"):
            return False   # aiosmtpd warns on every AUTH it completes itself; not ours to fix
        if record.args and isinstance(record.args, tuple):
            args = list(record.args)
            for i, arg in enumerate(args):
                if isinstance(arg, (bytes, bytearray, memoryview)):
                    args[i] = loggable_line(bytes(arg))
                elif isinstance(arg, str) and "unrecognised" in str(record.msg):
                    args[i] = f"(not a command: {len(arg)} characters, not logged)"
            record.args = tuple(args)
        return True


_mail_log = logging.getLogger("mail.log")
if not any(isinstance(f, _RedactAuth) for f in _mail_log.filters):
    _mail_log.addFilter(_RedactAuth())


# A plain <local@domain> path: a dot-atom local part and a dotted domain of letters, digits and
# hyphens (RFC 5321 §4.1.2), then the parameters. That is nearly every MAIL and RCPT.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"[ \t]*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(.*)", re.DOTALL)


_END_OF_DATA = b"\r\n.\r\n"   # RFC 5321 §4.1.1.4: only CRLF "." CRLF ends the data (no bare LF)
DATA_LINE_LIMIT = 1000           # octets of a text line with its CRLF: RFC 5321 §4.5.3.1.6
_READ_ALL = 1 << 20               # more than the stream reader holds (2 x its limit, plus one 256 KB recv)


def _lines_fit(buf: bytearray, start: int, stop: int) -> bool:
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


class SmtpProtocol(SMTP):
    """aiosmtpd's protocol with two fast paths, each answering as aiosmtpd does (tests compare).

    - Addresses: aiosmtpd parses every MAIL and RCPT path with the ``email`` package's header
      parser and defines a ``typing.Protocol`` class on each call; that was 8 % of the event
      loop's time under load. A plain path gets the same answer from one regular expression;
      anything else (quoted local parts, source routes, address literals, non-ASCII) still goes
      to aiosmtpd's parser.
    - DATA: aiosmtpd reads the message a line at a time (60 reads, lists and joins for 4 KB)
      and keeps a bytes object per line (a 25 MB message of short lines cost ~430 MB).
      Here it is read in whole chunks and the end is found with one search for CRLF "." CRLF;
      each chunk's complete lines are checked (length, size limit), un-stuffed and appended at
      once. Bytes a client sent after the end (pipelined commands) go back to the reader, in
      order. Text lines are held to RFC 5321's 1000 octets (aiosmtpd lets 1001 through).
    """

    # aiosmtpd makes this the stream reader's limit as well, so a 4 KB message paused and resumed
    # the socket every 2 KB; DATA lines are held to DATA_LINE_LIMIT below, command lines to
    # aiosmtpd's command_size_limit, as before.
    line_length_limit = 64 * 1024

    def __init__(self, handler: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(handler, *args, **kwargs)
        if isinstance(handler, SmtpHandler):   # the handler says 421 to its open sessions at shutdown
            handler.sessions.add(self)

    async def challenge_auth(self, challenge: str | bytes, encode_to_b64: bool = True,
                             log_client_response: bool = False) -> Any:
        try:
            return await super().challenge_auth(challenge, encode_to_b64, log_client_response)
        except ValueError:   # an answer line over the reader's limit (asyncio's readline): a reply, not a crash
            await self.push("500 5.5.6 Authentication exchange line too long")
            return MISSING

    @syntax("STARTTLS")
    async def smtp_STARTTLS(self, arg: str) -> None:
        # RFC 3207 §4.2: no second TLS layer, neither after STARTTLS nor on port 465.
        if uses_tls(self):
            await self.push("503 5.5.1 TLS already active")
            return
        await super().smtp_STARTTLS(arg)   # a failed handshake: see SmtpHandler.handle_exception

    # Total time limits (set by SmtpServer.protocol_factory): the first for the connection until it
    # logs on or finishes a message, then one per message; 0 = none. See the smtp_logon_timeout setting.
    first_limit = 0.0
    transaction_limit = 0.0
    ends_at_logon = False     # submission: a logged-on user has the per-command timeout only
    _deadline = 0.0
    _deadline_timer: asyncio.TimerHandle | None = None
    _in_rset = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._deadline_timer is None and self.first_limit > 0:   # not again after STARTTLS
            self._deadline = self.loop.time() + self.first_limit
            self._deadline_timer = self.loop.call_later(self.first_limit, self._check_deadline)

    def connection_lost(self, error: Exception | None) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        super().connection_lost(error)

    def _set_rset_state(self) -> None:
        self._in_rset = True   # RSET and HELO end no transaction: they must not buy time
        try:
            super()._set_rset_state()
        finally:
            self._in_rset = False

    def _set_post_data_state(self) -> None:
        if not self._in_rset and self._deadline_timer is not None:   # a message is finished
            self._deadline = self.loop.time() + self.transaction_limit
        super()._set_post_data_state()

    async def handle_exception(self, error: Exception) -> str:
        """A STARTTLS handshake the client broke off is its problem: a rate-limited line, no traceback
        (aiosmtpd then closes the connection itself)."""
        if isinstance(error, TLSSetupException):
            peer = self.session.peer if self.session is not None else None
            events("starttls failed", logging.INFO, "smtp: TLS negotiation with %s failed: %s",
                   peer[0] if isinstance(peer, tuple) else "?", error.__cause__ or "handshake failed")
            return "421 4.7.0 TLS negotiation failed"
        return await super().handle_exception(error)

    def _check_deadline(self) -> None:
        """Hang up on a client that has not logged on or finished its message in time."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.ends_at_logon and self.session is not None and self.session.authenticated:
            return
        left = self._deadline - self.loop.time()
        if left > 0:
            self._deadline_timer = self.loop.call_later(left, self._check_deadline)
            return
        peer = self.session.peer if self.session is not None else None
        events("time limit", logging.INFO, "smtp: %s took too long (no logon or finished message), closing",
               peer[0] if isinstance(peer, tuple) else "?")
        # RFC 5321 §3.8 / §4.5.3.2: 421 when the server must close the connection.
        transport.write(b"421 4.4.2 Time limit reached; closing the connection\r\n")
        if transport.get_write_buffer_size():
            transport.abort()   # a client that does not read must not keep a closing transport
        else:
            transport.close()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = _PLAIN_PATH.fullmatch(arg) if arg else None
        if match is None or "(" in match.group(2):   # a comment after the path: the parser's job
            try:
                return super()._getaddr(arg)
            except Exception:   # the email parser crashes on some junk ("<", "a@["): malformed
                return None, None
        address = match.group(1)
        if self.local_part_limit and address.rindex("@") > self.local_part_limit:
            return None, None
        return address, match.group(2).lstrip(" \t")

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, refusal = await self._read_data()
        except asyncio.CancelledError:   # the connection went away during DATA (as aiosmtpd)
            log.info("smtp: connection lost during DATA")
            self._writer.close()
            raise
        if refusal is not None:
            await self.push(refusal)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = content
        del content   # the handler drops the envelope's references once it has what it needs
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytearray, str | None]:
        """The message up to CRLF "." CRLF, un-stuffed, or a refusal with aiosmtpd's replies (a
        line over DATA_LINE_LIMIT octets, or more than ``data_size_limit`` octets; where both,
        aiosmtpd names the one it met first, this the size). An over-size or over-long message
        is read to its end but not kept.

        Streaming: each read's complete lines are checked, un-stuffed and appended to the result
        at once, so the reader's buffer holds at most one partial line and a read's worth of data,
        and no step costs more than one read (at most ~1 MB) on the event loop. The message is
        held once, in the bytearray returned; no per-line object is ever made."""
        reader = self._reader
        limit = self.data_size_limit
        # buf holds 2 octets of context (the DATA line's CRLF, later the last 2 octets taken) and
        # then what is not yet taken: an end mark may start in the context.
        buf = bytearray(b"\r\n")
        out = bytearray()
        size = 0                  # octets of the lines taken, CRLFs included, before un-stuffing
        too_long = False
        searched = 0
        while True:
            end = buf.find(_END_OF_DATA, searched)
            stop = end + 2 if end >= 0 else buf.rfind(b"\r\n", 2) + 2   # complete lines only
            if stop > 2:
                size += stop - 2
                if limit and size > limit:
                    out.clear()   # over the limit: nothing more is kept (the 552 comes at the end)
                elif not too_long:
                    too_long = not _lines_fit(buf, 2, stop)
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
            searched = max(0, len(buf) - len(_END_OF_DATA) + 1)   # an end mark may start in the last 4
            chunk = await reader.read(_READ_ALL)
            if not chunk:            # end of stream: the protocol cancels us on EOF anyway
                raise asyncio.CancelledError
            buf += chunk
        rest = bytes(buf[len(_END_OF_DATA):])
        if rest:   # pipelined commands: the reader is empty now, so this puts them back in order
            reader.feed_data(rest)
        if limit and size > limit:
            return bytearray(), "552 Error: Too much mail data"
        if too_long:
            return bytearray(), "500 Line too long (see RFC5321 4.5.3.1.6)"
        return out, None


class SmtpServer:
    """Everything SMTP in one running service: handlers, relay policy, queue, admin operations."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, db: Database, store: MailStore, data_dir: Path,
                 settings: LiveSettings, workers: Workers, counters: Counters, events: EventBus, auth: AuthSource,
                 tls: TlsMaterial, throttle: LoginThrottle | None, listeners: Mapping[str, Listener],
                 sealer: Sealer | None) -> None:
        self.loop = loop
        self.store = store
        self.data_dir = data_dir
        self.settings = settings
        self.workers = workers
        self.counters = counters
        self.auth = auth
        self.tls = tls
        self.throttle = throttle
        self.sealer = sealer     # opens the smart host password (None: the service has no server key)
        # The service's listeners by name (its own three among them), filled as they are made:
        # at shutdown this pauses its own, and relay.test finds the port 25 one.
        self.listeners = listeners
        self.directory = Directory(db, settings, workers)
        events.subscribe(self.directory.on_event)
        self.relay = RelayPolicy(settings)
        self.sending_limit = SendingLimit(settings, counters, events)
        self.queue = OutboundQueue(loop=loop, db=db, store=store, data_dir=data_dir, settings=settings,
                                   workers=workers, counters=counters, resolver=self.resolver)
        self._handlers: dict[str, SmtpHandler] = {}
        # At most 16 deliveries in the store's 32 threads at once, leaving the others for POP3
        # and the admin channel. They write and fsync their files in parallel; the store's group
        # commit then gives them one fsync per folder and one index transaction (on SQLite one
        # writer commits for all, so none of them waits in SQLite's busy handler). Measured with
        # 20 connections: 8 at once gave 856 messages/s, 16 gave 955, 24 no better than 16.
        self._store_gate = asyncio.Semaphore(16)

    @property
    def hostname(self) -> str:
        return local_helo(self.settings.hostname)

    # -- what the daemon calls ------------------------------------------------------------
    def protocol_factory(self, name: str) -> Callable[[], asyncio.BaseProtocol]:
        """A factory of aiosmtpd protocols for the listener ``name``."""
        handler = self._handlers.setdefault(name, SmtpHandler(self, name))
        settings, tls = self.settings, self.tls

        def make() -> SMTP:
            level = int(settings.get("logging"))
            _mail_log.setLevel(logging.INFO if level >= 3 else logging.WARNING if level >= 1 else logging.CRITICAL)
            starttls = tls.context() if (tls.available and name != "smtps") else None
            protocol = SmtpProtocol(
                handler,
                data_size_limit=int(settings.get("max_message_size")),
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname=self.hostname,
                ident=IDENT,
                tls_context=starttls,
                timeout=COMMAND_TIMEOUT,
                # The handler decides where AUTH may happen (PLAIN/LOGIN only inside TLS when SPA
                # is required; the challenge-response mechanisms anywhere), so aiosmtpd's own
                # all-or-nothing TLS rule is off; it also hid AUTH on 465 (issue #281).
                auth_require_tls=False,
                auth_required=False,
                command_call_limit=CALL_LIMITS,
                loop=self.loop,
            )
            transaction = float(settings.get("smtp_transaction_timeout"))
            protocol.transaction_limit = transaction
            protocol.ends_at_logon = name != "smtp"
            protocol.first_limit = float(settings.get("smtp_logon_timeout")) if protocol.ends_at_logon else transaction
            return protocol

        return make

    def refusal(self, reason: Refusal) -> bytes:
        return _REFUSALS.get(reason, b"421 4.3.2 Service not available\r\n")

    async def start(self) -> None:
        await self.queue.start()
        log.info("smtp queue runner started")

    async def stop(self) -> None:
        """Say 421 to every open SMTP session (RFC 5321 §3.8), then stop the queue."""
        goodbye = f"421 4.3.2 {self.hostname} Service shutting down, closing transmission channel\r\n".encode()
        for name, handler in self._handlers.items():
            listener = self.listeners.get(name)
            if listener is not None:   # until the daemon closes it, a newcomer gets the paused 421
                listener.pause()
            handler.goodbye(goodbye)
        await self.queue.stop()

    # -- delivery of an accepted message --------------------------------------------------
    def resolver(self) -> MxResolver:
        auth = None
        user = str(self.settings.get("smarthost_user") or "")
        if user:
            auth = (user, self._unseal(str(self.settings.get("smarthost_password") or "")))
        return MxResolver(routes=str(self.settings.get("smtp_routes") or ""),
                          smarthost=str(self.settings.get("smarthost") or ""), smarthost_auth=auth,
                          dns_servers=str(self.settings.get("dns_servers") or ""))

    async def accept(self, data: bytes, *, sender: str, local: list[LocalMailbox], remote: list[Address],
                     queue_id: str, submitted_by: str, client: str) -> str:
        """Make the message safe for every recipient (queue, then mailboxes), then say 250."""
        queued = False
        try:
            if remote:
                await self.workers.run(self.queue.enqueue, sender, [(a.text, a.domain) for a in remote], data,
                              submitted_by=submitted_by, client=client, queue_id=queue_id)
                queued = True
            if local:
                await self._deliver_local(data, sender, local)
        except Exception as exc:
            # A full disk or a busy database: a 4xx worded for a person, not a traceback.
            refusal = database_error(exc)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                refusal = DiskFull("The outgoing mail spool is out of disk space; free space in the data directory.")
            if queued:   # all or nothing: the client will send again
                with contextlib.suppress(Exception):
                    await self.workers.run(self.queue.discard, queue_id)
            if refusal is None:
                raise
            log.warning("smtp: message from %s <%s> not accepted: %s", client, sender, refusal.message)
            self.counters.incr("smtp_refused")
            return delivery_reply(refusal, tempfail=bool(self.settings.get("quota_full_tempfail")))
        self.counters.incr("smtp_accepted")
        if local:
            self.counters.incr("smtp_delivered", len(local))
        if queued:
            self.queue.wake()
        log.info("smtp: accepted %s from %s <%s>: %d local, %d remote recipient(s), %d bytes",
                 queue_id, client, sender, len(local), len(remote), len(data))
        return f"250 2.0.0 OK: queued as {queue_id}"

    async def _deliver_local(self, data: bytes, sender: str, boxes: list[LocalMailbox]) -> None:
        """One file hard-linked into every mailbox. If the quota moved since RCPT, deliver to those
        that still have room and report the rest to the sender (the 250 covers the message)."""
        store = self.store
        ids = [b.id for b in boxes]
        try:
            # Always in a worker thread, even for a lone client: a delivery waits on the disk and
            # on the database's write lock, and the event loop must never wait (issue 14).
            async with self._store_gate:
                await self.workers.run(store.deliver_many, ids, data)
            return
        except QuotaExceeded:
            if len(boxes) == 1:
                raise
        full = []
        for box in boxes:
            try:
                await self.workers.run(store.deliver_many, [box.id], data)
            except QuotaExceeded as exc:
                full.append((box, exc))
        if len(full) == len(boxes):
            raise full[0][1]
        tempfail = bool(self.settings.get("quota_full_tempfail"))
        statuses = [RecipientStatus(b.address, "5.2.2" if e.permanent or not tempfail else "4.2.2", e.message)
                    for b, e in full]
        await self.workers.run(self.queue.report, sender, statuses, data, arrival=datetime.now(UTC),
                           delayed=False, is_report=not sender)

    # -- administration (the admin channel's queue.* and relay.test ops) ------------------
    async def queue_list(self) -> list[dict]:
        return await self.workers.run(self.queue.list)

    async def queue_retry(self, ident: int | str | None = None) -> int:
        count = await self.workers.run(self.queue.retry, ident)
        self.queue.wake()
        return count

    async def queue_delete(self, ident: int | str) -> int:
        return await self.workers.run(self.queue.delete, ident)

    async def queue_show(self, ident: int | str) -> dict:
        return await self.workers.run(self.queue.show, ident)

    async def relay_test(self, target_host: str = "", port: int | None = None) -> list[dict]:
        """Try the classic open-relay tricks against a running SMTP listener (this server's port
        25 listener unless told otherwise) and report each."""
        listener = self.listeners.get("smtp")
        if not port:
            port = listener.bound_port if listener is not None else None
            if not port:
                raise Unavailable("The SMTP listener is not running; start it or give a port.")
        if not target_host:
            bound = listener.host if listener is not None else ""
            target_host = "127.0.0.1" if bound in ("", "0.0.0.0") else "::1" if bound == "::" else bound
        domains = sorted(await self.directory.local_domains())
        local = domains[0] if domains else self.hostname
        return await run_relay_test(target_host, int(port), local_domain=local, helo=self.hostname)

    # -- the smart host password: sealed with the server key ----------------------------------
    def _unseal(self, stored: str) -> str:
        if not stored:
            return ""
        if self.sealer is None:
            raise Unavailable("The smart host password cannot be read without the server key.")
        return self.sealer.unseal("smarthost_password", stored)
