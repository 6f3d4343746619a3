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
import functools
import hashlib
import itertools
import logging
import os
import re
import shutil
import socket
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Update, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from core.db import RECONCILE_LOCK, Database
from core.errors import (Conflict, DiskFull, Invalid, MailError, NotFound, QuotaExceeded, Unavailable,
                         database_error)
from core.model import DeliveryResult, MessageInfo, ReconcileReport
from core.tables import Domain, Mailbox, Message

log = logging.getLogger(__name__)

TMP_MAX_AGE = 36 * 3600  # Maildir convention: tmp files older than 36 hours are abandoned
TRASH_PREFIX = ".deleted."
_UIDL_OK = re.compile(r"^[\x21-\x7e]{1,70}$")
_SEQ = itertools.count(1)
_SEQ_LOCK = threading.Lock()

_IndexRow = collections.namedtuple("_IndexRow", "id filename deleted")
MAX_PROBLEMS = 200         # problems kept for the status page; the rest are counted
LOGGED_PROBLEMS = 50       # problems of one repair logged one by one; the rest in one line
_CLEAN_NAME_MAX = 200      # longer names are renamed: the index column holds 255 characters


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as text for logs and the admin channel: bytes that are not UTF-8 as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def clean_name(name: str) -> bool:
    """Whether a file name can go into the index as it is: valid UTF-8, printable, not too long."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:   # undecodable bytes, kept by os.fsdecode as surrogate escapes
        return False
    return name.isprintable() and 0 < len(encoded) <= _CLEAN_NAME_MAX


def open_message(path: str | os.PathLike[str]) -> Any:
    """Open a message file for reading, unbuffered: never through a symbolic link (O_NOFOLLOW),
    never a FIFO or a device (O_NONBLOCK, then fstat). Raises OSError like open()."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                          "not a regular file", os.fspath(path))
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    """What a non-message directory entry is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or special file"


def _file_pop3_size(fh: Any) -> int:
    """pop3_size of a file, read in pieces (memory does not grow with the message)."""
    total = lines = crlf = 0
    prev = b""
    last = b""
    while True:
        chunk = fh.read(1 << 16)
        if not chunk:
            break
        total += len(chunk)
        lines += chunk.count(b"\n")
        crlf += chunk.count(b"\r\n") + (1 if prev == b"\r" and chunk[:1] == b"\n" else 0)
        prev = last = chunk[-1:]
    if not total:
        return 0
    return total + (lines - crlf) + (0 if last == b"\n" else 2)


@dataclasses.dataclass(frozen=True)
class StoreProblem:
    """Something in the mail root the store could not repair: where, and why, in words."""

    path: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "problem": self.problem}


class _Gate:
    """Store operations pass together; a change of the mail root waits for them and runs alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = 0
        self._closed = False

    @contextlib.contextmanager
    def passing(self) -> Iterator[None]:
        with self._cond:
            if self._closed and _on_event_loop():   # an event loop never waits for the move: a retry
                raise Unavailable("The mail store is moving to another root mail directory; try again shortly.")
            while self._closed:
                self._cond.wait()
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                if not self._busy:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def alone(self, timeout: float) -> Iterator[None]:
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._closed = True
            if not self._cond.wait_for(lambda: self._busy == 0, timeout):
                self._closed = False
                self._cond.notify_all()
                raise Unavailable("The mail store is busy (a long repair or many deliveries); try again in a minute.")
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()


