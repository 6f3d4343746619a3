"""What this server keeps per SMTP connection and per message, on aiosmtpd's Session and Envelope,
and what it reads of them: the client's address and the logged-on mailbox."""
from __future__ import annotations

from dataclasses import dataclass, field

from aiosmtpd.smtp import Envelope, Session

from core.model import MailboxRef
from service.smtp.aiosmtpd_hooks import attached
from service.smtp.policy import Address, LocalMailbox


@dataclass
class Conversation:
    """One connection: refused commands so far (past the smtp_error_budget setting: hang up)."""

    errors: int = 0


@dataclass
class Transaction:
    """The recipients of the current message, sorted into local mailboxes and remote addresses."""

    size_hint: int = 0
    local: list[LocalMailbox] = field(default_factory=list)
    remote: list[Address] = field(default_factory=list)


def conversation(session: Session) -> Conversation:
    return attached(session, Conversation)


def transaction(envelope: Envelope) -> Transaction:
    return attached(envelope, Transaction)


def client_ip(session: Session | None) -> str:
    peer = session.peer if session is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


def principal(session: Session) -> MailboxRef | None:
    """The mailbox the client logged on as, if it did."""
    data = session.auth_data if session.authenticated else None
    return data if isinstance(data, MailboxRef) else None
