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
import email.utils
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, AuthResult, Envelope, Session, SMTP

from core.auth.mechanisms import Challenge, Failure, Success, create_mechanism
from core.errors import DiskFull, Invalid, MailError, NotFound, QuotaExceeded, Unavailable
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
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def client_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


def principal(session: Session) -> MailboxRef | None:
    data = session.auth_data if session.authenticated else None
    return data if isinstance(data, MailboxRef) else None


def has_bare_line_end(data: bytes) -> bool:
    """True if ``data`` holds a LF without CR or a CR without LF: the SMTP smuggling vector
    (CVE-2024-27305 class), refused rather than repaired."""
    crlf = data.count(b"\r\n")   # counting runs at C speed; the regex is the slow way to say it
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


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
        self.ctx = service.ctx
        self.listener = listener
        # RFC 6409 §4.3: the submission ports take mail only from authenticated users.
        self.submission = listener in ("submission", "smtps")

    # -- helpers --------------------------------------------------------------------------
    def _refuse(self, server: SMTP, session: Session, reply: str) -> str:
        """Count a refused command; past the budget, say goodbye and hang up."""
        conv = conversation(session)
        conv.errors += 1
        self.ctx.stats.incr("smtp_refused")
        if conv.errors >= int(self.ctx.setting("smtp_error_budget")):
            log.warning("smtp %s: %s made %d refused commands; disconnecting", self.listener,
                        client_ip(session), conv.errors)
            transport = server.transport
            if transport is not None:
                server.loop.call_soon(transport.close)   # after the reply below is written
            return TOO_MANY_ERRORS
        return reply

    def mechanisms(self, server: SMTP) -> list[str]:
        if self.ctx.auth is None:
            return []
        offered = self.ctx.auth.mechanisms(tls=uses_tls(server), spa_required=bool(self.ctx.setting("sparequired")))
        return [m for m in offered if m in SASL_HOOKS]

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
        if mechanism in ("PLAIN", "LOGIN") and not uses_tls(server):
            return AUTH_TLS
        return AUTH_UNKNOWN

    async def _sasl(self, server: SMTP, name: str, args: list[str]) -> AuthResult:
        ctx = self.ctx
        ip = client_ip(server.session)
        try:
            mechanism = create_mechanism(name, ctx.auth, hostname=ctx.hostname)
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
        step = await ctx.run_auth(mechanism.start, initial)
        while isinstance(step, Challenge):
            answer = await server.challenge_auth(step.data, encode_to_b64=True)
            if answer is MISSING:   # '*' or bad base64: aiosmtpd has replied already
                return AuthResult(success=False, handled=True)
            step = await ctx.run_auth(mechanism.step, answer)
        throttle = ctx.throttle
        if isinstance(step, Success):
            who = step.principal
            if throttle is not None and throttle.is_login_banned(who.address, ip):
                step = Failure("login temporarily banned", who.address)
            else:
                if throttle is not None:
                    await throttle.success(ip, who.address)
                ctx.stats.incr("smtp_logons")
                log.info("smtp %s: %s authenticated as %s (%s)", self.listener, ip, who.address, name)
                message = AUTH_OK
                if step.final:   # RFC 4954 §4: data sent with success goes in a 334, answered empty
                    final = await server.challenge_auth(step.final, encode_to_b64=True)
                    if final is MISSING:
                        return AuthResult(success=False, handled=True)
                return AuthResult(success=True, auth_data=who, message=message)
        assert isinstance(step, Failure)
        ctx.stats.incr("smtp_logon_failures")
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
        sender = "" if address == "<>" else address
        if user is not None and self.ctx.setting("sender_must_match") and not same_address(sender, user.address):
            log.warning("smtp %s: %s tried to send as <%s>", self.listener, user.address, sender)
            return self._refuse(server, session, NOT_YOURS.format(sender, user.address))
        tx = transaction(envelope)
        for option in mail_options:
            match = _SIZE.match(option)
            if match:
                tx.size_hint = int(match.group(1))
        envelope.mail_from = sender or "<>"
        envelope.mail_options.extend(mail_options)
        return OK_SENDER

    # -- RCPT: every recipient is judged here, so nothing is refused after DATA ----------
    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        tx = transaction(envelope)
        if len(envelope.rcpt_tos) >= int(self.ctx.setting("max_recipients")):
            return TOO_MANY_RCPTS
        try:
            parsed = parse_address(address)
        except Invalid as exc:
            return self._refuse(server, session, BAD_ADDRESS.format(address, exc.message))
        user = principal(session)
        directory = self.service.directory
        if not parsed.is_literal and await directory.is_local(parsed.domain):
            box = await directory.mailbox(parsed)
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
            return (QUOTA_FULL_TEMP if self.ctx.setting("quota_full_tempfail") else QUOTA_FULL_PERM).format(address)
        return None

    # -- DATA -----------------------------------------------------------------------------
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if has_bare_line_end(content):
            log.warning("smtp %s: message from %s refused: bare LF/CR", self.listener, client_ip(session))
            return self._refuse(server, session, BARE_LF)
        head_end = content.find(b"\r\n\r\n")
        if content[: head_end if head_end >= 0 else None].lower().count(b"received:") >= MAX_HOPS:
            return self._refuse(server, session, MAIL_LOOP)
        tx = transaction(envelope)
        user = principal(session)
        tls = uses_tls(server)
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if session.extended_smtp:
            protocol += "S" if tls else ""
            protocol += "A" if user is not None else ""
        queue_id = self.service.queue.new_id()
        data = received_header(helo=session.host_name or "", ip=client_ip(session),
                               hostname=self.service.hostname, protocol=protocol, queue_id=queue_id,
                               recipients=list(envelope.rcpt_tos)) + content
        sender = "" if envelope.mail_from == "<>" else envelope.mail_from
        return await self.service.accept(data, sender=sender, local=tx.local, remote=tx.remote, queue_id=queue_id,
                                         submitted_by=user.address if user else "", client=client_ip(session))

    async def handle_exception(self, error: Exception) -> str:
        log.exception("smtp %s: unexpected error", self.listener)
        return TEMP_ERROR


def delivery_reply(exc: MailError) -> str:
    """The DATA reply for a store refusal."""
    if isinstance(exc, QuotaExceeded):
        return "552 5.2.2 Mailbox full" if exc.permanent else "452 4.2.2 Mailbox full, try again later"
    if isinstance(exc, DiskFull):   # RFC 3463 4.3.1: a full disk, not any other trouble (issue 14)
        return STORE_FULL
    if isinstance(exc, Unavailable):   # e.g. the database's write lock held too long: just try again
        return TEMP_ERROR
    if isinstance(exc, NotFound):
        return "450 4.1.1 A recipient's mailbox was just removed; try again"
    return TEMP_ERROR
