"""The mail store: one Maildir per mailbox, indexed in the database (DESIGN §5).

The one place a message is written to disk. Delivery is durable before it is acknowledged:
write to ``tmp/``, fsync, rename into ``new/``, fsync the folder, then commit the index row and
the counters in one transaction. Deletions mark rows first, unlink files second and drop rows
last, and folder removals go through a ``.deleted.*`` rename, so :meth:`MailStore.reconcile`
can finish or undo whatever a crash interrupted.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import hashlib
import itertools
import logging
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Update, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from core.db import RECONCILE_LOCK, Database
from core.errors import Invalid, MailError, NotFound, QuotaExceeded, Unavailable
from core.model import DeliveryResult, MessageInfo, ReconcileReport
from core.tables import Domain, Mailbox, Message

log = logging.getLogger(__name__)

TMP_MAX_AGE = 36 * 3600  # Maildir convention: tmp files older than 36 hours are abandoned
TRASH_PREFIX = ".deleted."
_UIDL_OK = re.compile(r"^[\x21-\x7e]{1,70}$")
_SEQ = itertools.count(1)
_SEQ_LOCK = threading.Lock()

_IndexRow = collections.namedtuple("_IndexRow", "id filename deleted")


@dataclasses.dataclass(eq=False)
class _Pending:
    """One delivery waiting for the group commit: its files are in place, fsynced; its folders
    and index rows are not yet."""

    ids: list[int]
    targets: dict[int, tuple[int, str, str]]
    name: str
    uidl: str
    vsize: int
    when: datetime
    check_quota: bool
    dirs: set[str]
    done: bool = False
    error: BaseException | None = None
    results: list[DeliveryResult] | None = None
    pending_results: list[DeliveryResult] | None = None

# Delivery's statements, built once (SQLAlchemy caches their compiled form).
_SELECT_TARGETS = (
    select(Mailbox.id, Mailbox.domain_id, Mailbox.name, Domain.name)
    .join(Domain, Domain.id == Mailbox.domain_id)
    .where(Mailbox.id.in_(bindparam("ids", expanding=True)))
)
_LOCK_MAILBOXES = (select(Mailbox.id, Mailbox.quota_bytes, Mailbox.total_bytes)
                   .where(Mailbox.id.in_(bindparam("ids", expanding=True))).order_by(Mailbox.id).with_for_update())
_INSERT_MESSAGE = insert(Message)
_BUMP_MAILBOX = update(Mailbox).where(Mailbox.id == bindparam("mid")).values(
    message_count=Mailbox.message_count + bindparam("n"), total_bytes=Mailbox.total_bytes + bindparam("sz"))
_BUMP_DOMAIN = update(Domain).where(Domain.id == bindparam("did")).values(
    message_count=Domain.message_count + bindparam("n"), total_bytes=Domain.total_bytes + bindparam("sz"))


class _CoreIndex:
    """Delivery's index statements on a SQLAlchemy connection (PostgreSQL, or SQLite in memory)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def lock_mailboxes(self, ids: list[int]) -> dict[int, list]:
        return {mid: [quota, total] for mid, quota, total in self.conn.execute(_LOCK_MAILBOXES, {"ids": ids})}

    def insert_message(self, mid: int, uidl: str, filename: str, size: int, when: datetime) -> int:
        row = self.conn.execute(_INSERT_MESSAGE, {"mailbox_id": mid, "uidl": uidl, "filename": filename,
                                                  "size": size, "arrived_at": when, "deleted": False})
        return row.inserted_primary_key[0]

    def bump(self, statement: Update, params: dict) -> None:
        self.conn.execute(statement, params)


_SQLITE = sqlite_dialect.dialect(paramstyle="named")
_MESSAGE_COLUMNS = ["mailbox_id", "uidl", "filename", "size", "arrived_at", "deleted"]
# The same statements as SQL text for the raw SQLite cursor (one mailbox per SELECT: SQLite's
# BEGIN IMMEDIATE already holds the whole database, so there are no row locks to order).
_SQLITE_SQL = {
    "lock": str(select(Mailbox.id, Mailbox.quota_bytes, Mailbox.total_bytes)
                .where(Mailbox.id == bindparam("mid")).compile(dialect=_SQLITE)),
    "insert": str(_INSERT_MESSAGE.compile(dialect=_SQLITE, column_keys=_MESSAGE_COLUMNS)),
    _BUMP_MAILBOX: str(_BUMP_MAILBOX.compile(dialect=_SQLITE)),
    _BUMP_DOMAIN: str(_BUMP_DOMAIN.compile(dialect=_SQLITE)),
}
_SQLITE_WHEN = Message.__table__.c.arrived_at.type.dialect_impl(_SQLITE).bind_processor(_SQLITE)


