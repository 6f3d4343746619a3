"""The message index: one database row per message and the mailbox and domain counters beside it.

Delivery's statements are built once (SQLAlchemy caches their compiled form) and, for the raw
SQLite delivery cursor, compiled once to SQL text. Counters move by SQL expressions, in one global
lock order (mailboxes by id, then domains by id), so concurrent writers never deadlock.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Update, bindparam, func, insert, select, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from core.db import Database
from core.tables import Domain, Mailbox, Message


class IndexRow(NamedTuple):
    """One message's index row as the repair sees it."""

    id: int
    filename: str
    deleted: bool


SELECT_TARGETS = (
    select(Mailbox.id, Mailbox.domain_id, Mailbox.name, Domain.name)
    .join(Domain, Domain.id == Mailbox.domain_id)
    .where(Mailbox.id.in_(bindparam("ids", expanding=True)))
)
LOCK_MAILBOXES = (select(Mailbox.id, Mailbox.quota_bytes, Mailbox.total_bytes)
                  .where(Mailbox.id.in_(bindparam("ids", expanding=True))).order_by(Mailbox.id).with_for_update())
INSERT_MESSAGE = insert(Message)
BUMP_MAILBOX = update(Mailbox).where(Mailbox.id == bindparam("mid")).values(
    message_count=Mailbox.message_count + bindparam("n"), total_bytes=Mailbox.total_bytes + bindparam("sz"))
BUMP_DOMAIN = update(Domain).where(Domain.id == bindparam("did")).values(
    message_count=Domain.message_count + bindparam("n"), total_bytes=Domain.total_bytes + bindparam("sz"))


class IndexWriter(Protocol):
    """Delivery's index statements inside one open write transaction."""

    def lock_mailboxes(self, ids: list[int]) -> dict[int, list[Any]]: ...

    def insert_message(self, mid: int, uidl: str, filename: str, size: int, when: datetime) -> int: ...

    def bump(self, statement: Update, params: dict[str, int]) -> None: ...


class CoreIndexWriter:
    """Delivery's index statements on a SQLAlchemy connection (PostgreSQL, or SQLite in memory)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def lock_mailboxes(self, ids: list[int]) -> dict[int, list[Any]]:
        return {mid: [quota, total] for mid, quota, total in self.conn.execute(LOCK_MAILBOXES, {"ids": ids})}

    def insert_message(self, mid: int, uidl: str, filename: str, size: int, when: datetime) -> int:
        row = self.conn.execute(INSERT_MESSAGE, {"mailbox_id": mid, "uidl": uidl, "filename": filename,
                                                 "size": size, "arrived_at": when, "deleted": False})
        key = row.inserted_primary_key
        assert key is not None   # an INSERT of one row always has one
        return int(key[0])

    def bump(self, statement: Update, params: dict[str, int]) -> None:
        self.conn.execute(statement, params)


_SQLITE = sqlite_dialect.dialect(paramstyle="named")
_MESSAGE_COLUMNS = ["mailbox_id", "uidl", "filename", "size", "arrived_at", "deleted"]
# The same statements as SQL text for the raw SQLite cursor (one mailbox per SELECT: SQLite's
# BEGIN IMMEDIATE already holds the whole database, so there are no row locks to order).
_SQLITE_SQL: dict[object, str] = {
    "lock": str(select(Mailbox.id, Mailbox.quota_bytes, Mailbox.total_bytes)
                .where(Mailbox.id == bindparam("mid")).compile(dialect=_SQLITE)),
    "insert": str(INSERT_MESSAGE.compile(dialect=_SQLITE, column_keys=_MESSAGE_COLUMNS)),
    BUMP_MAILBOX: str(BUMP_MAILBOX.compile(dialect=_SQLITE)),
    BUMP_DOMAIN: str(BUMP_DOMAIN.compile(dialect=_SQLITE)),
}
_when_processor = Message.__table__.c.arrived_at.type.dialect_impl(_SQLITE).bind_processor(_SQLITE)
assert _when_processor is not None   # SQLite stores a DateTime as text: it always has one
_SQLITE_WHEN: Callable[[datetime], Any] = _when_processor


class SqliteIndexWriter:
    """Delivery's index statements on the database's raw SQLite delivery cursor (Database.sqlite_write)."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self.cur = cur

    def lock_mailboxes(self, ids: list[int]) -> dict[int, list[Any]]:
        state = {}
        for mid in ids:
            for _, quota, total in self.cur.execute(_SQLITE_SQL["lock"], {"mid": mid}):
                state[mid] = [quota, total]
        return state

    def insert_message(self, mid: int, uidl: str, filename: str, size: int, when: datetime) -> int:
        self.cur.execute(_SQLITE_SQL["insert"], {"mailbox_id": mid, "uidl": uidl, "filename": filename, "size": size,
                                                 "arrived_at": _SQLITE_WHEN(when), "deleted": False})
        rowid = self.cur.lastrowid
        assert rowid is not None   # set by every INSERT
        return rowid

    def bump(self, statement: Update, params: dict[str, int]) -> None:
        self.cur.execute(_SQLITE_SQL[statement], params)


