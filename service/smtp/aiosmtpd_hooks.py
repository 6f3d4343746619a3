"""Every place this service relies on aiosmtpd's internals, in one module (aiosmtpd is pinned to
1.4.6 in pyproject.toml for them).

Everywhere else service/smtp uses aiosmtpd's public API only: the handler hooks (``handle_EHLO``,
``handle_MAIL``, ``handle_RCPT``, ``handle_DATA``, ``handle_AUTH``, ``handle_exception``), the
handler's ``auth_<MECHANISM>`` methods, ``AuthResult``/``MISSING``, ``Session.peer``,
``authenticated``, ``auth_data``, ``host_name``, ``extended_smtp``, the ``Envelope`` fields, and
the ``SMTP`` constructor's arguments (size limit, timeout, call limits, TLS context). What reaches
further is listed here, each with why; tests/service/test_aiosmtpd_hooks.py checks for each that
the internal is still what we rely on and that the hook still does its job. Upgrading aiosmtpd:
run those tests first, then the SMTP tests.

Hooks of ``SmtpProtocol`` (our subclass of ``aiosmtpd.smtp.SMTP``):

1. ``line_length_limit`` (class attribute): aiosmtpd makes it the StreamReader's limit too, so a
   4 KB message paused and resumed the socket every 2 KB; raised to 64 KB. DATA lines are held to
   1000 octets by our reader (data_reader.py), command lines to aiosmtpd's ``command_size_limit``.
2. ``_getaddr`` (override), fast path: aiosmtpd parses every MAIL/RCPT path with the ``email``
   package's header parser and defines a ``typing.Protocol`` class per call (8 % of the event loop
   under load). A plain ``<local@domain>`` gets the same answer from one regular expression;
   anything else still goes to aiosmtpd's parser.
3. ``_getaddr`` crash guard: that parser raises (not HeaderParseError) on junk such as
   ``MAIL FROM:<`` or ``a@[``; aiosmtpd would answer with a 500 and a traceback in the log. Here
   it is a malformed address (aiosmtpd's own 553/501 syntax reply).
4. ``smtp_DATA`` (override) with ``_reader``, ``_writer``, ``_call_handler_hook`` and
   ``_set_post_data_state``: the message is read by data_reader.read_message in whole chunks
   (aiosmtpd keeps a bytes object per line: ~430 MB for a 25 MB message of short lines).
5. ``challenge_auth`` (override), the AUTH line limit: an AUTH answer longer than the reader's
   limit makes asyncio's ``readline`` raise ValueError inside aiosmtpd; here it is a 500 reply.
6. ``smtp_STARTTLS`` (override): RFC 3207 §4.2, no second TLS layer (aiosmtpd would start one
   after STARTTLS and on port 465, where its TLS is not its own).
7. Total time limits (``connection_made``, ``connection_lost``, ``_set_rset_state``,
   ``_set_post_data_state``): aiosmtpd's ``timeout`` restarts with every command, so a client
   trickling a byte a minute stays for ever. A deadline for logging on (or the first message),
   then one per message, ends with 421 (settings smtp_logon_timeout, smtp_transaction_timeout).
   aiosmtpd calls ``_set_post_data_state`` after each message and from ``_set_rset_state`` (RSET,
   HELO, EHLO); only the first is a finished message.
8. ``handle_exception`` (override): a STARTTLS handshake the client broke off raises
   TLSSetupException; a rate-limited log line and 421, no traceback (aiosmtpd closes).
9. Auth methods: aiosmtpd collects ``auth_*`` methods of the protocol, then of the handler, so the
   handler's ``auth_PLAIN``/``auth_LOGIN`` replace aiosmtpd's built-in ones (which would check the
   password on the event loop) and ``auth_CRAM__MD5`` names CRAM-MD5.

Other hooks:

10. ``attached``: the handler keeps its per-connection and per-message state as one attribute on
    aiosmtpd's ``Session`` and ``Envelope`` (aiosmtpd makes a new Envelope after every message and
    RSET, a new Session per connection and after STARTTLS, so the state follows).
11. ``uses_tls``: after STARTTLS aiosmtpd replaces ``transport`` with the TLS transport, so its
    ``ssl_object`` says whether the session is encrypted; asyncio's torn-down TLS transport raises
    AttributeError there.
12. ``ehlo_lines``: the ``responses`` aiosmtpd hands ``handle_EHLO`` end with ``250 HELP`` and hold
    its own ``250-AUTH`` line (missing on port 465, its issue #281); replaced by ours.
13. The ``mail.log`` logger: aiosmtpd logs every client line at INFO and DEBUG (AUTH PLAIN's
    password, base64 lines after a refused AUTH), unrecognised commands upper-cased at WARNING,
    and warns "Session.login_data is deprecated" on every AUTH it completes. ``install_log_filter``
    keeps only commands, AUTH without its payload; ``set_log_level`` follows the logging setting.
"""
from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, TypeVar, cast

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, TLSSetupException, syntax

