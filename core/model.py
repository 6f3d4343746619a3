"""Plain frozen values that cross threads and the admin channel; never ORM objects."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def to_json(value: Any) -> Any:
    """A dataclass (or list of them) as JSON-ready data; datetimes as ISO 8601 text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class DomainInfo:
    """A domain as the console's domain list shows it."""

    name: str            # stored (IDNA, ASCII) form
    display_name: str    # Unicode form for people
    locked: bool
    mailbox_count: int
    message_count: int
    total_bytes: int


@dataclass(frozen=True)
class MailboxInfo:
    """A mailbox as the console's mailbox list shows it."""

    name: str
    domain: str
    address: str
    locked: bool             # the mailbox's own lock
    domain_locked: bool      # its domain is locked (so it cannot log on either)
    message_count: int
    total_bytes: int
    quota_bytes: int | None
    has_user: bool


@dataclass(frozen=True)
class MessageInfo:
    """One indexed message: POP3 size (CRLF line ends), stable UIDL, file under the Maildir."""

    id: int
    uidl: str
    size: int
    path: str
    arrived_at: datetime


@dataclass(frozen=True)
class MailboxRef:
    """What a protocol session needs to know about a mailbox after logon."""

    id: int
    name: str
    domain: str
    address: str
    locked: bool
    domain_locked: bool
    path: str   # the Maildir folder


@dataclass(frozen=True)
class DeliveryResult:
    """Where one delivery went."""

    mailbox_id: int
    message_id: int
    uidl: str
    size: int


@dataclass(frozen=True)
class ReconcileReport:
    """What the start-up reconcile found and repaired."""

    mailboxes_checked: int = 0
    orphans_indexed: int = 0
    missing_dropped: int = 0
    tombstones_finished: int = 0
    tmp_removed: int = 0
    deletions_finished: int = 0
    deletions_rolled_back: int = 0
    files_refound: int = 0    # rows whose file a mail reader renamed (new/X → cur/X:2,S): they follow it
    problems: int = 0         # entries it could not fix (MailStore.problems lists them)
