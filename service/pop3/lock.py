"""One POP3 session per mailbox (RFC 1939 §8, RFC 3206 [IN-USE]), across every service node.

The lock is a lease row in ``session_locks``: inserted at logon, renewed by its node while the
session lives, deleted when the session ends. A crashed node's rows expire after the lease; a
row left by a dead process on this very host is taken over at once (its pid is gone). Holder =
node id (host:pid:random) + "/" + session number. Every method blocks (database): call it
through ``Workers.run``.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from core.db import Database, affected_rows
from core.tables import SessionLock

log = logging.getLogger(__name__)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class MailboxLocks:
    """The session-lock leases this node holds, and the rules for taking one."""

    def __init__(self, db: Database, *, lease_seconds: int = 120, node: str | None = None) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.host = socket.gethostname()[:60].replace("/", "_")
        self.node = node or f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"

    def holder(self, session_id: int | str) -> str:
        return f"{self.node}/{session_id}"

    def acquire(self, mailbox_id: int, holder: str) -> bool:
        """Take the mailbox's lock for ``holder``; False if a live session elsewhere holds it."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.lease_seconds)
        try:
            with self.db.write() as session:
                row = session.get(SessionLock, mailbox_id)
                if row is None:
                    session.add(SessionLock(mailbox_id=mailbox_id, holder=holder, acquired_at=now, expires_at=expires))
                    session.flush()
                    return True
                previous = row.holder
                if _aware(row.expires_at) > now and not self._stale(previous):
                    return False
                # Conditional on the old holder, so two nodes taking over at once cannot both win.
                taken = affected_rows(session.execute(
                    update(SessionLock)
                    .where(SessionLock.mailbox_id == mailbox_id, SessionLock.holder == previous)
                    .values(holder=holder, acquired_at=now, expires_at=expires)
                    .execution_options(synchronize_session=False)
                ))
                if taken == 1:
                    log.warning("took over the session lock of mailbox %s from %s (expired or its process is gone)",
                                mailbox_id, previous)
                return taken == 1
        except IntegrityError:  # another node inserted first
            return False

    def release(self, mailbox_id: int, holder: str) -> None:
        """Give the lock back (only if ``holder`` still has it)."""
        with self.db.write() as session:
            session.execute(delete(SessionLock).where(SessionLock.mailbox_id == mailbox_id,
                                                      SessionLock.holder == holder))

    def renew(self) -> int:
        """Extend every lease this node holds; returns how many rows were renewed."""
        expires = datetime.now(UTC) + timedelta(seconds=self.lease_seconds)
        with self.db.write() as session:
            return affected_rows(session.execute(
                update(SessionLock).where(SessionLock.holder.startswith(self.node + "/", autoescape=True))
                .values(expires_at=expires).execution_options(synchronize_session=False)
            ))

    def release_all(self) -> None:
        """Drop every lock of this node (clean shutdown)."""
        with self.db.write() as session:
            session.execute(delete(SessionLock).where(
                SessionLock.holder.startswith(self.node + "/", autoescape=True)))

    def _stale(self, holder: str) -> bool:
        """Was ``holder`` a process on this host that no longer exists?"""
        node = holder.split("/", 1)[0]
        parts = node.split(":")
        if len(parts) != 3 or parts[0] != self.host:
            return False
        if node == self.node:
            return False
        try:
            pid = int(parts[1])
        except ValueError:
            return False
        if pid == os.getpid():
            return True   # an earlier incarnation of this process id: that service is gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
