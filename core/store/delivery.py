"""Delivery: one message written durably into one or more Maildirs and indexed in a group commit.

Durable before it is acknowledged (DESIGN §5): write to ``tmp/``, fsync, rename into ``new/``
(hard links for the other mailboxes), fsync the folders, then insert the index rows and move the
counters in one transaction. Deliveries that arrive while another commits share its fsyncs and
its transaction.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from core.db import Database
from core.errors import (
    Invalid,
    MailError,
    NotFound,
    QuotaExceeded,
    Unavailable,
    database_error,
)
from core.model import DeliveryResult
from core.store.index import (
    BUMP_DOMAIN,
    BUMP_MAILBOX,
    CoreIndexWriter,
    IndexWriter,
    MessageIndex,
    SqliteIndexWriter,
)
from core.store.maildir import (
    BIG_MESSAGE,
    UIDL_OK,
    MessageNames,
    disk_error,
    fsync_dir,
    not_a_folder,
    pop3_size,
    shown_path,
    to_maildir,
    uidl_for,
    write_durably,
    write_maildir_durably,
)
from core.store.mailroot import MailRoot
from core.store.problems import ProblemList

log = logging.getLogger(__name__)

# mailbox id → (domain id, address, Maildir path as a string)
Target = tuple[int, str, str]
_TARGET_CACHE_MAX = 50_000


@dataclasses.dataclass(eq=False)
class _Pending:
    """One delivery waiting for the group commit: its files are in place, fsynced; its folders
    and index rows are not yet."""

    ids: list[int]
    targets: dict[int, Target]
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


class Delivery:
    """Stores messages in mailboxes: files first, durably; then their index rows, in batches."""

    def __init__(self, db: Database, root: MailRoot, index: MessageIndex, names: MessageNames,
                 problems: ProblemList, changed: Callable[[set[int]], None]) -> None:
        self.db = db
        self.root = root
        self.index = index
        self.names = names
        self.problems = problems
        self.changed = changed
        # mailbox id → (domain id, address, Maildir): delivery's look-up, forgotten on deletion.
        self._target_cache: dict[int, Target] = {}
        self._cache_lock = threading.Lock()
        # Group commit of deliveries (see _group_commit).
        self._gc_cond = threading.Condition()
        self._gc_queue: list[_Pending] = []
        self._gc_busy = False

    def deliver_many(self, mailbox_ids: Iterable[int], data: bytes, *, uidl: str | None = None,
                     arrived_at: datetime | None = None, check_quota: bool = True,
                     base: str | None = None) -> list[DeliveryResult]:
        """Store one message in several mailboxes (hard links of one file), durably, in one
        transaction. Raises QuotaExceeded (nothing stored) if any mailbox would go over quota."""
        ids = list(dict.fromkeys(mailbox_ids))
        if not ids:
            return []
        if uidl is not None and not UIDL_OK.match(uidl):
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
                tmp_path = f"{first_dir}/tmp/{self.names.new(0, 0).split(',', 1)[0]}.big"
                size, vsize = write_maildir_durably(tmp_path, data)
            else:
                size, vsize = len(body), pop3_size(body)
            if base is None:
                name = self.names.new(size, vsize)
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
            raise disk_error(exc) from None
        entry = _Pending(ids=ids, targets=targets, name=name, uidl=uidl, vsize=vsize,
                         when=arrived_at or datetime.now(UTC), check_quota=check_quota,
                         dirs={f"{targets[mid][2]}/new" for mid in ids})
        try:
            results = self._group_commit(entry)
        except BaseException:
            for path in placed:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        self.changed(set(ids))
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
            except BaseException as exc:  # noqa: BLE001 - the whole batch failed: every delivery in it says so
                for item in batch:
                    if item.error is None and item.results is None:
                        item.error = exc if not isinstance(exc, OSError) else disk_error(exc)
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
                    accepted = self._index_batch(SqliteIndexWriter(cur), batch, all_ids)
            except sqlite3.Error as exc:
                refusal = database_error(exc)   # a full disk (DiskFull) or a lock held too long, worded
                if refusal is None:
                    raise Unavailable(f"The message index could not be written: {exc}.") from exc
                text = refusal.message
                raise type(refusal)(f"The message index could not be written: {text[:1].lower()}{text[1:]}") from exc
        else:
            with self.db.write_conn() as conn:
                accepted = self._index_batch(CoreIndexWriter(conn), batch, all_ids)
        for item in accepted:  # only once the transaction committed
            item.results = item.pending_results

    def _index_batch(self, index: IndexWriter, batch: list[_Pending], all_ids: list[int]) -> list[_Pending]:
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
            index.bump(BUMP_MAILBOX, {"mid": mid, "n": n, "sz": size})
        for did, (n, size) in sorted(by_domain.items()):
            index.bump(BUMP_DOMAIN, {"did": did, "n": n, "sz": size})
        return accepted

    # -- targets --------------------------------------------------------------------------
    def forget(self, mailbox_ids: Iterable[int] | None = None) -> None:
        """Drop cached delivery targets (after a mailbox or domain is deleted; None: all)."""
        with self._cache_lock:
            if mailbox_ids is None:
                self._target_cache.clear()
            else:
                for mid in mailbox_ids:
                    self._target_cache.pop(mid, None)

    def _targets(self, ids: list[int]) -> dict[int, Target]:
        """mailbox id → (domain id, address, Maildir path as a string) for delivery."""
        with self._cache_lock:
            found = {mid: self._target_cache[mid] for mid in ids if mid in self._target_cache}
        if len(found) < len(ids):
            rows = self.index.delivery_targets([m for m in ids if m not in found])
            fresh = {mid: (did, f"{mname}@{dname}", os.fspath(self.root.mailbox_dir(dname, mname)))
                     for mid, did, mname, dname in rows}
            with self._cache_lock:
                if len(self._target_cache) > _TARGET_CACHE_MAX:
                    self._target_cache.clear()
                self._target_cache.update(fresh)
            found.update(fresh)
        missing = [mid for mid in ids if mid not in found]
        if missing:
            raise NotFound(f"No mailbox with id {missing[0]} (it was deleted).")
        for _did, address, folder in found.values():
            try:
                bad = not_a_folder(self.root.chain(folder)[:-1])
            except OSError as exc:
                raise disk_error(exc) from None
            if bad is not None:
                if self.problems.note(bad[0], f"{bad[1]}, not a folder: no delivery to {address} goes through it"):
                    log.error("delivery to %s refused: %s is %s, not a folder", address, shown_path(bad[0]), bad[1])
                raise Unavailable(f"The mailbox folder of {address} is not a real folder; delivery is refused "
                                  "until an administrator replaces it.")
        return found
