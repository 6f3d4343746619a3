"""The aiosmtpd handler of one listener: its hooks apply the policy (who may send where) at MAIL
and RCPT, so nothing is refused after DATA; hand AUTH to the authenticator; and at DATA check
the message and hand it to the intake (queue and store). Every refusal is a reply, counted
against the connection's error budget.

State per connection lives on aiosmtpd's ``Session`` and per message on its ``Envelope``
(service/smtp/session.py).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from core.errors import Invalid
from service.counters import Counters
from service.live_settings import SettingsReader
from service.smtp.aiosmtpd_hooks import ehlo_lines, uses_tls
from service.smtp.authenticator import SaslAuthenticator
from service.smtp.intake import MessageIntake
from service.smtp.message import (
    INLINE_SCAN,
    MAX_FROM_FIELDS,
    MAX_HOPS,
    from_addresses,
    inspect_message,
    received_header,
)
from service.smtp.policy import Directory, LocalMailbox, RelayPolicy, SendingLimit, parse_address, same_address
from service.smtp.queue import new_queue_id
from service.smtp.replies import (
    AUTH_NEEDED,
    BAD_ADDRESS,
    BAD_UTF8,
    BARE_LF,
    FROM_NOT_YOURS,
    LOCAL_SENDER,
    MAIL_LOOP,
    NEEDS_SMTPUTF8,
    NO_MAILBOX,
    NO_POSTMASTER,
    NOT_YOURS,
    OK_RCPT,
    OK_SENDER,
    QUOTA_FULL_PERM,
    QUOTA_FULL_TEMP,
    RATE_LIMITED,
    RELAY_DENIED,
    TEMP_ERROR,
    TOO_BIG_FOR_QUOTA,
    TOO_MANY_ERRORS,
    TOO_MANY_RCPTS,
)
from service.smtp.session import client_ip, conversation, principal, transaction
from service.workers import Workers

log = logging.getLogger("service.smtp")

_SIZE = re.compile(r"^SIZE=(\d+)$", re.IGNORECASE)


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


class SmtpHandler:
    """The handler for one listener (``smtp`` 25, ``submission`` 587 or ``smtps`` 465)."""

    def __init__(self, listener: str, *, settings: SettingsReader, counters: Counters, workers: Workers,
                 authenticator: SaslAuthenticator, directory: Directory, relay: RelayPolicy,
                 sending_limit: SendingLimit, intake: MessageIntake, hostname: Callable[[], str]) -> None:
        self.listener = listener
        self.settings = settings
        self.counters = counters
        self.workers = workers
        self.authenticator = authenticator
        self.directory = directory
        self.relay = relay
        self.sending_limit = sending_limit
        self.intake = intake
        self.hostname = hostname   # for the Received: field; follows the hostname setting
        # RFC 6409 §4.3: the submission ports take mail only from authenticated users.
        self.submission = listener in ("submission", "smtps")

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

    # -- EHLO: AUTH ourselves (aiosmtpd hides it on port 465, its issue #281), PIPELINING --
    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return ehlo_lines(responses, mechanisms=self.authenticator.mechanisms(server))

    # -- AUTH -----------------------------------------------------------------------------
    async def handle_AUTH(self, server: SMTP, session: Session, envelope: Envelope, args: list[str]) -> object:
        refusal = self.authenticator.refusal(server, args[0] if args else "")
        return MISSING if refusal is None else refusal

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self.authenticator.authenticate(server, "PLAIN", args)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self.authenticator.authenticate(server, "LOGIN", args)

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self.authenticator.authenticate(server, "CRAM-MD5", args)

    async def auth_SCRAM__SHA__256(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self.authenticator.authenticate(server, "SCRAM-SHA-256", args)

    async def auth_NTLM(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self.authenticator.authenticate(server, "NTLM", args)

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
        if parsed.is_literal or not await self.directory.is_local(parsed.domain):
            return False
        return not self.relay.may_relay(client_ip(session), authenticated=False)

    # -- RCPT: every recipient is judged here, so nothing is refused after DATA ----------
    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        tx = transaction(envelope)
        if len(envelope.rcpt_tos) >= int(self.settings.get("max_recipients")):
            return TOO_MANY_RCPTS
        reply = address_charset_reply(address, smtputf8=bool(envelope.smtp_utf8))
        if reply:
            return self._refuse(server, session, reply)
        directory = self.directory
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
            if user is not None and not self.sending_limit.allow(user.address):
                return self._refuse(server, session, RATE_LIMITED.format(user.address))
            if all(b.id != box.id for b in tx.local):
                tx.local.append(box)
        else:
            if not self.relay.may_relay(client_ip(session), authenticated=user is not None):
                log.info("smtp %s: relay from %s to <%s> denied", self.listener, client_ip(session), address)
                return self._refuse(server, session, RELAY_DENIED.format(address))
            if user is not None and not self.sending_limit.allow(user.address):
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
        used = await self.directory.usage(box.id)
        if used + max(size, 1) > quota:
            return (QUOTA_FULL_TEMP if self.settings.get("quota_full_tempfail") else QUOTA_FULL_PERM).format(address)
        return None

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
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if session.extended_smtp:
            protocol += "S" if uses_tls(server) else ""
            protocol += "A" if user is not None else ""
        queue_id = new_queue_id()
        trace = received_header(helo=session.host_name or "", ip=client_ip(session), hostname=self.hostname(),
                                protocol=protocol, queue_id=queue_id, recipients=list(envelope.rcpt_tos))
        if len(content) > INLINE_SCAN:
            data = await self.workers.run(b"".join, (trace, content))
        else:
            data = b"".join((trace, content))
        del content
        sender = "" if envelope.mail_from == "<>" else (envelope.mail_from or "")
        return await self.intake.accept(data, sender=sender, local=tx.local, remote=tx.remote, queue_id=queue_id,
                                        submitted_by=user.address if user else "", client=client_ip(session))

    async def handle_exception(self, error: Exception) -> str:
        """Anything unexpected: logged with its traceback, a 451 for the client. (A broken-off
        STARTTLS handshake never gets here: aiosmtpd_hooks, hook 8.)"""
        log.exception("smtp %s: unexpected error", self.listener)
        return TEMP_ERROR
