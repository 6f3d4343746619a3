"""Plain frozen values that cross threads and the admin channel; never ORM objects.

``core`` hands these out; the admin channel alone turns them into JSON (core.ipc.wire.to_wire),
field by field in declaration order, so a value's fields are its wire keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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


# -- what the administration operations (core.admin) answer and announce -------------------------

@dataclass(frozen=True)
class DomainPage:
    """One page of the domain list (``total`` counts every match, not just this page)."""

    total: int
    offset: int
    items: tuple[DomainInfo, ...]


@dataclass(frozen=True)
class MailboxPage:
    """One page of a domain's mailboxes."""

    total: int
    offset: int
    domain: str
    items: tuple[MailboxInfo, ...]


@dataclass(frozen=True)
class DomainDeleted:
    """A deleted domain (the answer to domain.delete and its event)."""

    name: str


@dataclass(frozen=True)
class MailboxDeleted:
    """A deleted mailbox, as the mailbox.deleted event names it."""

    address: str
    domain: str
    name: str


@dataclass(frozen=True)
class MailboxAddress:
    """The mailbox an operation changed or removed (mailbox.delete, mailbox.set_password)."""

    address: str


@dataclass(frozen=True)
class SettingChanged:
    """A stored setting's new value as people may see it (a secret shows as "(set)"), and its
    new version (core.settings: a property sheet compares it with the version it read)."""

    name: str
    value: object
    version: int = 0


@dataclass(frozen=True)
class SettingChange:
    """The answer to settings.set: the value as shown, and what a change needs to take effect."""

    name: str
    value: object
    restart: str | None
    version: int = 0


@dataclass(frozen=True)
class SettingsSnapshot:
    """Every setting as people may see it, with its version: what a property sheet starts from."""

    values: dict[str, object]
    versions: dict[str, int]


@dataclass(frozen=True)
class MailrootMove:
    """The answer to moving the root mail directory: what the new folder was found to hold."""

    name: str
    value: str
    restart: str | None
    messages: int
    mailboxes: int
    domains: int
    version: int = 0


@dataclass(frozen=True)
class ServerStat:
    """Totals for the whole server, from the counters, with every domain's line."""

    domains: int
    mailboxes: int
    messages: int
    bytes: int
    items: tuple[DomainInfo, ...]


@dataclass(frozen=True)
class DomainStat:
    """Totals for one domain, from its counters, with every mailbox's line."""

    domain: str
    mailboxes: int
    messages: int
    bytes: int
    locked: bool
    items: tuple[MailboxInfo, ...]


@dataclass(frozen=True)
class AuditRecord:
    """One audit log entry: who did what to what, when, and how it ended."""

    at: datetime
    actor: str
    op: str
    target: str
    detail: str
    outcome: str


@dataclass(frozen=True)
class AuditPage:
    """The newest audit entries, newest first."""

    items: tuple[AuditRecord, ...]


@dataclass(frozen=True)
class ImportSummary:
    """What an import of a Windows POP3 Service mail root did."""

    domains: int
    mailboxes: int
    messages: int
    skipped: int
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Migration:
    """What moving one password-file mailbox to a directory entry did (core.auth.migration)."""

    address: str
    entry: str
    created: bool
    password_carried: bool
    remaining: int
    switched: bool