def _on_event_loop() -> bool:
    """Whether this thread runs an asyncio event loop (SMTP may deliver on it when it is idle)."""
    import asyncio
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _gated(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a MailStore method inside the gate, so the mail root cannot change under it."""
    @functools.wraps(method)
    def run(self: MailStore, *args: Any, **kwargs: Any) -> Any:
        with self._gate.passing():
            return method(self, *args, **kwargs)
    return run


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


def _base_name(rel: str) -> str:
    """A Maildir file's unique part: ``new/NAME`` or ``cur/NAME:2,FLAGS`` → ``NAME``."""
    return rel.split("/", 1)[-1].split(":", 1)[0]


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


def _not_a_folder(paths: Iterable[str]) -> tuple[str, str] | None:
    """The first of ``paths`` that exists but is a symbolic link or not a folder (lstat: no
    following), as (path, what it is); None if all are folders or absent."""
    for path in paths:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(mode):
            return path, _kind(mode)
    return None


def _maildir_chain(root: str, folder: str) -> list[str]:
    """Every folder from below the mail root down to a Maildir's tmp/ and new/ and cur/."""
    chain, path = [], root
    for part in folder[len(root):].strip("/").split("/"):
        path = f"{path}/{part}"
        chain.append(path)
    return chain + [f"{folder}/tmp", f"{folder}/new", f"{folder}/cur"]


def _disk_error(exc: OSError) -> Unavailable:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull("The mail store is out of disk space; free space on the mail root's disk.")
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
        self._gate = _Gate()
        # What the last repair (and reads since) could not fix: shown by service.status.
        self._problems: dict[str, StoreProblem] = {}
        self._problems_total = 0
        self._problem_lock = threading.Lock()
        self.hostname = (hostname or socket.gethostname() or "localhost").replace("/", "\\057").replace(":", "\\072")

    # -- problems -------------------------------------------------------------------------
    def note_problem(self, path: str | os.PathLike[str], problem: str) -> bool:
        """Remember something the store could not fix (for the status page); True if it is new."""
        shown = shown_path(path)
        with self._problem_lock:
            if self._problems.get(shown) == StoreProblem(shown, problem):
                return False
            if shown not in self._problems:
                self._problems_total += 1
                if len(self._problems) >= MAX_PROBLEMS:
                    return True
            self._problems[shown] = StoreProblem(shown, problem)
            return True

    def clear_problems(self) -> None:
        with self._problem_lock:
            self._problems.clear()
            self._problems_total = 0

    def problems(self) -> dict[str, Any]:
        """{"total": n, "items": [{"path", "problem"}, ...]} (at most MAX_PROBLEMS items)."""
        with self._problem_lock:
            return {"total": self._problems_total, "items": [p.as_dict() for p in self._problems.values()]}

    # -- paths ----------------------------------------------------------------------------
    def domain_dir(self, domain: str) -> Path:
        return self.root / domain

    def mailbox_dir(self, domain: str, name: str) -> Path:
        return self.root / domain / name

    def check_folders(self, domain: str, name: str | None = None) -> None:
        """Refuse a domain or mailbox folder (or its tmp/ new/ cur/) that is a symbolic link or not a
        folder: the store never writes through a link below the mail root."""
        folder = self.domain_dir(domain) if name is None else self.mailbox_dir(domain, name)
        chain = _maildir_chain(os.fspath(self.root), os.fspath(folder))
        try:
            bad = _not_a_folder(chain[:1] if name is None else chain)
        except OSError as exc:
            raise _disk_error(exc) from None
        if bad is not None:
            raise Unavailable(f"{shown_path(bad[0])} is {bad[1]}, not a folder: the mail store does not "
                              "write through it. Replace it with a real folder.")

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

    def create_domain_folder(self, domain: str, *, domains_exist: bool | None = None) -> Path:
        """Create (or adopt) a domain's folder. ``domains_exist``: whether the database holds a
        domain already, when the caller knows it (read in its own transaction); else read here."""
        self.check_root(create=not (self.has_domains() if domains_exist is None else domains_exist))
        path = self.domain_dir(domain)
        self.check_folders(domain)
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            fsync_dir(self.root)
        except OSError as exc:
            raise _disk_error(exc) from None
        return path

    def create_mailbox_folder(self, domain: str, name: str, *, domains_exist: bool | None = None) -> Path:
        """Create (or adopt) the Maildir of a mailbox: tmp/, new/ and cur/."""
        self.create_domain_folder(domain, domains_exist=domains_exist)
        path = self.mailbox_dir(domain, name)
        self.check_folders(domain, name)
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            for sub in ("tmp", "new", "cur"):
                (path / sub).mkdir(mode=0o700, exist_ok=True)
            self.check_folders(domain, name)   # made by someone else between the check and the mkdir
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

    @_gated
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
                refusal = database_error(exc)   # a full disk (DiskFull) or a lock held too long, worded
                if refusal is None:
                    raise Unavailable(f"The message index could not be written: {exc}.") from exc
                text = refusal.message
                raise type(refusal)(f"The message index could not be written: {text[:1].lower()}{text[1:]}") from exc
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
        root = os.fspath(self.root)
        for _did, address, folder in found.values():
            try:
                bad = _not_a_folder(_maildir_chain(root, folder)[:-1])
            except OSError as exc:
                raise _disk_error(exc) from None
            if bad is not None:
                if self.note_problem(bad[0], f"{bad[1]}, not a folder: no delivery to {address} goes through it"):
                    log.error("delivery to %s refused: %s is %s, not a folder", address, shown_path(bad[0]), bad[1])
                raise Unavailable(f"The mailbox folder of {address} is not a real folder; delivery is refused "
                                  "until an administrator replaces it.")
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
        bad = _not_a_folder(_maildir_chain(os.fspath(self.root), os.fspath(folder)))
        if bad is not None:   # message files are opened with O_NOFOLLOW; their folders are checked here
            self.note_problem(bad[0], f"is {bad[1]}, not a folder: the mailbox {row[0]}@{row[1]} cannot be read")
            raise Unavailable(f"The folder of {row[0]}@{row[1]} is not a real folder ({shown_path(bad[0])}).")
        return [MessageInfo(id=m.id, uidl=m.uidl, size=m.size, path=str(folder / m.filename),
                            arrived_at=m.arrived_at) for m in messages]

    @_gated
    def delete_messages(self, mailbox_id: int, message_ids: Iterable[int]) -> int:
        """Remove messages (POP3's UPDATE state): counters first, files second, rows last. Once the
        first transaction commits the messages are gone for every reader; a file that cannot be
        unlinked keeps its marked row (the start-up repair tries again) and is listed as a problem."""
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
        failed = self._unlink_files(folder, [r.filename for r in rows])
        for filename, reason in failed.items():
            path = folder / filename
            if self.note_problem(path, f"cannot be deleted ({reason}); the message is out of the mailbox, "
                                       "its file stays until it can be removed"):
                log.error("a deleted message's file %s cannot be removed: %s", shown_path(path), reason)
        done = [r.id for r in rows if r.filename not in failed]
        try:
            if done:
                with self.db.write() as session:
                    session.execute(delete(Message).where(Message.id.in_(done)))
        except Exception as exc:   # the rows stay marked: not listed, dropped by the next repair
            log.error("deleted messages of mailbox %s keep their marked index rows for now: %s", mailbox_id, exc)
        self._changed({mailbox_id})
        return len(rows)

    @staticmethod
    def _unlink_files(folder: Path, filenames: Iterable[str]) -> dict[str, str]:
        """Unlink message files (a missing one is fine); returns {filename: reason} of those that stay."""
        dirs = set()
        failed: dict[str, str] = {}
        for filename in filenames:
            path = folder / filename
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:   # immutable, a folder in its place, a read-only disk
                failed[filename] = exc.strerror or str(exc)
            dirs.add(path.parent)
        for directory in dirs:
            with contextlib.suppress(OSError):
                fsync_dir(directory)
        return failed

    def _maildir_problem(self, folder: Path) -> str | None:
        """Why the folders of a Maildir cannot be trusted to hold its files, or None."""
        for path in _maildir_chain(os.fspath(self.root), os.fspath(folder)):
            try:
                mode = os.lstat(path).st_mode
            except OSError as exc:
                return f"{shown_path(path)}: {exc.strerror}"
            if not stat.S_ISDIR(mode):
                return f"{shown_path(path)} is {_kind(mode)}, not a folder"
        return None

    @_gated
    def mark_missing(self, mailbox_id: int, message_id: int) -> tuple[str, str]:
        """A message file could not be opened: find out why and repair the index if the file is gone.

        Returns (outcome, path): "dropped" (the file is gone: its row and counters are removed),
        "moved" (found renamed in new/ or cur/, as mail readers do: the row follows; path is the new
        one), "present" (the file is there: a passing error), "unavailable" (the Maildir itself is
        missing or not a folder: nothing changes, a problem is noted)."""
        with self.db.read() as session:
            row = session.execute(
                select(Message.filename, Message.size, Mailbox.name, Domain.name, Mailbox.domain_id)
                .join(Mailbox, Mailbox.id == Message.mailbox_id).join(Domain, Domain.id == Mailbox.domain_id)
                .where(Message.id == message_id, Message.mailbox_id == mailbox_id, Message.deleted.is_(False))
            ).first()
        if row is None:
            return "dropped", ""   # already gone: another session, or the repair
        filename, size, mname, dname, domain_id = row
        folder = self.mailbox_dir(dname, mname)
        path = folder / filename
        problem = self._maildir_problem(folder)
        if problem is not None:
            if self.note_problem(folder, f"the mailbox {mname}@{dname} cannot be read ({problem}); its "
                                         "messages are kept in the index"):
                log.error("mailbox %s@%s cannot be read: %s", mname, dname, problem)
            return "unavailable", str(path)
        if os.path.lexists(path):
            return "present", str(path)
        moved = self._find_renamed(folder, filename)
        if moved is not None:
            with self.db.write() as session:
                taken = session.scalars(select(Message.id).where(Message.mailbox_id == mailbox_id,
                                                                 Message.filename == moved)).first()
                if taken is None:
                    session.execute(update(Message).where(Message.id == message_id).values(filename=moved))
            if taken is None:
                log.warning("message file %s was renamed to %s; the index follows it", shown_path(path), moved)
                return "moved", str(folder / moved)
        with self.db.write() as session:
            gone = session.execute(delete(Message).where(Message.id == message_id, Message.deleted.is_(False)))
            if gone.rowcount:
                self._bump(session, mailbox_id, domain_id, messages=-1, size=-size)
        if gone.rowcount:
            log.warning("message file %s of %s@%s is gone (deleted behind the service's back); its index "
                        "row is dropped", shown_path(path), mname, dname)
            self._changed({mailbox_id})
        return "dropped", str(path)

    @staticmethod
    def _find_renamed(folder: Path, filename: str) -> str | None:
        """new/NAME or cur/NAME[:2,FLAGS] under another of those names (a reader moved or flagged it)."""
        base = _base_name(filename)
        found = []
        for sub in ("new", "cur"):
            with contextlib.suppress(OSError), os.scandir(folder / sub) as entries:
                for entry in entries:
                    if _base_name(f"{sub}/{entry.name}") == base and entry.is_file(follow_symlinks=False):
                        found.append(f"{sub}/{entry.name}")
        found = [rel for rel in found if rel != filename and clean_name(rel.split("/", 1)[1])]
        return found[0] if len(found) == 1 else None

    # -- reconcile ------------------------------------------------------------------------
    @_gated
    def reconcile(self, *, orphan_min_age: float = 0.0) -> ReconcileReport:
        """Repair the index after a crash: finish folder removals, tombstones and tmp files, index
        orphan files, drop rows whose file is gone, and recompute the counters. Each entry on its
        own: what cannot be fixed is logged and listed (:meth:`problems`), the rest is repaired.
        On PostgreSQL one node at a time (an advisory lock); the others keep delivering meanwhile."""
        with self.db.exclusive(RECONCILE_LOCK):
            return self._reconcile(orphan_min_age=orphan_min_age)

    def _reconcile(self, *, orphan_min_age: float) -> ReconcileReport:
        counts = dict.fromkeys(ReconcileReport.__dataclass_fields__, 0)
        problems: list[StoreProblem] = []
        with self.db.read() as session:
            domains = {d.name: d.id for d in session.scalars(select(Domain))}
            boxes = session.execute(
                select(Mailbox.id, Mailbox.name, Domain.name).join(Domain, Domain.id == Mailbox.domain_id)
            ).all()
        by_domain: dict[str, set[str]] = {}
        for _mid, mname, dname in boxes:
            by_domain.setdefault(dname, set()).add(mname)
        if self.root.is_dir():
            self._reconcile_trash(self.root, set(domains), counts, problems)
            for dname in domains:
                ddir = self.domain_dir(dname)
                bad = _not_a_folder([os.fspath(ddir)])
                if bad is not None:
                    problems.append(StoreProblem(shown_path(ddir), f"is {bad[1]}, not a folder: the mail of "
                                                                   f"{dname} is not read through it"))
                elif ddir.is_dir():
                    self._reconcile_trash(ddir, by_domain.get(dname, set()), counts, problems)
        touched: set[int] = set()
        rows_by_box = self._index_rows_by_mailbox()
        try:
            for mid, mname, dname in boxes:
                counts["mailboxes_checked"] += 1
                folder = self.mailbox_dir(dname, mname)
                before = len(problems)
                try:
                    if self._reconcile_mailbox(mid, folder, counts, rows_by_box.pop(mid, []),
                                               orphan_min_age=orphan_min_age, problems=problems) \
                            or len(problems) > before:   # a half-repaired mailbox is recounted too
                        touched.add(mid)
                except Exception as exc:   # one mailbox's failure does not stop the others
                    touched.add(mid)   # part of it may have been repaired: recount it
                    reason = exc.strerror if isinstance(exc, OSError) else getattr(exc, "message", None) or exc
                    problems.append(StoreProblem(shown_path(folder), f"this mailbox could not be repaired: {reason}"))
        finally:
            if touched:
                self.recount(touched)
                self._changed(touched)
            self._record(problems, counts)
        report = ReconcileReport(**counts)
        if any(v for k, v in counts.items() if k != "mailboxes_checked"):
            log.warning("reconcile repaired the store: %s", report)
        return report

    def _record(self, problems: list[StoreProblem], counts: dict[str, int]) -> None:
        """Replace the problem list with a repair's findings; log them (the first LOGGED_PROBLEMS)."""
        self.clear_problems()
        counts["problems"] = len(problems)
        for number, problem in enumerate(problems):
            self.note_problem(problem.path, problem.problem)
            if number < LOGGED_PROBLEMS:
                log.error("reconcile could not fix %s: %s", problem.path, problem.problem)
        if len(problems) > LOGGED_PROBLEMS:
            log.error("reconcile could not fix %d more entries (winpop status lists them)",
                      len(problems) - LOGGED_PROBLEMS)

    def _reconcile_trash(self, parent: Path, live: set[str], counts: dict[str, int],
                         problems: list[StoreProblem]) -> None:
        try:
            names = os.listdir(parent)
        except OSError as exc:
            problems.append(StoreProblem(shown_path(parent), f"cannot be listed: {exc.strerror}"))
            return
        for name in names:
            if not name.startswith(TRASH_PREFIX):
                continue
            entry = parent / name
            original = name[len(TRASH_PREFIX):].rsplit(".", 1)[0]
            target = parent / original
            try:
                is_dir = stat.S_ISDIR(os.lstat(entry).st_mode)
                if is_dir and original in live and not os.path.lexists(target):
                    os.rename(entry, target)  # the row deletion never committed: undo
                    counts["deletions_rolled_back"] += 1
                    log.warning("reconcile: restored %s (its deletion was not committed)", shown_path(target))
                    continue
                if is_dir:
                    shutil.rmtree(entry, ignore_errors=True)
                    if os.path.lexists(entry):
                        raise OSError(errno.EPERM, "some of its files cannot be deleted", os.fspath(entry))
                else:
                    os.unlink(entry)   # never followed: a link is removed, not its target
                counts["deletions_finished"] += 1
            except OSError as exc:
                problems.append(StoreProblem(shown_path(entry), "an interrupted removal could not be finished: "
                                                                f"{exc.strerror}"))

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
                           orphan_min_age: float = 0.0, problems: list[StoreProblem] | None = None) -> bool:
        """Repair one mailbox, entry by entry; what cannot be fixed goes to ``problems``.
        ``orphan_min_age``: leave younger unindexed files alone (another node sharing the mail root
        may be between its rename and its commit)."""
        problems = [] if problems is None else problems

        def trouble(path: str | Path, text: str) -> None:
            problems.append(StoreProblem(shown_path(path), text))

        base = os.fspath(folder)
        if index_rows is None:
            with self.db.read_conn() as conn:
                index_rows = [(r[0], r[1], bool(r[2])) for r in conn.execute(
                    select(Message.id, Message.filename, Message.deleted).where(Message.mailbox_id == mailbox_id))]
        rows = [_IndexRow(*r) for r in index_rows]
        live = [r for r in rows if not r.deleted]
        # The folders, never followed: a link in their place is reported, not read through.
        missing = []
        for path in _maildir_chain(os.fspath(self.root), base):
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                missing.append(path)
                continue
            if not stat.S_ISDIR(mode):
                trouble(path, f"is {_kind(mode)}, not a folder: this mailbox was not checked")
                return False
        if missing:
            if live and any(not p.endswith("/tmp") for p in missing):
                # An unmounted disk or a wrong mail root: the files may come back; keep the rows.
                trouble(missing[0], f"is missing: the {len(live)} indexed messages of this mailbox are kept; "
                                    "restore the folder, or check the root mail directory")
                return False
            for path in missing:
                log.warning("reconcile: %s of mailbox %s is missing; recreating it", shown_path(path), mailbox_id)
                os.makedirs(path, mode=0o700, exist_ok=True)
        regular: dict[str, os.stat_result | None] = {}   # lstat'ed lazily: only orphans need it
        odd: dict[str, str] = {}
        now = time.time()
        changed = False
        for sub in ("tmp", "new", "cur"):
            with os.scandir(f"{base}/{sub}") as entries:
                for entry in entries:
                    if sub == "tmp":
                        try:
                            st = entry.stat(follow_symlinks=False)
                            if not stat.S_ISDIR(st.st_mode) and now - st.st_mtime > TMP_MAX_AGE:
                                os.unlink(entry.path)
                                counts["tmp_removed"] += 1
                        except FileNotFoundError:
                            pass
                        except OSError as exc:
                            trouble(entry.path, f"an abandoned temporary file cannot be removed: {exc.strerror}")
                        continue
                    if entry.name.startswith("."):
                        continue   # Maildir: dot-files are not messages
                    rel = f"{sub}/{entry.name}"
                    try:   # the directory entry's type (d_type) where the file system gives it: no syscall
                        if entry.is_file(follow_symlinks=False):
                            regular[rel] = None
                        else:
                            odd[rel] = _kind(entry.stat(follow_symlinks=False).st_mode)
                    except FileNotFoundError:
                        continue
        if not rows and not regular and not odd:
            return False
        tombstones = [r for r in rows if r.deleted]
        if tombstones:
            failed = self._unlink_files(folder, [r.filename for r in tombstones])
            for filename, reason in failed.items():
                trouble(folder / filename, f"cannot be deleted ({reason}); the message is out of the mailbox, "
                                           "its file stays until it can be removed")
            done = [r.id for r in tombstones if r.filename not in failed]
            if done:
                with self.db.write() as session:
                    session.execute(delete(Message).where(Message.id.in_(done)))
                counts["tombstones_finished"] += len(done)
                changed = True
        indexed = {r.filename for r in rows}
        gone: list[_IndexRow] = []
        for r in live:
            if r.filename in regular:
                continue
            if r.filename in odd:
                trouble(folder / r.filename, f"is {odd[r.filename]}, not a message file: its index row is kept "
                                             "until the file is put back or the message deleted")
                continue
            gone.append(r)
        for rel, kind in odd.items():
            if rel not in indexed:
                trouble(folder / rel, f"is {kind}, not a message file: not indexed")
        if gone:   # a mail reader may have renamed new/X to cur/X:2,S: the row follows the file
            by_base: dict[str, list[str]] = {}
            for rel in regular:
                if rel not in indexed:
                    by_base.setdefault(_base_name(rel), []).append(rel)
            moved = {}
            for r in gone:
                candidates = by_base.get(_base_name(r.filename), [])
                if len(candidates) == 1 and clean_name(candidates[0].split("/", 1)[1]):
                    moved[r.id] = candidates.pop()
            if moved:
                with self.db.write() as session:
                    for msg_id, rel in moved.items():
                        session.execute(update(Message).where(Message.id == msg_id).values(filename=rel))
                indexed.update(moved.values())
                counts["files_refound"] += len(moved)
                changed = True
                gone = [r for r in gone if r.id not in moved]
        if gone and len(gone) == len(live) and not regular:
            # Not one file left: rather a wrong or freshly mounted mail root than mail deleted by
            # hand. Keep the rows (a POP3 read of a missing message still drops it then).
            trouble(folder, f"holds none of its {len(live)} indexed message files: they are kept in the index; "
                            "check the root mail directory")
            gone = []
        if gone:
            with self.db.write() as session:
                session.execute(delete(Message).where(Message.id.in_([r.id for r in gone])))
            counts["missing_dropped"] += len(gone)
            log.warning("reconcile: dropped %d index rows of mailbox %s whose file is gone", len(gone), mailbox_id)
            changed = True
        orphans = []
        for rel in sorted(rel for rel in regular if rel not in indexed):
            try:
                regular[rel] = os.lstat(f"{base}/{rel}")
            except FileNotFoundError:
                continue
            if stat.S_ISREG(regular[rel].st_mode):   # not swapped for something else meanwhile
                orphans.append(rel)
        if orphans and orphan_min_age > 0:
            cutoff = time.time() - orphan_min_age
            orphans = [rel for rel in orphans if regular[rel].st_mtime < cutoff]
        found: list[tuple[str, int, float]] = []
        for rel in orphans:
            path = f"{base}/{rel}"
            st = regular[rel]
            if st.st_size == 0:
                trouble(path, "is an empty file, not a message: not indexed")
                continue
            size = _size_from_name(rel) if clean_name(rel.split("/", 1)[1]) else None
            if size is None:
                try:
                    with open_message(path) as fh:
                        size = _file_pop3_size(fh)
                except OSError as exc:
                    trouble(path, f"cannot be read ({exc.strerror}): not indexed")
                    continue
            if not clean_name(rel.split("/", 1)[1]):
                try:
                    rel = self._rename_clean(base, rel, st.st_size, size)
                except OSError as exc:
                    trouble(path, f"has a name that is not UTF-8 text and cannot be renamed ({exc.strerror}): "
                                  "not indexed")
                    continue
            found.append((rel, size, st.st_mtime))
        if found:
            with self.db.write() as session:
                known = set(session.scalars(select(Message.uidl).where(Message.mailbox_id == mailbox_id)))
                for rel, size, mtime in found:
                    uidl = uidl_for(rel.split("/", 1)[1])
                    if uidl in known:
                        uidl = hashlib.sha1(rel.encode("utf-8")).hexdigest()
                    known.add(uidl)
                    session.add(Message(mailbox_id=mailbox_id, uidl=uidl, filename=rel, size=size,
                                        arrived_at=datetime.fromtimestamp(mtime, timezone.utc)))
            counts["orphans_indexed"] += len(found)
            log.warning("reconcile: indexed %d message files of mailbox %s missing from the index",
                        len(found), mailbox_id)
            changed = True
        return changed

    def _rename_clean(self, base: str, rel: str, octets: int, vsize: int) -> str:
        """Give a message file whose name is not UTF-8 text (names are bytes on Linux) a fresh Maildir
        name in the same folder, keeping a clean ``:2,FLAGS`` suffix; returns the new relative name."""
        sub, name = rel.split("/", 1)
        info = name.rsplit(":", 1)[1] if ":" in name else ""
        fresh = self._new_name(octets, vsize)
        if sub == "cur" and info and clean_name(info) and re.fullmatch(r"2,[A-Za-z]*", info):
            fresh += f":{info}"
        target = f"{base}/{sub}/{fresh}"
        if os.path.lexists(target):
            raise OSError(errno.EEXIST, "a file with the new name exists", target)
        os.rename(f"{base}/{rel}", target)
        fsync_dir(f"{base}/{sub}")
        log.warning("reconcile: renamed %s to %s (its name was not UTF-8 text)", shown_path(f"{base}/{rel}"), fresh)
        return f"{sub}/{fresh}"

    @_gated
    def adopt(self, mailbox_id: int, folder: Path) -> int:
        """Index the messages already in a mailbox's folder (a new mailbox over an existing Maildir)."""
        counts = dict.fromkeys(ReconcileReport.__dataclass_fields__, 0)
        problems: list[StoreProblem] = []
        if self._reconcile_mailbox(mailbox_id, folder, counts, None, problems=problems):
            self.recount([mailbox_id])
        for problem in problems[:LOGGED_PROBLEMS]:
            if self.note_problem(problem.path, problem.problem):
                log.error("adopting %s: %s: %s", shown_path(folder), problem.path, problem.problem)
        return counts["orphans_indexed"]

    # -- the mail root ----------------------------------------------------------------------
    def relocate(self, new_root: Path, commit: Callable[[], None]) -> dict[str, int]:
        """Move the running store to another mail root at once, or refuse with nothing changed.

        Deliveries, deletions and repairs wait meanwhile (the gate). The new root must already hold
        every indexed message file at its place (a copy made with ``cp -a`` or ``rsync``, or the same
        disk mounted elsewhere): the service never moves mail by itself, and never drops an index
        row because a root was switched. The folders of every domain and mailbox are made there,
        ``commit`` (which stores the setting) runs, and only then does the store switch."""
        new_root = Path(new_root)
        with self._gate.alone(timeout=30.0):
            with self.db.read() as session:
                boxes = session.execute(select(Mailbox.id, Mailbox.name, Domain.name)
                                        .join(Domain, Domain.id == Mailbox.domain_id)).all()
                domains = list(session.scalars(select(Domain.name)))
            folders = {mid: new_root / dname / mname for mid, mname, dname in boxes}
            messages = 0
            absent: list[str] = []
            with self.db.read_conn() as conn:
                result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                    select(Message.mailbox_id, Message.filename).where(Message.deleted.is_(False)))
                for mid, filename in result:
                    messages += 1
                    path = folders[mid] / filename
                    try:
                        present = stat.S_ISREG(os.lstat(path).st_mode)
                    except OSError:
                        present = False
                    if not present:
                        absent.append(os.fspath(path))
            if absent:
                raise Conflict(
                    f"The store holds {messages} messages and {len(absent)} of them are not in {new_root} "
                    f"(for example {shown_path(absent[0])}). Nothing was changed: the service never moves mail "
                    f"by itself. Copy the mail root there first (cp -a {self.root}/. {new_root}/), then set it "
                    "again; or set it while no mailbox holds mail.")
            old_root = self.root
            self.root = new_root
            try:
                self.check_root(create=True)
                for dname in domains:
                    self.create_domain_folder(dname)
                for _mid, mname, dname in boxes:
                    self.create_mailbox_folder(dname, mname)
                commit()
            except BaseException:
                self.root = old_root
                raise
            self.forget()
            self.clear_problems()
        log.warning("the mail root is now %s (was %s); %d messages found there", new_root, old_root, messages)
        return {"messages": messages, "mailboxes": len(boxes), "domains": len(domains)}

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
