"""The database schema as typed SQLAlchemy mappings. Migrations in core/migrations follow it.

Nothing here is SQLite-only: the same tables run on PostgreSQL.
"""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Setting(Base):
    """One server property (DESIGN §4), its value as JSON text, and its version: 1 when first
    stored, one more with every change of the value, so a property sheet that read version n can
    tell whether someone changed it since (a setting without a row is at version 0)."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class Domain(Base):
    """An e-mail domain with its counters, kept in the same transaction as the message index."""

    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    mailbox_count: Mapped[int] = mapped_column(Integer, default=0)
    message_count: Mapped[int] = mapped_column(BigInteger, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)

    mailboxes: Mapped[list[Mailbox]] = relationship(
        back_populates="domain", cascade="all, delete-orphan", passive_deletes=True
    )


class Mailbox(Base):
    """A mailbox: one Maildir under <mail root>/<domain>/<name>, with its counters and quota."""

    __tablename__ = "mailboxes"
    __table_args__ = (UniqueConstraint("domain_id", "name", name="uq_mailbox_domain_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    message_count: Mapped[int] = mapped_column(BigInteger, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    has_user: Mapped[bool] = mapped_column(Boolean, default=False)

    domain: Mapped[Domain] = relationship(back_populates="mailboxes")


class Credential(Base):
    """Password-file credentials of a mailbox: never the password in clear (DESIGN §6)."""

    __tablename__ = "credentials"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    scram_salt: Mapped[bytes] = mapped_column(LargeBinary)
    scram_iterations: Mapped[int] = mapped_column(Integer)
    scram_stored_key: Mapped[bytes] = mapped_column(LargeBinary)
    scram_server_key: Mapped[bytes] = mapped_column(LargeBinary)
    # The password-equivalent for APOP / CRAM-MD5 / NTLM, encrypted under the server key.
    secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Message(Base):
    """The index row of one stored message; ``size`` is its POP3 size (CRLF line ends)."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "uidl", name="uq_message_mailbox_uidl"),
        Index("ix_message_mailbox_id_id", "mailbox_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    uidl: Mapped[str] = mapped_column(String(70))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    arrived_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set in the transaction that removes the message from the counters, before its file is
    # unlinked; the row goes once the file is gone (reconcile finishes what a crash interrupted).
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditEntry(Base):
    """Who changed what, when, through the admin channel; refusals included, passwords never."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    op: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(320), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(32))


class SessionLock(Base):
    """One POP3 session per mailbox (RFC 1939 §8 / [IN-USE]), held across nodes by a lease."""

    __tablename__ = "session_locks"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))      # node id + session id
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Ban(Base):
    """A temporary ban of an address or a login name after repeated failed logons."""

    __tablename__ = "bans"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_ban_kind_value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))         # "address" or "login"
    value: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(255), default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


# --- SMTP (issue 4): the outgoing queue -------------------------------------------------------
# One row per queued message (its content is a spool file under <data dir>/queue/) and one row
# per recipient with its own retry state, so a message to several domains retries each alone.


class QueuedMessage(Base):
    """A message waiting for remote delivery; ``sender`` is '' for reports (the null sender)."""

    __tablename__ = "smtp_queue"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    queue_id: Mapped[str] = mapped_column(String(40), unique=True)   # also the spool file's name
    sender: Mapped[str] = mapped_column(String(320), default="")
    size: Mapped[int] = mapped_column(BigInteger)
    submitted_by: Mapped[str] = mapped_column(String(320), default="")  # authenticated login or ''
    client: Mapped[str] = mapped_column(String(64), default="")        # client address
    is_report: Mapped[bool] = mapped_column(Boolean, default=False)     # a DSN: never bounced again
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    recipients: Mapped[list[QueuedRecipient]] = relationship(
        back_populates="message", cascade="all, delete-orphan", passive_deletes=True
    )


class QueuedRecipient(Base):
    """One recipient of a queued message with its delivery state (pending, delivered, failed)."""

    __tablename__ = "smtp_queue_recipients"
    __table_args__ = (Index("ix_smtp_rcpt_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("smtp_queue.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delay_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    # A lease: the node delivering this recipient right now (several nodes may share one queue).
    claimed_by: Mapped[str] = mapped_column(String(128), default="")
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    message: Mapped[QueuedMessage] = relationship(back_populates="recipients")


# --- Remote administration (issue 5): tokens for the TCP admin listener ----------------------
# Only a SHA-256 hash of each token is kept; the token itself is shown once, when it is made.


class AdminToken(Base):
    """A bearer token that admits a network admin connection (``auth.login``)."""

    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)   # hex SHA-256 of the token
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_from: Mapped[str] = mapped_column(String(64), default="")


# --- Service statistics (issue 15): the per-minute history the status page charts -----------
# One row per node, minute and series; a node keeps the last day (service/history.py prunes).


class StatsMinute(Base):
    """One value of one per-minute series (messages received, queue size ...) of one service node."""

    __tablename__ = "stats_history"
    __table_args__ = (Index("ix_stats_history_minute", "minute"),)

    node: Mapped[str] = mapped_column(String(128), primary_key=True)     # host name:data directory hash
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)    # epoch seconds // 60 of its start
    series: Mapped[str] = mapped_column(String(32), primary_key=True)    # received, delivered ... disk_free_mb
    value: Mapped[int] = mapped_column(BigInteger)
