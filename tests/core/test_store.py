"""The mail store against a real SQLite database and a real mail root."""
from __future__ import annotations

import os
import resource
import signal
from datetime import UTC

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from core.db import Database
from core.errors import QuotaExceeded, Unavailable
from core.store import MailStore
from core.store.maildir import pop3_size, to_maildir, uidl_for
from core.tables import Domain, Mailbox, Message
from tests.core.conftest import make_mailbox
from tests.support import db_url_for

MSG = b"From: a@b.c\r\nSubject: hi\r\n\r\nline one\r\n.dot line\r\n"


@pytest.mark.parametrize("data,size", [
    (b"", 0),
    (b"a\r\nb\r\n", 6),
    (b"a\nb\n", 6),
    (b"a\r\nb", 6),          # a CRLF is added after a last line without one
], ids=["empty", "crlf", "lf", "no-final-newline"])
def test_pop3_size_counts_crlf_line_ends(data, size):
    assert pop3_size(data) == size
    assert pop3_size(to_maildir(data)) == size


def test_delivery_writes_a_maildir_file_indexes_it_and_moves_the_counters(db, store):
    mid = make_mailbox(db, store, "alice@example.com")
    result = store.deliver(mid, MSG)
    [msg] = store.list_messages(mid)
    assert msg.uidl == result.uidl and msg.size == len(MSG) == result.size
    assert msg.path.startswith(str(store.mailbox_dir("example.com", "alice") / "new"))
    with open(msg.path, "rb") as fh:
        assert fh.read() == to_maildir(MSG)   # LF on disk, the Maildir convention
    assert os.stat(msg.path).st_mode & 0o777 == 0o600
    assert os.listdir(store.mailbox_dir("example.com", "alice") / "tmp") == []
    with db.read() as session:
        box = session.get(Mailbox, mid)
        dom = session.get(Domain, box.domain_id)
        assert (box.message_count, box.total_bytes) == (1, len(MSG))
        assert (dom.message_count, dom.total_bytes, dom.mailbox_count) == (1, len(MSG), 1)


def test_one_message_for_many_mailboxes_is_one_file_hard_linked(db, store):
    ids = [make_mailbox(db, store, f"user{i}@example.com") for i in range(3)]
    results = store.deliver_many(ids, MSG)
    paths = [store.list_messages(mid)[0].path for mid in ids]
    assert len({os.stat(p).st_ino for p in paths}) == 1
    assert len({r.uidl for r in results}) == 1
    with db.read() as session:
        assert session.query(Domain).one().message_count == 3


def test_quota_refuses_without_storing_anything(db, store):
    small = make_mailbox(db, store, "small@example.com", quota=len(MSG) + 10)
    other = make_mailbox(db, store, "other@example.com")
    store.deliver(small, MSG)
    with pytest.raises(QuotaExceeded) as full:
        store.deliver_many([other, small], MSG)
    assert not full.value.permanent and "full" in full.value.message
    with pytest.raises(QuotaExceeded) as huge:
        store.deliver(small, MSG * 10)
    assert huge.value.permanent
    assert len(store.list_messages(small)) == 1 and store.list_messages(other) == []
    assert len(os.listdir(store.mailbox_dir("example.com", "other") / "new")) == 0


def test_delete_removes_files_rows_and_counters(db, store):
    mid = make_mailbox(db, store, "alice@example.com")
    first, second = store.deliver(mid, MSG), store.deliver(mid, MSG + b"more\r\n")
    paths = {m.id: m.path for m in store.list_messages(mid)}
    assert store.delete_messages(mid, [first.message_id]) == 1
    assert not os.path.exists(paths[first.message_id]) and os.path.exists(paths[second.message_id])
    assert store.delete_messages(mid, [first.message_id]) == 0   # twice is harmless
    with db.read() as session:
        box = session.get(Mailbox, mid)
        assert (box.message_count, box.total_bytes) == (1, second.size)
        assert session.query(Message).count() == 1


