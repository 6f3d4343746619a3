"""The mail store: one Maildir per mailbox, indexed in the database (DESIGN §5).

:class:`MailStore` is the one object the service and the admin code hold; it assembles the parts,
each a module with one job:

- ``maildir``: Maildir files: unique names, durable writes, safe reads, POP3 sizes and UIDLs;
- ``mailroot``: the folders of domains and mailboxes under the mail root;
- ``index``: the message rows and the mailbox and domain counters in the database;
- ``delivery``: a message written durably into mailboxes and indexed in a group commit;
- ``maildrop``: a mailbox's messages as POP3 lists and deletes them;
- ``repair``: the start-up reconcile of files and index;
- ``problems``: what the store could not fix, for the status page;
- ``gate``: store operations pass together, a change of the mail root runs alone.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import stat
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from core.db import Database
from core.errors import Conflict
from core.model import DeliveryResult, MessageInfo, ReconcileReport
from core.store.delivery import Delivery
from core.store.gate import Gate
from core.store.index import MessageIndex
from core.store.maildir import MessageNames, shown_path
from core.store.maildrop import Maildrop, MissingFile
from core.store.mailroot import MailRoot
from core.store.problems import ProblemList, StoreProblems
from core.store.repair import Repair

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Relocation:
    """What a move to another mail root found there (MailStore.relocate)."""

    messages: int
    mailboxes: int
    domains: int


class MailStore:
    """Maildir folders under one mail root, and the message index with its counters."""

    def __init__(self, db: Database, root: Path, *, hostname: str | None = None) -> None:
        self.db = db
        # Called (from the writing thread) with the ids of mailboxes whose counters moved.
        self.on_change: list[Callable[[set[int]], None]] = []
        self._gate = Gate()
        self._mailroot = MailRoot(root)
        self._names = MessageNames(hostname)
        self._problems = ProblemList()
        self._index = MessageIndex(db)
        self._delivery = Delivery(db, self._mailroot, self._index, self._names, self._problems, self._changed)
        self._maildrop = Maildrop(db, self._mailroot, self._problems, self._changed)
        self._repair = Repair(db, self._mailroot, self._index, self._names, self._problems, self._changed)

    @property
    def root(self) -> Path:
        """The mail root (changed only by :meth:`relocate`)."""
        return self._mailroot.path

    @property
    def hostname(self) -> str:
        """This host's name as it goes into Maildir file names."""
        return self._names.hostname

    def _changed(self, mailbox_ids: set[int]) -> None:
        for callback in self.on_change:
            try:
                callback(mailbox_ids)
            except Exception:
                log.exception("store change listener failed")

    # -- problems -------------------------------------------------------------------------
    def note_problem(self, path: str | os.PathLike[str], problem: str) -> bool:
        """Remember something the store could not fix (for the status page); True if it is new."""
        return self._problems.note(path, problem)

    def clear_problems(self) -> None:
        self._problems.clear()

    def problems(self) -> StoreProblems:
        """What the last repair (and reads since) could not fix: all counted, MAX_PROBLEMS listed."""
        return self._problems.report()

    # -- folders --------------------------------------------------------------------------
    def domain_dir(self, domain: str) -> Path:
        return self._mailroot.domain_dir(domain)

    def mailbox_dir(self, domain: str, name: str) -> Path:
        return self._mailroot.mailbox_dir(domain, name)

    def check_folders(self, domain: str, name: str | None = None) -> None:
        """Refuse a domain or mailbox folder that is a symbolic link or not a folder."""
        self._mailroot.check_folders(domain, name)

    def check_root(self, *, create: bool = True) -> None:
        """Make sure the mail root exists and is writable (``create=False``: never make it anew)."""
        self._mailroot.check(create=create)

    def has_domains(self) -> bool:
        return self._index.has_domains()

    def create_domain_folder(self, domain: str, *, domains_exist: bool | None = None) -> Path:
        """Create (or adopt) a domain's folder; the mail root too while no domain exists.
        ``domains_exist``: whether the database holds a domain already, when the caller knows it
        (read in its own transaction); else read here."""
        exist = self.has_domains() if domains_exist is None else domains_exist
        return self._mailroot.create_domain_folder(domain, create_root=not exist)

    def create_mailbox_folder(self, domain: str, name: str, *, domains_exist: bool | None = None) -> Path:
        """Create (or adopt) the Maildir of a mailbox: tmp/, new/ and cur/."""
        exist = self.has_domains() if domains_exist is None else domains_exist
        return self._mailroot.create_mailbox_folder(domain, name, create_root=not exist)

    def removing(self, path: Path) -> contextlib.AbstractContextManager[None]:
        """Remove a folder around a database change; if the change fails the folder is put back."""
        return self._mailroot.removing(path)

    # -- delivery -------------------------------------------------------------------------
    def deliver(self, mailbox_id: int, data: bytes, *, uidl: str | None = None,
                arrived_at: datetime | None = None, check_quota: bool = True) -> DeliveryResult:
        """Store one message in one mailbox; returns once it is durable and indexed."""
        return self.deliver_many([mailbox_id], data, uidl=uidl, arrived_at=arrived_at,
                                 check_quota=check_quota)[0]

    def deliver_many(self, mailbox_ids: Iterable[int], data: bytes, *, uidl: str | None = None,
                     arrived_at: datetime | None = None, check_quota: bool = True,
                     base: str | None = None) -> list[DeliveryResult]:
        """Store one message in several mailboxes, durably, in one transaction (see Delivery)."""
        with self._gate.passing():
            return self._delivery.deliver_many(mailbox_ids, data, uidl=uidl, arrived_at=arrived_at,
                                               check_quota=check_quota, base=base)

    def forget(self, mailbox_ids: Iterable[int] | None = None) -> None:
        """Drop cached delivery targets (after a mailbox or domain is deleted; None: all)."""
        self._delivery.forget(mailbox_ids)

    # -- reading and deleting (POP3) ------------------------------------------------------
    def list_messages(self, mailbox_id: int) -> list[MessageInfo]:
        """The mailbox's messages in arrival order: the POP3 maildrop snapshot, from the index."""
        return self._maildrop.list_messages(mailbox_id)

    def delete_messages(self, mailbox_id: int, message_ids: Iterable[int]) -> int:
        """Remove messages (POP3's UPDATE state); see Maildrop.delete_messages."""
        with self._gate.passing():
            return self._maildrop.delete_messages(mailbox_id, message_ids)

    def mark_missing(self, mailbox_id: int, message_id: int) -> MissingFile:
        """A message file could not be opened: find out why; see Maildrop.mark_missing."""
        with self._gate.passing():
            return self._maildrop.mark_missing(mailbox_id, message_id)

    # -- repair ---------------------------------------------------------------------------
    def reconcile(self, *, orphan_min_age: float = 0.0) -> ReconcileReport:
        """Repair the index after a crash, entry by entry; see Repair.reconcile."""
        with self._gate.passing():
            return self._repair.reconcile(orphan_min_age=orphan_min_age)

    def adopt(self, mailbox_id: int, folder: Path) -> int:
        """Index the messages already in a mailbox's folder (a new mailbox over an existing Maildir)."""
        with self._gate.passing():
            return self._repair.adopt(mailbox_id, folder)

    def recount(self, mailbox_ids: Iterable[int] | None = None) -> None:
        """Set counters from the index (after a repair); all mailboxes when ``mailbox_ids`` is None."""
        self._index.recount(mailbox_ids)

    # -- the mail root ----------------------------------------------------------------------
    def relocate(self, new_root: Path, commit: Callable[[], None]) -> Relocation:
        """Move the running store to another mail root at once, or refuse with nothing changed.

        Deliveries, deletions and repairs wait meanwhile (the gate). The new root must already hold
        every indexed message file at its place (a copy made with ``cp -a`` or ``rsync``, or the same
        disk mounted elsewhere): the service never moves mail by itself, and never drops an index
        row because a root was switched. The folders of every domain and mailbox are made there,
        ``commit`` (which stores the setting) runs, and only then does the store switch."""
        new_root = Path(new_root)
        with self._gate.alone(timeout=30.0):
            boxes = self._index.mailboxes()
            domains = self._index.domain_names()
            folders = {mid: new_root / dname / mname for mid, mname, dname in boxes}
            messages = 0
            absent: list[str] = []
            for mid, filename in self._index.live_files():
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
            old_root = self._mailroot.path
            self._mailroot.path = new_root
            try:
                self.check_root(create=True)
                for dname in domains:
                    self.create_domain_folder(dname)
                for _mid, mname, dname in boxes:
                    self.create_mailbox_folder(dname, mname)
                commit()
            except BaseException:
                self._mailroot.path = old_root
                raise
            self.forget()
            self.clear_problems()
        log.warning("the mail root is now %s (was %s); %d messages found there", new_root, old_root, messages)
        return Relocation(messages=messages, mailboxes=len(boxes), domains=len(domains))