class _SqliteIndex:
    """Delivery's index statements on the database's raw SQLite delivery cursor (Database.sqlite_write)."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self.cur = cur

    def lock_mailboxes(self, ids: list[int]) -> dict[int, list]:
        state = {}
        for mid in ids:
            for _, quota, total in self.cur.execute(_SQLITE_SQL["lock"], {"mid": mid}):
                state[mid] = [quota, total]
        return state

    def insert_message(self, mid: int, uidl: str, filename: str, size: int, when: datetime) -> int:
        self.cur.execute(_SQLITE_SQL["insert"], {"mailbox_id": mid, "uidl": uidl, "filename": filename, "size": size,
                                                 "arrived_at": _SQLITE_WHEN(when), "deleted": False})
        return self.cur.lastrowid

    def bump(self, statement: Update, params: dict) -> None:
        self.cur.execute(_SQLITE_SQL[statement], params)


def pop3_size(data: bytes) -> int:
    """Octets of ``data`` as POP3 sends it: every line ended by CRLF (RFC 1939 §11)."""
    if not data:
        return 0
    lines = data.count(b"\n")
    crlf = data.count(b"\r\n")
    size = len(data) + (lines - crlf)
    if not data.endswith(b"\n"):
        size += 2
    return size


def to_maildir(data: bytes) -> bytes:
    """Maildir files use LF line ends; SMTP brings CRLF."""
    return data.replace(b"\r\n", b"\n")


def uidl_for(filename: str) -> str:
    """The UIDL of a message file: its unique base name, or a digest where that is too long."""
    base = filename.split(",", 1)[0].split(":", 1)[0]
    if _UIDL_OK.match(base):
        return base
    return hashlib.sha1(base.encode("utf-8", "surrogateescape")).hexdigest()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")


def _size_from_name(filename: str) -> int | None:
    match = re.search(r",W=(\d+)", filename)
    return int(match.group(1)) if match else None


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: str | Path, data: bytes) -> None:
    """Create ``path`` exclusively, write ``data``, fsync. On any failure the file is gone."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


BIG_MESSAGE = 1 << 20   # octets: a bigger message is converted and written a MB at a time


