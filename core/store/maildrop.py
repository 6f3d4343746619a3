"""The maildrop: a mailbox's messages as POP3 lists, reads and deletes them, from the index."""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, delete, select, update

from core.db import Database
from core.errors import NotFound, Unavailable
from core.model import MessageInfo
from core.store.index import MessageIndex
from core.store.maildir import not_a_folder, shown_path
from core.store.mailroot import MailRoot
from core.store.problems import ProblemList
from core.tables import Domain, Mailbox, Message

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MissingFile:
    """What became of a message whose file could not be opened (Maildrop.mark_missing)."""

    outcome: Literal["dropped", "moved", "present", "unavailable"]
    path: str   # the file's path (its new one when moved); "" when another session dropped it first


class Maildrop:
    """Lists a mailbox's messages, deletes them (POP3's UPDATE state), and follows files that moved."""

    def __init__(self, db: Database, root: MailRoot, problems: ProblemList,
                 changed: Callable[[set[int]], None]) -> None:
        self.db = db
        self.root = root
        self.problems = problems
        self.changed = changed

    def list_messages(self, mailbox_id: int) -> list[MessageInfo]:
        """The mailbox's messages in arrival order: the POP3 maildrop snapshot, from the index."""
        with self.db.read() as session:
            row = session.execute(
                select(Mailbox.name, Domain.name).join(Domain, Domain.id == Mailbox.domain_id)
                .where(Mailbox.id == mailbox_id)
            ).first()
            if row is None:
                raise NotFound(f"No mailbox with id {mailbox_id}.")
            folder = self.root.mailbox_dir(row[1], row[0])
            messages = session.execute(
                select(Message.id, Message.uidl, Message.size, Message.filename, Message.arrived_at)
                .where(Message.mailbox_id == mailbox_id, Message.deleted.is_(False))
                .order_by(Message.id)
            ).all()
        bad = not_a_folder(self.root.chain(folder))
        if bad is not None:   # message files are opened with O_NOFOLLOW; their folders are checked here
            self.problems.note(bad[0], f"is {bad[1]}, not a folder: the mailbox {row[0]}@{row[1]} cannot be read")
            raise Unavailable(f"The folder of {row[0]}@{row[1]} is not a real folder ({shown_path(bad[0])}).")
        return [MessageInfo(id=m.id, uidl=m.uidl, size=m.size, path=str(folder / m.filename),
                            arrived_at=m.arrived_at) for m in messages]

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
            MessageIndex.bump(session, mailbox_id, box.domain_id, messages=-len(rows), size=-sum(r.size for r in rows))
            domain = session.get(Domain, box.domain_id)
            assert domain is not None   # a mailbox's domain goes only with the mailbox (ON DELETE CASCADE)
            folder = self.root.mailbox_dir(domain.name, box.name)
        failed = self.root.unlink_files(folder, [r.filename for r in rows])
        for filename, reason in failed.items():
            path = folder / filename
            if self.problems.note(path, f"cannot be deleted ({reason}); the message is out of the mailbox, "
                                        "its file stays until it can be removed"):
                log.error("a deleted message's file %s cannot be removed: %s", shown_path(path), reason)
        done = [r.id for r in rows if r.filename not in failed]
        try:
            if done:
                with self.db.write() as session:
                    session.execute(delete(Message).where(Message.id.in_(done)))
        except Exception as exc:  # noqa: BLE001 - the rows stay marked: not listed, dropped by the next repair
            log.error("deleted messages of mailbox %s keep their marked index rows for now: %s", mailbox_id, exc)
        self.changed({mailbox_id})
        return len(rows)

    def mark_missing(self, mailbox_id: int, message_id: int) -> MissingFile:
        """A message file could not be opened: find out why and repair the index if the file is gone.

        The outcome: "dropped" (the file is gone: its row and counters are removed),
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
            return MissingFile("dropped", "")   # already gone: another session, or the repair
        filename, size, mname, dname, domain_id = row
        folder = self.root.mailbox_dir(dname, mname)
        path = folder / filename
        problem = self.root.maildir_problem(folder)
        if problem is not None:
            if self.problems.note(folder, f"the mailbox {mname}@{dname} cannot be read ({problem}); its "
                                          "messages are kept in the index"):
                log.error("mailbox %s@%s cannot be read: %s", mname, dname, problem)
            return MissingFile("unavailable", str(path))
        if os.path.lexists(path):
            return MissingFile("present", str(path))
        moved = self.root.find_renamed(folder, filename)
        if moved is not None:
            with self.db.write() as session:
                taken = session.scalars(select(Message.id).where(Message.mailbox_id == mailbox_id,
                                                                 Message.filename == moved)).first()
                if taken is None:
                    session.execute(update(Message).where(Message.id == message_id).values(filename=moved))
            if taken is None:
                log.warning("message file %s was renamed to %s; the index follows it", shown_path(path), moved)
                return MissingFile("moved", str(folder / moved))
        with self.db.write() as session:
            dropped = cast(CursorResult[Any], session.execute(
                delete(Message).where(Message.id == message_id, Message.deleted.is_(False))))
            gone = bool(dropped.rowcount)
            if gone:
                MessageIndex.bump(session, mailbox_id, domain_id, messages=-1, size=-size)
        if gone:
            log.warning("message file %s of %s@%s is gone (deleted behind the service's back); its index "
                        "row is dropped", shown_path(path), mname, dname)
            self.changed({mailbox_id})
        return MissingFile("dropped", str(path))