def test_reconcile_indexes_orphans_drops_missing_and_finishes_tombstones(db, store):
    mid = make_mailbox(db, store, "alice@example.com")
    kept, lost, doomed = (store.deliver(mid, MSG + bytes([65 + i]) + b"\r\n") for i in range(3))
    files = {m.id: m.path for m in store.list_messages(mid)}
    os.unlink(files[lost.message_id])                       # file gone, row left
    with db.write() as session:                             # crash between the two steps of a delete
        session.query(Message).filter_by(id=doomed.message_id).update({"deleted": True})
    folder = store.mailbox_dir("example.com", "alice")
    orphan = folder / "new" / "1700000000.M1P1Q1.elsewhere,S=5,W=7"
    orphan.write_bytes(b"x\ny\n\n")                         # delivered, never indexed
    stale = folder / "tmp" / "half-written"
    stale.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    report = store.reconcile()
    repairs = (report.orphans_indexed, report.missing_dropped, report.tombstones_finished, report.tmp_removed)
    assert repairs == (1, 1, 1, 1)
    assert not os.path.exists(files[doomed.message_id]) and not stale.exists()
    uidls = {m.uidl for m in store.list_messages(mid)}
    assert uidls == {kept.uidl, "1700000000.M1P1Q1.elsewhere"}
    with db.read() as session:
        box = session.get(Mailbox, mid)
        assert (box.message_count, box.total_bytes) == (2, kept.size + 7)
    assert store.reconcile().orphans_indexed == 0             # idempotent


def test_folder_removal_is_undone_when_the_database_change_fails(db, store):
    mid = make_mailbox(db, store, "alice@example.com")
    store.deliver(mid, MSG)
    folder = store.mailbox_dir("example.com", "alice")
    with pytest.raises(RuntimeError):
        with store.removing(folder):
            raise RuntimeError("commit failed")
    assert folder.is_dir() and len(os.listdir(folder / "new")) == 1


def test_reconcile_finishes_or_rolls_back_interrupted_folder_removals(db, store):
    mid = make_mailbox(db, store, "alice@example.com")
    store.deliver(mid, MSG)
    folder = store.mailbox_dir("example.com", "alice")
    # Crash after the rename but before the row was deleted: the mailbox comes back.
    os.rename(folder, folder.with_name(".deleted.alice.0123456789ab"))
    # Crash after the row of another (gone) mailbox was deleted: its trash goes.
    (folder.parent / ".deleted.bob.ba9876543210" / "new").mkdir(parents=True)
    report = store.reconcile()
    assert (report.deletions_rolled_back, report.deletions_finished) == (1, 1)
    assert folder.is_dir() and len(store.list_messages(mid)) == 1
    assert sorted(os.listdir(folder.parent)) == ["alice"]


def test_a_failed_write_leaves_no_file_and_no_row(db, store):
    """A disk that fills up mid-message: nothing half-written is visible or indexed."""
    mid = make_mailbox(db, store, "alice@example.com")
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, old_limit[1]))
    try:
        with pytest.raises(Unavailable, match="could not write|disk"):
            store.deliver(mid, b"x" * (2 * 1024 * 1024))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    folder = store.mailbox_dir("example.com", "alice")
    assert os.listdir(folder / "tmp") == [] and os.listdir(folder / "new") == []
    assert store.list_messages(mid) == []


def test_an_index_that_cannot_be_written_leaves_no_file_and_no_count(db, store):
    """The index transaction fails (here a trigger standing in for a full or broken database):
    delivery says so in words, and the message file and the counters are as before."""
    from datetime import datetime

    from sqlalchemy import text

    mid = make_mailbox(db, store, "alice@example.com")
    when = datetime(2026, 11, 27, 12, 30, 15, 123456, tzinfo=UTC)
    store.deliver(mid, MSG, arrived_at=when)
    with db.read() as session:   # the row written by delivery reads back as the ORM wrote it
        row = session.query(Message).filter_by(mailbox_id=mid).one()
        assert row.arrived_at.replace(tzinfo=UTC) == when and row.deleted is False
    with db.engine.begin() as conn:
        if db.is_postgres:
            conn.execute(text("CREATE FUNCTION no_more() RETURNS trigger LANGUAGE plpgsql AS "
                              "$$ BEGIN RAISE EXCEPTION 'database or disk is full'; END $$"))
            conn.execute(text("CREATE TRIGGER no_more BEFORE INSERT ON messages "
                              "FOR EACH ROW EXECUTE FUNCTION no_more()"))
        else:
            conn.execute(text("CREATE TRIGGER no_more BEFORE INSERT ON messages "
                              "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"))
    try:
        with pytest.raises(Exception, match="disk is full") as info:
            store.deliver(mid, MSG)
        if db.has_sqlite_writer:
            assert isinstance(info.value, Unavailable) and "index could not be written" in str(info.value)
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER no_more ON messages" if db.is_postgres else "DROP TRIGGER no_more"))
            if db.is_postgres:
                conn.execute(text("DROP FUNCTION no_more()"))
    folder = store.mailbox_dir("example.com", "alice")
    assert len(os.listdir(folder / "new")) == 1 and os.listdir(folder / "tmp") == []
    with db.read() as session:
        assert session.get(Mailbox, mid).message_count == 1
    store.deliver(mid, MSG)            # and the next delivery works
    assert len(store.list_messages(mid)) == 2


