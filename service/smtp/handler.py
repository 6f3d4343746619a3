"""The aiosmtpd handler: who may send where (RCPT), delivery through the store (DATA), and SASL
over the core auth mechanisms (AUTH). One handler per listener; state per connection lives on
aiosmtpd's ``Session`` and per transaction on its ``Envelope``.

Why the AUTH mechanisms are handler hooks, PLAIN and LOGIN included, rather than aiosmtpd's
``authenticator``: aiosmtpd calls the authenticator synchronously on the event loop, and a
password check is PBKDF2, PAM or an LDAP bind that must run in a worker thread, with the login
throttle's delay awaited first.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import logging
import re
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    Session,
    TLSSetupException,
)

from core.auth.mechanisms import Challenge, Failure, Success, create_mechanism
from core.auth.policy import LogonRules
from core.errors import (
    DiskFull,
    Invalid,
    MailError,
    NotFound,
    QuotaExceeded,
    Unavailable,
)
from core.model import MailboxRef
from service.smtp.policy import Address, LocalMailbox, parse_address, same_address

if TYPE_CHECKING:
    from service.smtp.server import SmtpServer

log = logging.getLogger("service.smtp")

# Replies (RFC 5321 §4.2, enhanced codes RFC 3463).
OK_SENDER = "250 2.1.0 Sender OK"
OK_RCPT = "250 2.1.5 Recipient OK"
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_BAD = "535 5.7.8 Authentication credentials invalid"
AUTH_TEMP = "454 4.7.0 Temporary authentication failure; try again later"
AUTH_TLS = "538 5.7.11 Encryption required for requested authentication mechanism"
AUTH_UNKNOWN = "504 5.5.4 Unrecognized authentication type"
AUTH_NEEDED = "530 5.7.0 Authentication required"
RELAY_DENIED = "554 5.7.1 <{0}>: Relay access denied"
NO_MAILBOX = "550 5.1.1 <{0}>: No such mailbox here"
BAD_ADDRESS = "501 5.1.3 <{0}>: {1}"
QUOTA_FULL_TEMP = "452 4.2.2 <{0}>: Mailbox full, try again later"
QUOTA_FULL_PERM = "552 5.2.2 <{0}>: Mailbox full"
TOO_BIG_FOR_QUOTA = "552 5.2.2 <{0}>: The message is larger than the mailbox's quota"
RATE_LIMITED = "450 4.7.1 Sending limit reached for {0}; try again later"
TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
NOT_YOURS = "553 5.7.1 <{0}>: Sender address not owned by {1}"
TOO_MANY_ERRORS = "421 4.7.0 Too many errors; closing the connection"
BARE_LF = "550 5.6.11 Bare LF or CR in the message (RFC 5321 §2.3.8); send CRLF line ends"
TEMP_ERROR = "451 4.3.0 Local error in processing; try again later"
MAIL_LOOP = "554 5.4.6 Too many hops: the message is looping"
MAX_HOPS = 50   # RFC 5321 §6.3: a Received count this high means a loop
STORE_FULL = "452 4.3.1 Insufficient system storage; try again later"
# RFC 6531 §3.7.4.1: a non-ASCII address without the SMTPUTF8 parameter on MAIL.
NEEDS_SMTPUTF8 = "553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter on MAIL"
BAD_UTF8 = "553 5.6.7 The address is not valid UTF-8"
LOCAL_SENDER = ("550 5.7.1 <{0}>: Sender address in a local domain; local users send through the "
                "submission port with authentication")
FROM_NOT_YOURS = "550 5.7.1 The From: header ({0}) is not an address of {1}"
NO_POSTMASTER = "550 5.1.1 <{0}>: No postmaster mailbox here"

INLINE_SCAN = 256 * 1024   # octets: a bigger message is inspected in a worker thread, ...
SCAN_CHUNK = 1 << 20       # ... one C call per MB, so the event loop never waits long for the GIL
_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
_FROM = re.compile(rb"^from[ \t]*:", re.IGNORECASE | re.MULTILINE)
_FIELD_END = re.compile(rb"\r\n(?![ \t])")   # RFC 5322 §2.2.3: a CRLF not followed by WSP
MAX_FROM_FIELDS = 5
MAX_FROM_OCTETS = 8192     # a longer From: field is not read (and so is not anybody's address)

_SIZE = re.compile(r"^SIZE=(\d+)$", re.IGNORECASE)
SASL_HOOKS = {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "NTLM"}


@dataclass
class Conversation:
    """What this server remembers about one connection (aiosmtpd's Session carries it)."""

    errors: int = 0


@dataclass
class Transaction:
    """The recipients of the current message, sorted into local mailboxes and remote addresses."""

    size_hint: int = 0
    local: list[LocalMailbox] = field(default_factory=list)
    remote: list[Address] = field(default_factory=list)


def conversation(session: Session) -> Conversation:
    conv = getattr(session, "pop3svc", None)
    if conv is None:
        conv = Conversation()
        session.pop3svc = conv  # type: ignore[attr-defined]
    return conv


def transaction(envelope: Envelope) -> Transaction:
    tx = getattr(envelope, "pop3svc", None)
    if tx is None:
        tx = Transaction()
        envelope.pop3svc = tx  # type: ignore[attr-defined]
    return tx


def uses_tls(server: SMTP) -> bool:
    transport = server.transport
    try:
        return transport is not None and transport.get_extra_info("ssl_object") is not None
    except AttributeError:   # a TLS transport already torn down (asyncio's sslproto): no TLS
        return False


def client_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


def principal(session: Session) -> MailboxRef | None:
    data = session.auth_data if session.authenticated else None
    return data if isinstance(data, MailboxRef) else None


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


@dataclass(frozen=True)
class MessageFacts:
    """What delivery needs to know of a message's text, found without parsing it into objects."""

    bare_line_end: bool
    hops: int                  # Received: fields in the header (counted up to MAX_HOPS)
    from_fields: list[str]     # the From: field bodies, unfolded (up to MAX_FROM_FIELDS + 1)


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


_DATE_CACHE: list = [0, ""]


def _trace_date() -> str:
    """The RFC 5322 date for trace headers, formatted once per second (formatdate is slow)."""
    now = int(time.time())
    if _DATE_CACHE[0] != now:
        _DATE_CACHE[:] = [now, email.utils.formatdate(now, localtime=True)]
    return _DATE_CACHE[1]


def received_header(*, helo: str, ip: str, hostname: str, protocol: str, queue_id: str,
                    recipients: list[str]) -> bytes:
    """RFC 5321 §4.4 trace header; ``for`` only with a single recipient (no list disclosed)."""
    date = _trace_date()
    helo = "".join(ch for ch in helo if ch.isprintable() and ch not in "()\\")[:255] or "unknown"
    target = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
    return (f"Received: from {helo} ([{ip}])\r\n\tby {hostname} (POP3 Service) with {protocol} id {queue_id}"
            f"{target};\r\n\t{date}\r\n").encode("utf-8", "replace")


class SmtpHandler:
    """The handler for one listener (``smtp`` 25, ``submission`` 587 or ``smtps`` 465)."""

    def __init__(self, service: SmtpServer, listener: str) -> None:
        self.service = service
        self.settings = service.settings
        self.counters = service.counters
        self.workers = service.workers
        self.auth = service.auth
        self.throttle = service.throttle
        self.listener = listener
        # RFC 6409 §4.3: the submission ports take mail only from authenticated users.
        self.submission = listener in ("submission", "smtps")
        self.sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()   # told 421 at shutdown

    # -- helpers --------------------------------------------------------------------------
    def _refuse(self, server: SMTP, session: Session, reply: str) -> str:
        """Count a refused command; past the budget, say goodbye and hang up."""
        conv = conversation(session)
        conv.errors += 1
        self.counters.incr("smtp_refused")
        if conv.errors >= int(self.settings.get("smtp_error_budget")):
            log.warning("smtp %s: %s made %d refused commands; disconnecting", self.listener,
                        client_ip(session), conv.errors)
            transport = server.transport
            if transport is not None:
                server.loop.call_soon(transport.close)   # after the reply below is written
            return TOO_MANY_ERRORS
        return reply

    def rules(self, server: SMTP) -> LogonRules:
        """The logon rules on this connection (SPA, TLS for every logon, trusted networks)."""
        return LogonRules.for_connection(self.settings.get, tls=uses_tls(server), address=client_ip(server.session))

    def mechanisms(self, server: SMTP) -> list[str]:
        return [m for m in self.rules(server).mechanisms(self.auth.provider) if m in SASL_HOOKS]

    # -- EHLO: AUTH ourselves (aiosmtpd hides it on port 465, its issue #281), PIPELINING --
    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        lines = [r for r in responses if not r[4:].startswith("AUTH")]
        mechs = self.mechanisms(server)
        if mechs:
            lines.insert(-1, "250-AUTH " + " ".join(mechs))
        lines.insert(-1, "250-ENHANCEDSTATUSCODES")
        # RFC 2920: commands are read one line at a time from a buffer and answered in order, and
        # the DATA reader hands back whatever follows the end of the message.
        lines.insert(-1, "250-PIPELINING")
        return lines

    # -- AUTH -----------------------------------------------------------------------------
    async def handle_AUTH(self, server: SMTP, session: Session, envelope: Envelope, args: list[str]) -> Any:
        mechanism = args[0].upper() if args else ""
        allowed = self.mechanisms(server)
        if mechanism in allowed:
            return MISSING
        if mechanism in SASL_HOOKS and not uses_tls(server):
            # RFC 4954 §6: 538 when the mechanism would be accepted inside TLS.
            rules = self.rules(server)
            if not rules.any_logon or (mechanism in ("PLAIN", "LOGIN") and not rules.plaintext):
                return AUTH_TLS
        return AUTH_UNKNOWN

    async def _sasl(self, server: SMTP, name: str, args: list[str]) -> AuthResult:
        ip = client_ip(server.session)
        try:
            mechanism = create_mechanism(name, self.auth.provider, hostname=self.settings.hostname)
        except Invalid:
            await server.push(AUTH_UNKNOWN)
            return AuthResult(success=False, handled=True)
        initial: bytes | None = None
        if len(args) > 1:
            if args[1] == "=":
                initial = b""
            else:
                try:
                    initial = base64.b64decode(args[1], validate=True)
                except (binascii.Error, ValueError):
                    await server.push("501 5.5.2 Cannot decode the base64 data")
                    return AuthResult(success=False, handled=True)
        step = await self.workers.run_auth(mechanism.start, initial)
        while isinstance(step, Challenge):
            answer = await server.challenge_auth(step.data, encode_to_b64=True)
            if answer is MISSING:   # '*' or bad base64: aiosmtpd has replied already
                return AuthResult(success=False, handled=True)
            step = await self.workers.run_auth(mechanism.step, answer)
        throttle = self.throttle
        if isinstance(step, Success):
            who = step.principal
            if throttle is not None and throttle.is_login_banned(who.address, ip):
                step = Failure("login temporarily banned", who.address)
            else:
                if throttle is not None:
                    await throttle.success(ip, who.address)
                self.counters.incr("smtp_logons")
                log.info("smtp %s: %s authenticated as %s (%s)", self.listener, ip, who.address, name)
                message = AUTH_OK
                if step.final:   # RFC 4954 §4: data sent with success goes in a 334, answered empty
                    final = await server.challenge_auth(step.final, encode_to_b64=True)
                    if final is MISSING:
                        return AuthResult(success=False, handled=True)
                return AuthResult(success=True, auth_data=who, message=message)
        assert isinstance(step, Failure)
        self.counters.incr("smtp_logon_failures")
        log.warning("smtp %s: failed logon from %s as %r (%s): %s", self.listener, ip, step.login or "",
                    name, step.reason)
        if step.temporary:
            return AuthResult(success=False, handled=False, message=AUTH_TEMP)
        if throttle is not None:
            await throttle.delay(ip, step.login)
            await throttle.failure(ip, step.login)
        conversation(server.session).errors += 1
        return AuthResult(success=False, handled=False, message=AUTH_BAD)

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._sasl(server, "PLAIN", args)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._sasl(server, "LOGIN", args)

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._sasl(server, "CRAM-MD5", args)

    async def auth_SCRAM__SHA__256(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._sasl(server, "SCRAM-SHA-256", args)

    async def auth_NTLM(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._sasl(server, "NTLM", args)

    # -- MAIL -----------------------------------------------------------------------------
    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        user = principal(session)
        if self.submission and user is None:
            return self._refuse(server, session, AUTH_NEEDED)
        reply = address_charset_reply(address, smtputf8="SMTPUTF8" in mail_options)
        if reply:
            return self._refuse(server, session, reply)
        sender = "" if address == "<>" else address
        if user is not None and self.settings.get("sender_must_match") and not same_address(sender, user.address):
            log.warning("smtp %s: %s tried to send as <%s>", self.listener, user.address, sender)
            return self._refuse(server, session, NOT_YOURS.format(sender, user.address))
        if user is None and sender and await self._forged_local_sender(session, sender):
            log.info("smtp %s: %s refused as local sender <%s> without AUTH", self.listener,
                     client_ip(session), sender)
            return self._refuse(server, session, LOCAL_SENDER.format(sender))
        tx = transaction(envelope)
        for option in mail_options:
            match = _SIZE.match(option)
            if match:
                tx.size_hint = int(match.group(1))
        envelope.mail_from = sender or "<>"
        envelope.mail_options.extend(mail_options)
        return OK_SENDER

    async def _forged_local_sender(self, session: Session, sender: str) -> bool:
        """True if an unauthenticated client outside the relay networks claims a local domain
        as its envelope sender on port 25 (our own users submit with AUTH)."""
        if self.listener != "smtp" or not self.settings.get("reject_local_senders"):
            return False
        try:
            parsed = parse_address(sender)
        except Invalid:
            return False
        if parsed.is_literal or not await self.service.directory.is_local(parsed.domain):
            return False
        return not self.service.relay.may_relay(client_ip(session), authenticated=False)

    # -- RCPT: every recipient is judged here, so nothing is refused after DATA ----------
    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        tx = transaction(envelope)
        if len(envelope.rcpt_tos) >= int(self.settings.get("max_recipients")):
            return TOO_MANY_RCPTS
        reply = address_charset_reply(address, smtputf8=bool(envelope.smtp_utf8))
        if reply:
            return self._refuse(server, session, reply)
        directory = self.service.directory
        if address.lower() == "postmaster":   # RFC 5321 §4.5.1: accepted without a domain
            parsed = None
        else:
            try:
                parsed = parse_address(address)
            except Invalid as exc:
                return self._refuse(server, session, BAD_ADDRESS.format(address, exc.message))
        user = principal(session)
        if parsed is None or (not parsed.is_literal and await directory.is_local(parsed.domain)):
            box = await directory.mailbox(parsed) if parsed is not None else None
            if box is None and (parsed is None or parsed.local.lower() == "postmaster"):
                box = await directory.postmaster(parsed.domain if parsed is not None else None)
                if box is None:
                    return self._refuse(server, session, NO_POSTMASTER.format(address))
            if box is None:
                return self._refuse(server, session, NO_MAILBOX.format(address))
            reply = await self._quota_reply(box, tx.size_hint, address)
            if reply:
                return self._refuse(server, session, reply)
            if user is not None and not self.service.sending_limit.allow(user.address):
                return self._refuse(server, session, RATE_LIMITED.format(user.address))
            if all(b.id != box.id for b in tx.local):
                tx.local.append(box)
        else:
            if not self.service.relay.may_relay(client_ip(session), authenticated=user is not None):
                log.info("smtp %s: relay from %s to <%s> denied", self.listener, client_ip(session), address)
                return self._refuse(server, session, RELAY_DENIED.format(address))
            if user is not None and not self.service.sending_limit.allow(user.address):
                return self._refuse(server, session, RATE_LIMITED.format(user.address))
            tx.remote.append(parsed)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return OK_RCPT

    async def _quota_reply(self, box: LocalMailbox, size: int, address: str) -> str | None:
        """452 4.2.2 / 552 5.2.2 when the mailbox cannot take a message of ``size`` bytes."""
        quota = box.quota_bytes
        if quota is None:
            return None
        if size > quota:
            return TOO_BIG_FOR_QUOTA.format(address)
        used = await self.service.directory.usage(box.id)
        if used + max(size, 1) > quota:
            return (QUOTA_FULL_TEMP if self.settings.get("quota_full_tempfail") else QUOTA_FULL_PERM).format(address)
        return None

    def goodbye(self, reply: bytes) -> None:
        """Shutdown: say ``reply`` (a 421) to every open session and close it (RFC 5321 §3.8)."""
        for server in list(self.sessions):
            transport = server.transport
            if transport is None or transport.is_closing():
                continue
            with contextlib.suppress(Exception):
                transport.write(reply)
                transport.close()

    # -- DATA -----------------------------------------------------------------------------
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        # The protocol holds the message only in the envelope: once ``data`` below is built, the
        # envelope lets go, so a big message is in memory about once (twice while copied).
        envelope.content = envelope.original_content = None
        user = principal(session)
        # The header rule rides on the envelope rule: an account allowed to send as anybody (a
        # relay account of another server, sender_must_match off) may carry anybody's From: too.
        want_from = (user is not None and bool(self.settings.get("sender_must_match"))
                     and bool(self.settings.get("from_must_match")))
        if len(content) > INLINE_SCAN:
            facts = await self.workers.run(inspect_message, content, want_from=want_from)
        else:
            facts = inspect_message(content, want_from=want_from)
        if facts.bare_line_end:
            log.warning("smtp %s: message from %s refused: bare LF/CR", self.listener, client_ip(session))
            return self._refuse(server, session, BARE_LF)
        if facts.hops >= MAX_HOPS:
            return self._refuse(server, session, MAIL_LOOP)
        if want_from:
            assert user is not None
            strangers = [a for a in from_addresses(facts.from_fields) if not same_address(a, user.address)]
            if strangers or len(facts.from_fields) > MAX_FROM_FIELDS:
                shown = ", ".join(f"<{a}>" if a else "unreadable" for a in strangers[:3]) or "too many fields"
                # RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; and nothing unprintable.
                shown = "".join(ch if ch.isprintable() else "?" for ch in shown[:200])
                log.warning("smtp %s: %s sent a message with From: %s", self.listener, user.address, shown)
                return self._refuse(server, session, FROM_NOT_YOURS.format(shown, user.address))
        tx = transaction(envelope)
        tls = uses_tls(server)
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if session.extended_smtp:
            protocol += "S" if tls else ""
            protocol += "A" if user is not None else ""
        queue_id = self.service.queue.new_id()
        trace = received_header(helo=session.host_name or "", ip=client_ip(session),
                                hostname=self.service.hostname, protocol=protocol, queue_id=queue_id,
                                recipients=list(envelope.rcpt_tos))
        if len(content) > INLINE_SCAN:
            data = await self.workers.run(b"".join, (trace, content))
        else:
            data = b"".join((trace, content))
        del content
        sender = "" if envelope.mail_from == "<>" else envelope.mail_from
        return await self.service.accept(data, sender=sender, local=tx.local, remote=tx.remote, queue_id=queue_id,
                                         submitted_by=user.address if user else "", client=client_ip(session))

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):   # aiosmtpd then closes the connection itself
            log.info("smtp %s: STARTTLS handshake failed: %r", self.listener, error.__cause__ or error)
            return TEMP_ERROR
        log.exception("smtp %s: unexpected error", self.listener)
        return TEMP_ERROR


def address_charset_reply(address: str, *, smtputf8: bool) -> str | None:
    """553 5.6.7 for a non-ASCII address without SMTPUTF8 (RFC 6531 §3.7.4.1) or one that is
    not UTF-8 at all (aiosmtpd hands such octets on as surrogates); None if it is fine."""
    if address.isascii():
        return None
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return BAD_UTF8
    return None if smtputf8 else NEEDS_SMTPUTF8


def delivery_reply(exc: MailError, *, tempfail: bool = True) -> str:
    """The DATA reply for a store refusal; ``tempfail`` is the quota_full_tempfail setting."""
    if isinstance(exc, QuotaExceeded):
        permanent = exc.permanent or not tempfail
        return "552 5.2.2 Mailbox full" if permanent else "452 4.2.2 Mailbox full, try again later"
    if isinstance(exc, DiskFull):   # RFC 3463 4.3.1: a full disk, not any other trouble (issue 14)
        return STORE_FULL
    if isinstance(exc, Unavailable):   # e.g. the database's write lock held too long: just try again
        return TEMP_ERROR
    if isinstance(exc, NotFound):
        return "450 4.1.1 A recipient's mailbox was just removed; try again"
    return TEMP_ERROR
