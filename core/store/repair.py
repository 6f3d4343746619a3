"""The repair: files and index reconciled at start, each entry on its own (DESIGN §5).

Deletions mark rows first, unlink files second and drop rows last, and folder removals go through
a ``.deleted.*`` rename: the repair finishes or undoes whatever a crash interrupted, indexes
message files the index lacks, and drops rows whose file is gone. What it cannot fix it lists.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, select, update

from core.db import RECONCILE_LOCK, Database
from core.model import ReconcileReport
from core.store.index import IndexRow, MessageIndex
from core.store.maildir import (
    TMP_MAX_AGE,
    TRASH_PREFIX,
    MessageNames,
    base_name,
    clean_name,
    entry_kind,
    file_pop3_size,
    fsync_dir,
    not_a_folder,
    open_message,
    shown_path,
    size_from_name,
    uidl_for,
)
from core.store.mailroot import MailRoot
from core.store.problems import LOGGED_PROBLEMS, ProblemList, StoreProblem
from core.tables import Domain, Mailbox, Message

log = logging.getLogger(__name__)


class Repair:
    """Reconciles the mail root with the index, mailbox by mailbox, and recounts what it touched."""

    def __init__(self, db: Database, root: MailRoot, index: MessageIndex, names: MessageNames,
                 problems: ProblemList, changed: Callable[[set[int]], None]) -> None:
        self.db = db
        self.root = root
        self.index = index
        self.names = names
        self.problems = problems
        self.changed = changed

    def reconcile(self, *, orphan_min_age: float = 0.0) -> ReconcileReport:
        """Repair the index after a crash: finish folder removals, tombstones and tmp files, index
        orphan files, drop rows whose file is gone, and recompute the counters. Each entry on its
        own: what cannot be fixed is logged and listed (the store's problems), the rest is repaired.
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
        if self.root.path.is_dir():
            self._reconcile_trash(self.root.path, set(domains), counts, problems)
            for dname in domains:
                ddir = self.root.domain_dir(dname)
                bad = not_a_folder([os.fspath(ddir)])
                if bad is not None:
                    problems.append(StoreProblem(shown_path(ddir), f"is {bad[1]}, not a folder: the mail of "
                                                                   f"{dname} is not read through it"))
                elif ddir.is_dir():
                    self._reconcile_trash(ddir, by_domain.get(dname, set()), counts, problems)
        touched: set[int] = set()
        rows_by_box = self.index.rows_by_mailbox()
        try:
            for mid, mname, dname in boxes:
                counts["mailboxes_checked"] += 1
                folder = self.root.mailbox_dir(dname, mname)
                before = len(problems)
                try:
                    if self._reconcile_mailbox(mid, folder, counts, rows_by_box.pop(mid, []),
                                               orphan_min_age=orphan_min_age, problems=problems) \
                            or len(problems) > before:   # a half-repaired mailbox is recounted too
                        touched.add(mid)
                except Exception as exc:  # noqa: BLE001 - one mailbox's failure does not stop the others
                    touched.add(mid)   # part of it may have been repaired: recount it
                    reason = exc.strerror if isinstance(exc, OSError) else getattr(exc, "message", None) or exc
                    problems.append(StoreProblem(shown_path(folder), f"this mailbox could not be repaired: {reason}"))
        finally:
            if touched:
                self.index.recount(touched)
                self.changed(touched)
            self._record(problems, counts)
        report = ReconcileReport(**counts)
        if any(v for k, v in counts.items() if k != "mailboxes_checked"):
            log.warning("reconcile repaired the store: %s", report)
        return report

    def _record(self, problems: list[StoreProblem], counts: dict[str, int]) -> None:
        """Replace the problem list with a repair's findings; log them (the first LOGGED_PROBLEMS)."""
        self.problems.clear()
        counts["problems"] = len(problems)
        for number, problem in enumerate(problems):
            self.problems.note(problem.path, problem.problem)
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

    def _reconcile_mailbox(self, mailbox_id: int, folder: Path, counts: dict[str, int],
                           index_rows: list[IndexRow] | None = None, *,
                           orphan_min_age: float = 0.0, problems: list[StoreProblem] | None = None) -> bool:
        """Repair one mailbox, entry by entry; what cannot be fixed goes to ``problems``.
        ``orphan_min_age``: leave younger unindexed files alone (another node sharing the mail root
        may be between its rename and its commit)."""
        problems = [] if problems is None else problems

        def trouble(path: str | Path, text: str) -> None:
            problems.append(StoreProblem(shown_path(path), text))

        base = os.fspath(folder)
        rows = self.index.rows_of(mailbox_id) if index_rows is None else index_rows
        live = [r for r in rows if not r.deleted]
        # The folders, never followed: a link in their place is reported, not read through.
        missing = []
        for path in self.root.chain(base):
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                missing.append(path)
                continue
            if not stat.S_ISDIR(mode):
                trouble(path, f"is {entry_kind(mode)}, not a folder: this mailbox was not checked")
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
        regular: dict[str, None] = {}   # regular files by their directory entry (d_type), in listing order
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
                            odd[rel] = entry_kind(entry.stat(follow_symlinks=False).st_mode)
                    except FileNotFoundError:
                        continue
        if not rows and not regular and not odd:
            return False
        tombstones = [r for r in rows if r.deleted]
        if tombstones:
            failed = self.root.unlink_files(folder, [r.filename for r in tombstones])
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
        gone: list[IndexRow] = []
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
                    by_base.setdefault(base_name(rel), []).append(rel)
            moved = {}
            for r in gone:
                candidates = by_base.get(base_name(r.filename), [])
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
        orphans: dict[str, os.stat_result] = {}   # lstat'ed now: only orphans need it
        for rel in sorted(rel for rel in regular if rel not in indexed):
            try:
                st = os.lstat(f"{base}/{rel}")
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):   # not swapped for something else meanwhile
                orphans[rel] = st
        if orphans and orphan_min_age > 0:
            cutoff = time.time() - orphan_min_age
            orphans = {rel: st for rel, st in orphans.items() if st.st_mtime < cutoff}
        found: list[tuple[str, int, float]] = []
        for rel, st in orphans.items():
            path = f"{base}/{rel}"
            if st.st_size == 0:
                trouble(path, "is an empty file, not a message: not indexed")
                continue
            size = size_from_name(rel) if clean_name(rel.split("/", 1)[1]) else None
            if size is None:
                try:
                    with open_message(path) as fh:
                        size = file_pop3_size(fh)
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
                                        arrived_at=datetime.fromtimestamp(mtime, UTC)))
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
        fresh = self.names.new(octets, vsize)
        if sub == "cur" and info and clean_name(info) and re.fullmatch(r"2,[A-Za-z]*", info):
            fresh += f":{info}"
        target = f"{base}/{sub}/{fresh}"
        if os.path.lexists(target):
            raise OSError(errno.EEXIST, "a file with the new name exists", target)
        os.rename(f"{base}/{rel}", target)
        fsync_dir(f"{base}/{sub}")
        log.warning("reconcile: renamed %s to %s (its name was not UTF-8 text)", shown_path(f"{base}/{rel}"), fresh)
        return f"{sub}/{fresh}"

    def adopt(self, mailbox_id: int, folder: Path) -> int:
        """Index the messages already in a mailbox's folder (a new mailbox over an existing Maildir)."""
        counts = dict.fromkeys(ReconcileReport.__dataclass_fields__, 0)
        problems: list[StoreProblem] = []
        if self._reconcile_mailbox(mailbox_id, folder, counts, None, problems=problems):
            self.index.recount([mailbox_id])
        for problem in problems[:LOGGED_PROBLEMS]:
            if self.problems.note(problem.path, problem.problem):
                log.error("adopting %s: %s: %s", shown_path(folder), problem.path, problem.problem)
        return counts["orphans_indexed"]