def test_uidl_of_a_file_name_is_stable_and_valid():
    assert uidl_for("1700.M5P9Q1.host,S=10,W=12") == "1700.M5P9Q1.host"
    assert uidl_for("P347865.eml,S=1,W=1") == "P347865.eml"
    long_name = "x" * 100 + ",S=1"
    assert len(uidl_for(long_name)) == 40 and uidl_for(long_name) == uidl_for(long_name)
    assert uidl_for("has space.eml") != "has space.eml"


class StoreMachine(RuleBasedStateMachine):
    """Deliver and delete in any order: the counters always equal what is on disk."""

    def __init__(self):
        super().__init__()
        import tempfile
        from pathlib import Path
        self.tmp = Path(tempfile.mkdtemp(prefix="storemachine-"))
        self.db = Database(db_url_for(self.tmp / "t.db"))
        self.db.upgrade()
        self.store = MailStore(self.db, self.tmp / "root", hostname="h")
        self.boxes = [make_mailbox(self.db, self.store, f"u{i}@d{i % 2}.com") for i in range(3)]

    def teardown(self):
        import shutil
        self.db.dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(recipients=st.lists(st.integers(0, 2), min_size=1, max_size=3),
          body=st.binary(max_size=300))
    def deliver(self, recipients, body):
        self.store.deliver_many([self.boxes[i] for i in recipients], body)

    @precondition(lambda self: True)
    @rule(box=st.integers(0, 2), pick=st.lists(st.integers(0, 20), max_size=4))
    def delete(self, box, pick):
        messages = self.store.list_messages(self.boxes[box])
        ids = [messages[i].id for i in pick if i < len(messages)]
        self.store.delete_messages(self.boxes[box], ids)

    @rule()
    def reconcile(self):
        report = self.store.reconcile()
        assert report.orphans_indexed == report.missing_dropped == 0

    @invariant()
    def counters_equal_disk(self):
        with self.db.read() as session:
            boxes = {b.id: b for b in session.query(Mailbox)}
            domains = {d.id: d for d in session.query(Domain)}
            names = {d.id: d.name for d in domains.values()}
        per_domain: dict[int, list[int]] = {}
        for box in boxes.values():
            folder = self.store.mailbox_dir(names[box.domain_id], box.name)
            files = [folder / "new" / n for n in os.listdir(folder / "new")]
            sizes = [pop3_size(f.read_bytes()) for f in files]
            assert (box.message_count, box.total_bytes) == (len(sizes), sum(sizes))
            agg = per_domain.setdefault(box.domain_id, [0, 0])
            agg[0] += len(sizes)
            agg[1] += sum(sizes)
        for did, (count, total) in per_domain.items():
            assert (domains[did].message_count, domains[did].total_bytes) == (count, total)


StoreMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=12, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
test_store_counters_always_equal_disk = StoreMachine.TestCase


def test_concurrent_deliveries_are_exact_and_quota_refusals_stay_their_own(db, store):
    """Many threads at once (their index writes are committed in groups): every acknowledged
    message is indexed once, a full mailbox refuses only the deliveries that do not fit, and the
    counters equal what is on disk."""
    import threading

    roomy = make_mailbox(db, store, "roomy@example.com")
    tight = make_mailbox(db, store, "tight@example.com", quota=5 * len(MSG))
    acked: list[str] = []
    refused: list[Exception] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(10):
            body = MSG + f"{n}-{i}\r\n".encode()
            try:
                result = store.deliver_many([roomy, tight] if i % 2 else [roomy], body)
            except QuotaExceeded as exc:
                with lock:
                    refused.append(exc)
                continue
            with lock:
                acked.append(result[0].uidl)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    tight_msgs = store.list_messages(tight)
    assert len(tight_msgs) <= 5 and len(refused) == 60 - len(tight_msgs)
    assert len(acked) == 120 - len(refused)
    assert sorted(m.uidl for m in store.list_messages(roomy)) == sorted(acked)
    for mid in (roomy, tight):
        messages = store.list_messages(mid)
        with db.read() as session:
            box = session.get(Mailbox, mid)
            assert (box.message_count, box.total_bytes) == (len(messages), sum(m.size for m in messages))
        on_disk = os.listdir(os.path.dirname(messages[0].path))
        assert sorted(on_disk) == sorted(os.path.basename(m.path) for m in messages)