from service.lograte import EventLog
from service.smtp.data_reader import read_message
from service.smtp.replies import AUTH_LINE_TOO_LONG, STARTTLS_TWICE, TIME_LIMIT, TLS_FAILED

log = logging.getLogger("service.smtp")
events = EventLog(log)
AIOSMTPD_LOG = "mail.log"   # aiosmtpd's logger (hook 13)
T = TypeVar("T")

# -- 1-9: the protocol --------------------------------------------------------------------------

# Hook 2: a plain <local@domain> path: a dot-atom local part and a dotted domain of letters, digits
# and hyphens (RFC 5321 §4.1.2), then the parameters. That is nearly every MAIL and RCPT.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
PLAIN_PATH = re.compile(rf"[ \t]*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(.*)", re.DOTALL)
READER_LIMIT = 64 * 1024


def _peer_ip(session: Session | None) -> str:
    peer = session.peer if session is not None else None
    return str(peer[0]) if isinstance(peer, tuple) else "?"


class SmtpProtocol(SMTP):
    """aiosmtpd's protocol with hooks 1-9 of this module; each answers as aiosmtpd does where
    aiosmtpd answers at all (tests compare)."""

    line_length_limit = READER_LIMIT   # hook 1

    # Hook 7 (defaults as class attributes: aiosmtpd's __init__ already calls _set_rset_state).
    first_limit = 0.0          # seconds to log on (or finish the first message); 0: no limit
    transaction_limit = 0.0    # seconds per further message; 0: no limit
    ends_at_logon = False      # submission: a logged-on user has the per-command timeout only
    _deadline = 0.0
    _deadline_timer: asyncio.TimerHandle | None = None
    _in_rset = False

    def __init__(self, handler: Any, *, first_limit: float = 0.0, transaction_limit: float = 0.0,
                 ends_at_logon: bool = False, **kwargs: Any) -> None:
        self.first_limit = first_limit
        self.transaction_limit = transaction_limit
        self.ends_at_logon = ends_at_logon
        super().__init__(handler, **kwargs)

    # -- hooks 2 and 3: addresses -------------------------------------------------------------
    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = PLAIN_PATH.fullmatch(arg) if arg else None
        if match is None or "(" in match.group(2):   # a comment after the path: the parser's job
            try:
                return super()._getaddr(arg)
            except Exception:   # the email parser crashes on some junk ("<", "a@["): malformed
                return None, None
        address = match.group(1)
        if self.local_part_limit and address.rindex("@") > self.local_part_limit:
            return None, None
        return address, match.group(2).lstrip(" \t")

    # -- hook 4: DATA ---------------------------------------------------------------------------
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
            content, refusal = await read_message(self._reader, self.data_size_limit)
        except asyncio.CancelledError:   # the connection went away during DATA (as aiosmtpd)
            log.info("smtp: connection lost during DATA")
            self._writer.close()
            raise
        if refusal is not None:
            await self.push(refusal)
            self._set_post_data_state()
            return
        # aiosmtpd declares bytes; a bytearray is one copy less of a message of up to 25 MB.
        self.envelope.content = self.envelope.original_content = cast(bytes, content)
        del content   # the handler drops the envelope's references once it has what it needs
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    # -- hook 5: the AUTH line limit ---------------------------------------------------------------
    async def challenge_auth(self, challenge: str | bytes, encode_to_b64: bool = True,
                             log_client_response: bool = False) -> Any:
        try:
            return await super().challenge_auth(challenge, encode_to_b64, log_client_response)
        except ValueError:   # an answer line over the reader's limit (asyncio's readline): a reply, not a crash
            await self.push(AUTH_LINE_TOO_LONG)
            return MISSING

    # -- hook 6: one TLS layer ---------------------------------------------------------------------
    @syntax("STARTTLS")
    async def smtp_STARTTLS(self, arg: str) -> None:
        # RFC 3207 §4.2: no second TLS layer, neither after STARTTLS nor on port 465.
        if uses_tls(self):
            await self.push(STARTTLS_TWICE)
            return
        await super().smtp_STARTTLS(arg)   # a failed handshake: see handle_exception

    # -- hook 7: total time limits -----------------------------------------------------------------
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

    def _check_deadline(self) -> None:
        """Hang up on a client that has not logged on or finished its message in time."""
        transport = cast(asyncio.WriteTransport | None, self.transport)
        if transport is None or transport.is_closing():
            return
        if self.ends_at_logon and self.session is not None and self.session.authenticated:
            return
        left = self._deadline - self.loop.time()
        if left > 0:
            self._deadline_timer = self.loop.call_later(left, self._check_deadline)
            return
        events("time limit", logging.INFO, "smtp: %s took too long (no logon or finished message), closing",
               _peer_ip(self.session))
        # RFC 5321 §3.8 / §4.5.3.2: 421 when the server must close the connection.
        transport.write(TIME_LIMIT)
        if transport.get_write_buffer_size():
            transport.abort()   # a client that does not read must not keep a closing transport
        else:
            transport.close()

    # -- hook 8: a broken-off STARTTLS handshake ---------------------------------------------------
    async def handle_exception(self, error: Exception) -> str:
        """A STARTTLS handshake the client broke off is its problem: a rate-limited line, no traceback
        (aiosmtpd then closes the connection itself)."""
        if isinstance(error, TLSSetupException):
            events("starttls failed", logging.INFO, "smtp: TLS negotiation with %s failed: %s",
                   _peer_ip(self.session), error.__cause__ or "handshake failed")
            return TLS_FAILED
        return await super().handle_exception(error)