def write_maildir_durably(path: str | Path, data: bytes) -> tuple[int, int]:
    """Like write_durably(path, to_maildir(data)) without holding the converted copy: a MB at a
    time (so memory stays at one message, and no C call holds the GIL for long). Returns the
    file's size and its POP3 size (pop3_size of what was written)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    size = lines = crlf = 0
    last = b""
    try:
        start, total = 0, len(data)
        while start < total:
            stop = min(start + BIG_MESSAGE, total)
            while stop < total and data[stop - 1] == 0x0D:   # never cut a CRLF (or CR CRLF) in two
                stop += 1
            piece = data[start:stop].replace(b"\r\n", b"\n")
            size += len(piece)
            lines += piece.count(b"\n")
            crlf += piece.count(b"\r\n")
            last = piece[-1:]
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view):]
            start = stop
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    vsize = size + (lines - crlf) + (2 if size and last != b"\n" else 0)   # as pop3_size
    return size, vsize


def _disk_error(exc: OSError) -> Unavailable:
    if exc.errno == errno.ENOSPC:
        return Unavailable("The mail store is out of disk space; free space on the mail root's disk.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Unavailable(f"The mail store cannot write to {exc.filename}: {exc.strerror}. "
                           "Check that the root mail directory is writable by the service.")
    return Unavailable(f"The mail store could not write: {exc.strerror or exc}.")


class MailStore:
    """Maildir folders under one mail root, and the message index with its counters."""

    def __init__(self, db: Database, root: Path, *, hostname: str | None = None) -> None:
        self.db = db
        # Called (from the writing thread) with the ids of mailboxes whose counters moved.
        self.on_change: list[Callable[[set[int]], None]] = []
        # mailbox id → (domain id, address, Maildir): delivery's look-up, forgotten on deletion.
        self._target_cache: dict[int, tuple[int, str, str]] = {}
        self._cache_lock = threading.Lock()
        # Group commit of deliveries (see _group_commit).
        self._gc_cond = threading.Condition()
        self._gc_queue: list[_Pending] = []
        self._gc_busy = False
        self.root = Path(root)
        self.hostname = (hostname or socket.gethostname() or "localhost").replace("/", "\\057").replace(":", "\\072")

    # -- paths ----------------------------------------------------------------------------
    def domain_dir(self, domain: str) -> Path:
        return self.root / domain

    def mailbox_dir(self, domain: str, name: str) -> Path:
        return self.root / domain / name

    def check_root(self, *, create: bool = True) -> None:
        """Make sure the mail root exists and is writable, or say clearly what is wrong.

        With ``create=False`` (domains exist) a missing root is an error, not something to make
        anew: an unmounted disk must not be replaced by an empty folder that mail then goes to."""
        if not self.root.exists() and not create:
            raise Unavailable(f"The root mail directory {self.root} is missing. Is its disk mounted? "
                              "Restore it, or set another with winpop set mailroot.")
        if self.root.exists() and not self.root.is_dir():
            raise Unavailable(f"The root mail directory {self.root} is not a folder.")
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise Unavailable(f"The root mail directory {self.root} cannot be created: {exc.strerror}.") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise Unavailable(f"The root mail directory {self.root} is not writable by the service.")

    def has_domains(self) -> bool:
        with self.db.read() as session:
            return session.scalars(select(Domain.id).limit(1)).first() is not None

    def create_domain_folder(self, domain: str) -> Path:
        self.check_root(create=not self.has_domains())
        path = self.domain_dir(domain)
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            fsync_dir(self.root)
        except OSError as exc:
            raise _disk_error(exc) from None
        return path

    def create_mailbox_folder(self, domain: str, name: str) -> Path:
        """Create (or adopt) the Maildir of a mailbox: tmp/, new/ and cur/."""
        self.create_domain_folder(domain)
        path = self.mailbox_dir(domain, name)
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            for sub in ("tmp", "new", "cur"):
                (path / sub).mkdir(mode=0o700, exist_ok=True)
            fsync_dir(path)
            fsync_dir(path.parent)
        except OSError as exc:
            raise _disk_error(exc) from None
        return path

    @contextlib.contextmanager
    def removing(self, path: Path) -> Iterator[None]:
        """Remove a folder around a database change: rename aside, run the body (which commits),
        then delete; if the body fails the folder is put back."""
        trash = path.with_name(f"{TRASH_PREFIX}{path.name}.{uuid.uuid4().hex[:12]}")
        moved = False
        if path.exists():
            try:
                os.rename(path, trash)
                fsync_dir(path.parent)
            except OSError as exc:
                raise _disk_error(exc) from None
            moved = True
        try:
            yield
        except BaseException:
            if moved:
                os.rename(trash, path)
                fsync_dir(path.parent)
            raise
        if moved:
            shutil.rmtree(trash, ignore_errors=True)

    # -- delivery -------------------------------------------------------------------------
    def _new_name(self, size: int, vsize: int) -> str:
        with _SEQ_LOCK:
            seq = next(_SEQ)
        now = time.time()
        sec = int(now)
        usec = int((now - sec) * 1_000_000)
        return f"{sec}.M{usec}P{os.getpid()}Q{seq}.{self.hostname},S={size},W={vsize}"

    def deliver(self, mailbox_id: int, data: bytes, *, uidl: str | None = None,
                arrived_at: datetime | None = None, check_quota: bool = True) -> DeliveryResult:
        """Store one message in one mailbox; returns once it is durable and indexed."""
        return self.deliver_many([mailbox_id], data, uidl=uidl, arrived_at=arrived_at,
                                 check_quota=check_quota)[0]

    def deliver_many(self, mailbox_ids: Iterable[int], data: bytes, *, uidl: str | None = None,
                     arrived_at: datetime | None = None, check_quota: bool = True,
                     base: str | None = None) -> list[DeliveryResult]:
        """Store one message in several mailboxes (hard links of one file), durably, in one
        transaction. Raises QuotaExceeded (nothing stored) if any mailbox would go over quota."""
        ids = list(dict.fromkeys(mailbox_ids))
        if not ids:
            return []
        if uidl is not None and not _UIDL_OK.match(uidl):
            raise Invalid(f"'{uidl}' cannot be a UIDL: 1-70 printable ASCII characters without spaces.")
        big = len(data) > BIG_MESSAGE
        body = b"" if big else to_maildir(data)
        targets = self._targets(ids)
        # Plain strings on this path: pathlib's joins cost more than the file system calls.
        first_dir = targets[ids[0]][2]
        placed: list[str] = []
        tmp_path = ""
        try:
            if big:   # converted while written; the name (with the sizes) is known afterwards
                tmp_path = f"{first_dir}/tmp/{self._new_name(0, 0).split(',', 1)[0]}.big"
                size, vsize = write_maildir_durably(tmp_path, data)
            else:
                size, vsize = len(body), pop3_size(body)
            if base is None:
                name = self._new_name(size, vsize)
            else:  # an imported message keeps its original file name (its UIDL)
                name = f"{base},S={size},W={vsize}"
            if uidl is None:
                uidl = uidl_for(name)
            if not big:
                tmp_path = f"{first_dir}/tmp/{name}"
                write_durably(tmp_path, body)
            first = f"{first_dir}/new/{name}"
            os.rename(tmp_path, first)
            placed.append(first)
            for mid in ids[1:]:
                new_path = f"{targets[mid][2]}/new/{name}"
                try:
                    os.link(first, new_path)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    if big:  # another filesystem: a copy
                        write_maildir_durably(new_path, data)
                    else:
                        write_durably(new_path, body)
                placed.append(new_path)
        except OSError as exc:
            for path in placed + ([tmp_path] if tmp_path else []):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise _disk_error(exc) from None
        entry = _Pending(ids=ids, targets=targets, name=name, uidl=uidl, vsize=vsize,
                         when=arrived_at or datetime.now(timezone.utc), check_quota=check_quota,
                         dirs={f"{targets[mid][2]}/new" for mid in ids})
        try:
            results = self._group_commit(entry)
        except BaseException:
            for path in placed:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        self._changed(set(ids))
        return results

    # -- group commit ---------------------------------------------------------------------
    def _group_commit(self, entry: _Pending) -> list[DeliveryResult]:
        """Make ``entry`` durable and indexed. Deliveries that arrive while another thread commits
        wait and are committed together by the next one: one fsync per folder and one index
        transaction for the whole batch (a single delivery is a batch of one)."""
        with self._gc_cond:
            self._gc_queue.append(entry)
            while not entry.done and self._gc_busy:
                self._gc_cond.wait()
            if entry.done:
                batch = None
            else:
                self._gc_busy = True
                batch, self._gc_queue = self._gc_queue, []
        if batch is not None:
            try:
                self._commit_batch(batch)
            except BaseException as exc:  # the whole batch failed: every delivery in it says so
                for item in batch:
                    if item.error is None and item.results is None:
                        item.error = exc if not isinstance(exc, OSError) else _disk_error(exc)
            finally:
                with self._gc_cond:
                    for item in batch:
                        item.done = True
                    self._gc_busy = False
                    self._gc_cond.notify_all()
        if entry.error is not None:
            raise entry.error
        assert entry.results is not None
        return entry.results

    def _commit_batch(self, batch: list[_Pending]) -> None:
        for directory in set().union(*(item.dirs for item in batch)):
            fsync_dir(directory)
        all_ids = sorted({mid for item in batch for mid in item.ids})
        if self.db.has_sqlite_writer:
            try:
                with self.db.sqlite_write() as cur:
                    accepted = self._index_batch(_SqliteIndex(cur), batch, all_ids)
            except sqlite3.Error as exc:
                raise Unavailable(f"The message index could not be written: {exc}.") from exc
        else:
            with self.db.write_conn() as conn:
                accepted = self._index_batch(_CoreIndex(conn), batch, all_ids)
        for item in accepted:  # only once the transaction committed
            item.results = item.pending_results

    def _index_batch(self, index: _CoreIndex | _SqliteIndex, batch: list[_Pending],
                     all_ids: list[int]) -> list[_Pending]:
        """Inside one write transaction: check quotas, insert the index rows, move the counters.
        Returns the deliveries accepted; the others carry their error."""
        # Row locks in one global order (mailboxes by id, then domains by id), so concurrent
        # deliveries from several nodes on PostgreSQL wait for each other, never deadlock.
        state = index.lock_mailboxes(all_ids)
        accepted: list[_Pending] = []
        for item in batch:
            try:
                for mid in item.ids:
                    if mid not in state:
                        self.forget([mid])
                        raise NotFound(f"The mailbox {item.targets[mid][1]} was deleted.")
                    quota, total = state[mid]
                    if item.check_quota and quota is not None and total + item.vsize > quota:
                        address = item.targets[mid][1]
                        if item.vsize > quota:
                            raise QuotaExceeded(f"The message ({item.vsize} bytes) is larger than the quota "
                                                f"of {address} ({quota} bytes).", permanent=True)
                        raise QuotaExceeded(f"The mailbox {address} is full ({total} of {quota} bytes).")
            except MailError as exc:
                item.error = exc
                continue
            for mid in item.ids:
                state[mid][1] += item.vsize
            accepted.append(item)
        by_mailbox: dict[int, list[int]] = {}
        by_domain: dict[int, list[int]] = {}
        for item in accepted:
            results = []
            for mid in item.ids:
                message_id = index.insert_message(mid, item.uidl, f"new/{item.name}", item.vsize, item.when)
                results.append(DeliveryResult(mailbox_id=mid, message_id=message_id, uidl=item.uidl, size=item.vsize))
                for key, table in ((mid, by_mailbox), (item.targets[mid][0], by_domain)):
                    counts = table.setdefault(key, [0, 0])
                    counts[0] += 1
                    counts[1] += item.vsize
            item.pending_results = results
        for mid, (n, size) in sorted(by_mailbox.items()):
            index.bump(_BUMP_MAILBOX, {"mid": mid, "n": n, "sz": size})
        for did, (n, size) in sorted(by_domain.items()):
            index.bump(_BUMP_DOMAIN, {"did": did, "n": n, "sz": size})
        return accepted

    def _changed(self, mailbox_ids: set[int]) -> None:
        for callback in self.on_change:
            try:
                callback(mailbox_ids)
            except Exception:  # a listener's failure must not undo a committed change
                log.exception("store change listener failed")

    def forget(self, mailbox_ids: Iterable[int] | None = None) -> None:
        """Drop cached delivery targets (after a mailbox or domain is deleted; None: all)."""
        with self._cache_lock:
            if mailbox_ids is None:
                self._target_cache.clear()
            else:
                for mid in mailbox_ids:
                    self._target_cache.pop(mid, None)

    def _targets(self, ids: list[int]) -> dict[int, tuple[int, str, str]]:
        """mailbox id → (domain id, address, Maildir path as a string) for delivery."""
        with self._cache_lock:
            found = {mid: self._target_cache[mid] for mid in ids if mid in self._target_cache}
        if len(found) < len(ids):
            with self.db.read_conn() as conn:
                rows = conn.execute(_SELECT_TARGETS, {"ids": [m for m in ids if m not in found]}).all()
            fresh = {mid: (did, f"{mname}@{dname}", os.fspath(self.mailbox_dir(dname, mname)))
                     for mid, did, mname, dname in rows}
            with self._cache_lock:
                if len(self._target_cache) > 50_000:
                    self._target_cache.clear()
                self._target_cache.update(fresh)
            found.update(fresh)
        missing = [mid for mid in ids if mid not in found]
        if missing:
            raise NotFound(f"No mailbox with id {missing[0]} (it was deleted).")
        return found

    @staticmethod
    def _bump(session: Session, mailbox_id: int, domain_id: int, *, messages: int, size: int) -> None:
        """Move the counters of a mailbox and its domain by SQL expressions (exact under concurrency)."""
        session.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(
            message_count=Mailbox.message_count + messages, total_bytes=Mailbox.total_bytes + size))
        session.execute(update(Domain).where(Domain.id == domain_id).values(
            message_count=Domain.message_count + messages, total_bytes=Domain.total_bytes + size))

    # -- reading and deleting (POP3) ------------------------------------------------------
    def list_messages(self, mailbox_id: int) -> list[MessageInfo]:
        """The mailbox's messages in arrival order: the POP3 maildrop snapshot, from the index."""
        with self.db.read() as session:
            row = session.execute(
                select(Mailbox.name, Domain.name).join(Domain, Domain.id == Mailbox.domain_id)
                .where(Mailbox.id == mailbox_id)
            ).first()
            if row is None:
                raise NotFound(f"No mailbox with id {mailbox_id}.")
            folder = self.mailbox_dir(row[1], row[0])
            messages = session.execute(
                select(Message.id, Message.uidl, Message.size, Message.filename, Message.arrived_at)
                .where(Message.mailbox_id == mailbox_id, Message.deleted.is_(False))
                .order_by(Message.id)
            ).all()
        return [MessageInfo(id=m.id, uidl=m.uidl, size=m.size, path=str(folder / m.filename),
                            arrived_at=m.arrived_at) for m in messages]

    def delete_messages(self, mailbox_id: int, message_ids: Iterable[int]) -> int:
        """Remove messages (POP3's UPDATE state): counters first, files second, rows last."""
        ids = list(message_ids)
        if not ids:
            return 0
        with self.db.write() as session:
            box = session.get(Mailbox, mailbox_id)
            if box is None:
                return 0
            rows = session.execute(
                select(Message.id, Message.size, Message.filename)
                .where(Message.mailbox_id == mailbox_id, Message.id.in_(ids), Message.deleted.is_(False))
            ).all()
            if not rows:
                return 0
            session.execute(update(Message).where(Message.id.in_([r.id for r in rows])).values(deleted=True))
            self._bump(session, mailbox_id, box.domain_id, messages=-len(rows), size=-sum(r.size for r in rows))
            domain_name = session.get(Domain, box.domain_id).name
            folder = self.mailbox_dir(domain_name, box.name)
        self._unlink_files(folder, [r.filename for r in rows])
        with self.db.write() as session:
            session.execute(delete(Message).where(Message.id.in_([r.id for r in rows])))
        self._changed({mailbox_id})
        return len(rows)

    @staticmethod
    def _unlink_files(folder: Path, filenames: Iterable[str]) -> None:
        dirs = set()
        for filename in filenames:
            path = folder / filename
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            dirs.add(path.parent)
        for directory in dirs:
            with contextlib.suppress(OSError):
                fsync_dir(directory)

    # -- reconcile ------------------------------------------------------------------------
    def reconcile(self, *, orphan_min_age: float = 0.0) -> ReconcileReport:
        """Repair the index after a crash: finish folder removals, tombstones and tmp files, index
        orphan files, drop rows whose file is gone, and recompute the counters. On PostgreSQL one
        node at a time (an advisory lock); the others keep delivering meanwhile."""
        with self.db.exclusive(RECONCILE_LOCK):
            return self._reconcile(orphan_min_age=orphan_min_age)

    def _reconcile(self, *, orphan_min_age: float) -> ReconcileReport:
        counts = dict.fromkeys(ReconcileReport.__dataclass_fields__, 0)
        with self.db.read() as session:
            domains = {d.name: d.id for d in session.scalars(select(Domain))}
            boxes = session.execute(
                select(Mailbox.id, Mailbox.name, Domain.name).join(Domain, Domain.id == Mailbox.domain_id)
            ).all()
        by_domain: dict[str, set[str]] = {}
        for _mid, mname, dname in boxes:
            by_domain.setdefault(dname, set()).add(mname)
        if self.root.is_dir():
            self._reconcile_trash(self.root, set(domains), counts)
            for dname in domains:
                if self.domain_dir(dname).is_dir():
                    self._reconcile_trash(self.domain_dir(dname), by_domain.get(dname, set()), counts)
        touched: set[int] = set()
        rows_by_box = self._index_rows_by_mailbox()
        for mid, mname, dname in boxes:
            counts["mailboxes_checked"] += 1
            if self._reconcile_mailbox(mid, self.mailbox_dir(dname, mname), counts, rows_by_box.pop(mid, []),
                                       orphan_min_age=orphan_min_age):
                touched.add(mid)
        if touched:
            self.recount(touched)
            self._changed(touched)
        report = ReconcileReport(**counts)
        if any(v for k, v in counts.items() if k != "mailboxes_checked"):
            log.warning("reconcile repaired the store: %s", report)
        return report

    def _reconcile_trash(self, parent: Path, live: set[str], counts: dict[str, int]) -> None:
        for entry in list(parent.iterdir()):
            if not entry.name.startswith(TRASH_PREFIX):
                continue
            original = entry.name[len(TRASH_PREFIX):].rsplit(".", 1)[0]
            target = parent / original
            if original in live and not target.exists():
                os.rename(entry, target)  # the row deletion never committed: undo
                counts["deletions_rolled_back"] += 1
                log.warning("reconcile: restored %s (its deletion was not committed)", target)
            else:
                shutil.rmtree(entry, ignore_errors=True)
                counts["deletions_finished"] += 1

    def _index_rows_by_mailbox(self) -> dict[int, list[tuple[int, str, bool]]]:
        """Every index row as (id, filename, deleted), grouped by mailbox: one query, not one per box."""
        grouped: dict[int, list[tuple[int, str, bool]]] = {}
        with self.db.read_conn() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                select(Message.mailbox_id, Message.id, Message.filename, Message.deleted))
            for mid, msg_id, filename, deleted in result:
                grouped.setdefault(mid, []).append((msg_id, filename, bool(deleted)))
        return grouped

    def _reconcile_mailbox(self, mailbox_id: int, folder: Path, counts: dict[str, int],
                           index_rows: list[tuple[int, str, bool]] | None = None, *,
                           orphan_min_age: float = 0.0) -> bool:
        """Repair one mailbox. ``orphan_min_age``: leave younger unindexed files alone (another node
        sharing the mail root may be between its rename and its commit)."""
        changed = False
        base = str(folder)
        listing: dict[str, list[str]] = {}
        for sub in ("tmp", "new", "cur"):
            try:
                listing[sub] = os.listdir(f"{base}/{sub}")
            except FileNotFoundError:
                log.warning("reconcile: %s/%s of mailbox %s is missing; recreating it", base, sub, mailbox_id)
                os.makedirs(f"{base}/{sub}", mode=0o700, exist_ok=True)
                listing[sub] = []
        if listing["tmp"]:
            now = time.time()
            for name in listing["tmp"]:
                path = f"{base}/tmp/{name}"
                with contextlib.suppress(OSError):
                    if now - os.stat(path).st_mtime > TMP_MAX_AGE:
                        os.unlink(path)
                        counts["tmp_removed"] += 1
        on_disk = {f"{sub}/{name}" for sub in ("new", "cur") for name in listing[sub]}
        if index_rows is None:
            with self.db.read_conn() as conn:
                index_rows = [(r[0], r[1], bool(r[2])) for r in conn.execute(
                    select(Message.id, Message.filename, Message.deleted).where(Message.mailbox_id == mailbox_id))]
        if not index_rows and not on_disk:
            return False
        rows = [_IndexRow(*r) for r in index_rows]
        tombstones = [r for r in rows if r.deleted]
        if tombstones:
            self._unlink_files(folder, [r.filename for r in tombstones])
            with self.db.write() as session:
                session.execute(delete(Message).where(Message.id.in_([r.id for r in tombstones])))
            counts["tombstones_finished"] += len(tombstones)
            changed = True
        indexed = {r.filename for r in rows}
        gone = [r.id for r in rows if not r.deleted and r.filename not in on_disk]
        if gone:
            with self.db.write() as session:
                session.execute(delete(Message).where(Message.id.in_(gone)))
            counts["missing_dropped"] += len(gone)
            log.warning("reconcile: dropped %d index rows of mailbox %s whose file is gone", len(gone), mailbox_id)
            changed = True
        orphans = sorted(on_disk - indexed)
        if orphans and orphan_min_age > 0:
            cutoff = time.time() - orphan_min_age
            orphans = [rel for rel in orphans if _mtime(folder / rel) < cutoff]
        if orphans:
            with self.db.write() as session:
                known = set(session.scalars(select(Message.uidl).where(Message.mailbox_id == mailbox_id)))
                for rel in orphans:
                    path = folder / rel
                    size = _size_from_name(rel)
                    if size is None:
                        size = pop3_size(path.read_bytes())
                    uidl = uidl_for(rel.split("/", 1)[1])
                    if uidl in known:
                        uidl = hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()
                    known.add(uidl)
                    mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
                    session.add(Message(mailbox_id=mailbox_id, uidl=uidl, filename=rel, size=size, arrived_at=mtime))
            counts["orphans_indexed"] += len(orphans)
            log.warning("reconcile: indexed %d message files of mailbox %s missing from the index",
                        len(orphans), mailbox_id)
            changed = True
        return changed

    def adopt(self, mailbox_id: int, folder: Path) -> int:
        """Index the messages already in a mailbox's folder (a new mailbox over an existing Maildir)."""
        counts = dict.fromkeys(ReconcileReport.__dataclass_fields__, 0)
        if self._reconcile_mailbox(mailbox_id, folder, counts, None):
            self.recount([mailbox_id])
        return counts["orphans_indexed"]

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