class MessageIndex:
    """The message rows and counters in the database, read and kept exact."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def has_domains(self) -> bool:
        with self.db.read() as session:
            return session.scalars(select(Domain.id).limit(1)).first() is not None

    def mailboxes(self) -> list[tuple[int, str, str]]:
        """Every mailbox as (id, name, domain name)."""
        with self.db.read() as session:
            return [(mid, mname, dname) for mid, mname, dname in session.execute(
                select(Mailbox.id, Mailbox.name, Domain.name).join(Domain, Domain.id == Mailbox.domain_id))]

    def domain_names(self) -> list[str]:
        with self.db.read() as session:
            return list(session.scalars(select(Domain.name)))

    def live_files(self) -> Iterator[tuple[int, str]]:
        """(mailbox id, file name) of every message not marked deleted, streamed."""
        with self.db.read_conn() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                select(Message.mailbox_id, Message.filename).where(Message.deleted.is_(False)))
            yield from result

    def delivery_targets(self, ids: list[int]) -> list[tuple[int, int, str, str]]:
        """(mailbox id, domain id, mailbox name, domain name) of those of ``ids`` that exist."""
        with self.db.read_conn() as conn:
            return [(mid, did, mname, dname) for mid, did, mname, dname in conn.execute(SELECT_TARGETS, {"ids": ids})]

    def rows_of(self, mailbox_id: int) -> list[IndexRow]:
        """Every index row of one mailbox, marked deletions included."""
        with self.db.read_conn() as conn:
            return [IndexRow(r[0], r[1], bool(r[2])) for r in conn.execute(
                select(Message.id, Message.filename, Message.deleted).where(Message.mailbox_id == mailbox_id))]

    def rows_by_mailbox(self) -> dict[int, list[IndexRow]]:
        """Every index row, grouped by mailbox: one query, not one per box."""
        grouped: dict[int, list[IndexRow]] = {}
        with self.db.read_conn() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                select(Message.mailbox_id, Message.id, Message.filename, Message.deleted))
            for mid, msg_id, filename, deleted in result:
                grouped.setdefault(mid, []).append(IndexRow(msg_id, filename, bool(deleted)))
        return grouped

    @staticmethod
    def bump(session: Session, mailbox_id: int, domain_id: int, *, messages: int, size: int) -> None:
        """Move the counters of a mailbox and its domain by SQL expressions (exact under concurrency)."""
        session.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(
            message_count=Mailbox.message_count + messages, total_bytes=Mailbox.total_bytes + size))
        session.execute(update(Domain).where(Domain.id == domain_id).values(
            message_count=Domain.message_count + messages, total_bytes=Domain.total_bytes + size))

    def recount(self, mailbox_ids: Iterable[int] | None = None) -> None:
        """Set counters from the index (after a repair); all mailboxes when ``mailbox_ids`` is None."""
        with self.db.write() as session:
            # Lock the rows first (mailboxes, then domains, as delivery does): on PostgreSQL other
            # nodes deliver meanwhile, and a count must not be overwritten by a stale one.
            query = select(Mailbox.id, Mailbox.domain_id).order_by(Mailbox.id).with_for_update()
            if mailbox_ids is not None:
                query = query.where(Mailbox.id.in_(list(mailbox_ids)))
            pairs = session.execute(query).all()
            session.execute(select(Domain.id).where(Domain.id.in_({d for _m, d in pairs}))
                            .order_by(Domain.id).with_for_update()).all()
            for mid, _did in pairs:
                count, total = session.execute(
                    select(func.count(Message.id), func.coalesce(func.sum(Message.size), 0))
                    .where(Message.mailbox_id == mid, Message.deleted.is_(False))
                ).one()
                session.execute(update(Mailbox).where(Mailbox.id == mid).values(message_count=count, total_bytes=total))
            for did in {d for _m, d in pairs}:
                n_boxes, n_msgs, n_bytes = session.execute(
                    select(func.count(Mailbox.id), func.coalesce(func.sum(Mailbox.message_count), 0),
                           func.coalesce(func.sum(Mailbox.total_bytes), 0)).where(Mailbox.domain_id == did)
                ).one()
                session.execute(update(Domain).where(Domain.id == did).values(
                    mailbox_count=n_boxes, message_count=n_msgs, total_bytes=n_bytes))