# -- 10-12: what the handler reads of aiosmtpd's objects -----------------------------------------

def attached(carrier: Session | Envelope, kind: type[T]) -> T:
    """The ``kind`` object this service keeps on aiosmtpd's Session (per connection) or Envelope
    (per message), made on first use."""
    key = f"pop3svc_{kind.__name__}"
    found = vars(carrier).get(key)
    if not isinstance(found, kind):
        found = kind()
        setattr(carrier, key, found)
    return found


def uses_tls(server: SMTP) -> bool:
    """True if the session is encrypted (STARTTLS done, or port 465)."""
    transport = server.transport
    try:
        return transport is not None and transport.get_extra_info("ssl_object") is not None
    except AttributeError:   # a TLS transport already torn down (asyncio's sslproto): no TLS
        return False


def ehlo_lines(responses: list[str], *, mechanisms: list[str]) -> list[str]:
    """aiosmtpd's EHLO lines with our AUTH line in place of its own, ENHANCEDSTATUSCODES and
    PIPELINING; all before its final ``250 HELP``."""
    lines = [r for r in responses if not r[4:].startswith("AUTH")]
    if mechanisms:
        lines.insert(-1, "250-AUTH " + " ".join(mechanisms))
    lines.insert(-1, "250-ENHANCEDSTATUSCODES")
    # RFC 2920: commands are read one line at a time from a buffer and answered in order, and
    # the DATA reader hands back whatever follows the end of the message.
    lines.insert(-1, "250-PIPELINING")
    return lines


# -- 13: aiosmtpd's log ----------------------------------------------------------------------

_SMTP_VERBS = frozenset({b"HELO", b"EHLO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"NOOP", b"QUIT", b"VRFY",
                         b"EXPN", b"HELP", b"STARTTLS"})
_SASL_NAMES = frozenset({b"PLAIN", b"LOGIN", b"CRAM-MD5", b"SCRAM-SHA-256", b"NTLM"})
LOGIN_DATA_WARNING = "Session.login_data is deprecated"


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


class RedactAuth(logging.Filter):
    """On aiosmtpd's logger: only commands reach the log, AUTH without its payload."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(LOGIN_DATA_WARNING):
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


def install_log_filter() -> None:
    """Put RedactAuth on aiosmtpd's logger (once per process, whoever asks)."""
    logger = logging.getLogger(AIOSMTPD_LOG)
    if not any(isinstance(f, RedactAuth) for f in logger.filters):
        logger.addFilter(RedactAuth())


def set_log_level(level: int) -> None:
    """aiosmtpd's logger follows the logging setting (0-3): its line-by-line log only at 3."""
    logging.getLogger(AIOSMTPD_LOG).setLevel(
        logging.INFO if level >= 3 else logging.WARNING if level >= 1 else logging.CRITICAL)
