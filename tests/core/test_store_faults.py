"""The store against real faults in the mail root (issue 14): file names that are not UTF-8,
files that cannot be deleted (chattr +i) or read, folders and links where message files should
be, a mail root that changes. Each repair handles entries one by one and lists what it left."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.admin import check_mailroot_path, import_base
from core.errors import Conflict, Invalid, Unavailable
from core.ipc.wire import to_wire
from core.store import Relocation
from core.store.maildir import file_pop3_size, open_message, pop3_size, uidl_for
from core.store.maildrop import MissingFile
from core.tables import Mailbox, Message
from tests.core.conftest import make_mailbox
from tests.support import ROOT

MSG = b"From: a@b.c\r\nSubject: hi\r\n\r\nbody\r\n"
BAD_NAME = os.fsdecode(b"1700000000.M1P1Q1.caf\xe9,S=5")   # Latin-1 é: not UTF-8


def counters(db, mid: int) -> tuple[int, int]:
    with db.read() as session:
        box = session.get(Mailbox, mid)
        return box.message_count, box.total_bytes


def problem_for(store, path: Path | str) -> str:
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")
    found = [p.problem for p in store.problems().items if p.path == shown]
    assert found, f"no problem listed for {shown}: {store.problems()}"
    return found[0]


@contextlib.contextmanager
def immutable(path: Path):
    """chattr +i on ``path`` (skips the test where the file system or the user cannot)."""
    result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"chattr +i is not possible here: {result.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_file_name_that_is_not_utf8_is_renamed_and_indexed(db, store):
    mid = make_mailbox(db, store, "alice@example.com")
    new = store.mailbox_dir("example.com", "alice") / "new"
    (new / BAD_NAME).write_bytes(b"x\ny\n")
    report = store.reconcile()
    assert report.orphans_indexed == 1 and report.problems == 0
    [msg] = store.list_messages(mid)
    name = os.path.basename(msg.path)
    name.encode("utf-8")                                  # a clean Maildir name now
    assert os.listdir(new) == [name] and msg.size == pop3_size(b"x\ny\n") == 6
    with open(msg.path, "rb") as fh:
        assert fh.read() == b"x\ny\n"
    assert counters(db, mid) == (1, 6)
    assert store.reconcile().orphans_indexed == 0         # stable: the second start changes nothing


def test_one_bad_entry_does_not_stop_the_repair(db, store):
    """An immutable file whose deletion was interrupted, a folder where a message file should be:
    both listed with path and reason; every other mailbox is still repaired and recounted."""
    alice = make_mailbox(db, store, "alice@example.com")
    bob = make_mailbox(db, store, "bob@example.com")
    doomed = store.deliver(alice, MSG)
    keep = store.deliver(alice, MSG + b"more\r\n")
    lost = store.deliver(bob, MSG)
    paths = {m.id: m.path for m in store.list_messages(alice) + store.list_messages(bob)}
    with db.write() as session:       # a crash between marking and unlinking
        session.query(Message).filter_by(id=doomed.message_id).update({"deleted": True})
    os.unlink(paths[lost.message_id])                      # gone behind the service's back
    os.unlink(paths[keep.message_id])
    os.mkdir(paths[keep.message_id])                       # a folder in its place
    stray = store.mailbox_dir("example.com", "bob") / "cur" / "1700000001.M2P2Q2.other:2,S"
    stray.write_bytes(b"stray\n")
    with db.write() as session:       # counters out of step, as after a crash
        session.query(Mailbox).update({"message_count": 99})
    with immutable(Path(paths[doomed.message_id])):
        report = store.reconcile()
        assert report.problems == 2 and report.missing_dropped == 1 and report.orphans_indexed == 1
        assert "cannot be deleted (Operation not permitted)" in problem_for(store, paths[doomed.message_id])
        assert "a folder, not a message file" in problem_for(store, paths[keep.message_id])
        assert [m.uidl for m in store.list_messages(bob)] == ["1700000001.M2P2Q2.other"]
        assert counters(db, bob) == (1, pop3_size(b"stray\n"))
        assert counters(db, alice) == (1, keep.size)       # the folder's row is kept; the marked one not counted
        again = store.reconcile()                          # the next start: the same list, nothing worse
        assert again.problems == 2 and store.problems().total == 2
    assert store.reconcile().tombstones_finished == 1      # once it can be deleted, it is


def reconcile_without_read_override(db, store) -> tuple[dict, int]:
    """(problems, orphans indexed) of a repair that cannot read what its permissions forbid: root
    runs it in a child without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (setpriv), as the service's
    unprivileged user would."""
    if os.geteuid() != 0:
        report = store.reconcile()
        return to_wire(store.problems()), report.orphans_indexed
    if shutil.which("setpriv") is None:
        pytest.skip("root reads any file, and setpriv (util-linux) is not here to drop that right")
    script = ("import json, sys; from core.db import Database; from core.ipc.wire import to_wire; "
              "from core.store import MailStore; "
              "db = Database(sys.argv[1]); store = MailStore(db, sys.argv[2]); report = store.reconcile(); "
              "print(json.dumps([to_wire(store.problems()), report.orphans_indexed]))")
    url = db.engine.url.render_as_string(hide_password=False)
    result = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-c",
                             script, url, str(store.root)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    problems, indexed = json.loads(result.stdout.splitlines()[-1])
    return problems, indexed


def test_an_unreadable_file_is_listed_not_indexed(db, store):
    mid = make_mailbox(db, store, "alice@example.com")
    path = store.mailbox_dir("example.com", "alice") / "new" / "no-size-in-name"
    path.write_bytes(b"secret\n")
    path.chmod(0)
    (path.parent / "readable").write_bytes(b"fine\n")
    problems, indexed = reconcile_without_read_override(db, store)
    assert indexed == 1 and problems["total"] == 1
    assert problems["items"][0] == {"path": str(path), "problem": "cannot be read (Permission denied): not indexed"}
    assert [os.path.basename(m.path) for m in store.list_messages(mid)] == ["readable"]


def test_dot_files_empty_files_links_and_pipes_are_never_messages(db, store, tmp_path):
    mid = make_mailbox(db, store, "alice@example.com")
    folder = store.mailbox_dir("example.com", "alice")
    secret = tmp_path / "secret"
    secret.write_bytes(b"root:x:0:0\n")
    (folder / "new" / ".hidden").write_bytes(b"x\n")
    (folder / "new" / "empty").write_bytes(b"")
    os.symlink(secret, folder / "new" / "link")
    os.mkfifo(folder / "cur" / "pipe")
    (folder / "new" / "subfolder").mkdir()
    report = store.reconcile()
    assert store.list_messages(mid) == [] and report.orphans_indexed == 0
    assert "empty file" in problem_for(store, folder / "new" / "empty")
    assert "symbolic link" in problem_for(store, folder / "new" / "link")
    assert "named pipe" in problem_for(store, folder / "cur" / "pipe")
    assert "a folder" in problem_for(store, folder / "new" / "subfolder")
    assert store.problems().total == 4                  # the dot-file is simply not mail


def test_message_files_are_opened_without_following_links(tmp_path):
    real = tmp_path / "real"
    real.write_bytes(b"a\r\nb")
    os.symlink(real, tmp_path / "link")
    os.mkfifo(tmp_path / "pipe")
    with open_message(real) as fh:
        assert fh.read() == b"a\r\nb"
    with pytest.raises(OSError):
        open_message(tmp_path / "link")
    with pytest.raises(OSError):
        open_message(tmp_path / "pipe")                    # O_NONBLOCK: no hang, then "not a regular file"
    with pytest.raises(OSError):
        open_message(tmp_path)


def test_size_of_a_file_read_in_pieces_matches_pop3_size(tmp_path):
    data = (b"x" * 65535 + b"\r\n") + b"y\n" * 3 + b"tail"   # a CRLF split across two pieces
    (tmp_path / "m").write_bytes(data)
    with open_message(tmp_path / "m") as fh:
        assert file_pop3_size(fh) == pop3_size(data)


def test_no_delivery_through_a_symlinked_mailbox_or_domain_folder(db, store, tmp_path):
    mid = make_mailbox(db, store, "alice@example.com")
    store.deliver(mid, MSG)
    elsewhere = tmp_path / "elsewhere"
    folder = store.mailbox_dir("example.com", "alice")
    shutil.move(folder, elsewhere)
    os.symlink(elsewhere, folder)                          # someone swaps the Maildir for a link
    with pytest.raises(Unavailable, match="not a real folder"):
        store.deliver(mid, MSG)
    assert len(os.listdir(elsewhere / "new")) == 1         # nothing written through the link
    assert "symbolic link" in problem_for(store, folder)
    with pytest.raises(Unavailable, match="symbolic link"):
        store.create_mailbox_folder("example.com", "alice")
    with pytest.raises(Unavailable):
        store.list_messages(mid)                           # nor read through it
    report = store.reconcile()
    assert report.missing_dropped == 0 and "symbolic link" in problem_for(store, folder)
    with db.read() as session:
        assert session.query(Message).count() == 1         # the row is kept for when it is fixed


def test_a_missing_maildir_keeps_its_index_rows(db, store):
    """An unmounted disk or a wrong mail root: the rows wait for the files, they are not dropped."""
    mid = make_mailbox(db, store, "alice@example.com")
    store.deliver(mid, MSG)
    folder = store.mailbox_dir("example.com", "alice")
    hidden = folder.with_name("alice-away")
    os.rename(folder, hidden)
    report = store.reconcile()
    assert report.missing_dropped == 0 and report.problems == 1 and "is missing" in problem_for(store, folder)
    assert not folder.exists()                             # not recreated empty over the rows
    os.rename(hidden, folder)
    assert store.reconcile().problems == 0 and len(store.list_messages(mid)) == 1


def test_an_emptied_maildir_keeps_its_rows_but_a_partly_emptied_one_is_repaired(db, store):
    """Every file gone at once looks like a wrong mail root, not deletions: the rows stay."""
    alice = make_mailbox(db, store, "alice@example.com")
    bob = make_mailbox(db, store, "bob@example.com")
    for mid in (alice, alice, bob, bob):
        store.deliver(mid, MSG)
    for m in store.list_messages(alice) + store.list_messages(bob)[:1]:
        os.unlink(m.path)
    report = store.reconcile()
    assert report.missing_dropped == 1 and report.problems == 1
    assert "holds none of its 2 indexed message files" in problem_for(store, store.mailbox_dir("example.com", "alice"))
    assert len(store.list_messages(alice)) == 2 and len(store.list_messages(bob)) == 1


def test_a_file_renamed_by_a_mail_reader_is_followed_not_dropped(db, store):
    mid = make_mailbox(db, store, "alice@example.com")
    result = store.deliver(mid, MSG)
    [msg] = store.list_messages(mid)
    renamed = msg.path.replace("/new/", "/cur/") + ":2,S"
    os.rename(msg.path, renamed)
    report = store.reconcile()
    assert (report.files_refound, report.missing_dropped, report.orphans_indexed) == (1, 0, 0)
    [after] = store.list_messages(mid)
    assert after.path == renamed and after.uidl == result.uidl


def test_mark_missing_drops_a_gone_file_follows_a_renamed_one_and_keeps_an_unreachable_one(db, store):
    mid = make_mailbox(db, store, "alice@example.com")
    gone, moved, kept = (store.deliver(mid, MSG + bytes([65 + i]) + b"\r\n") for i in range(3))
    paths = {m.id: m.path for m in store.list_messages(mid)}
    assert store.mark_missing(mid, gone.message_id).outcome == "present"
    os.unlink(paths[gone.message_id])
    assert store.mark_missing(mid, gone.message_id) == MissingFile("dropped", paths[gone.message_id])
    assert store.mark_missing(mid, gone.message_id) == MissingFile("dropped", "")      # twice is harmless
    assert counters(db, mid) == (2, moved.size + kept.size)
    target = paths[moved.message_id].replace("/new/", "/cur/") + ":2,RS"
    os.rename(paths[moved.message_id], target)
    assert store.mark_missing(mid, moved.message_id) == MissingFile("moved", target)
    folder = store.mailbox_dir("example.com", "alice")
    os.rename(folder / "new", folder / "new.away")
    assert store.mark_missing(mid, kept.message_id).outcome == "unavailable"
    assert counters(db, mid) == (2, moved.size + kept.size)
    assert "cannot be read" in problem_for(store, folder)


def test_an_undeletable_file_at_quit_keeps_the_message_out_and_says_why(db, store):
    mid = make_mailbox(db, store, "alice@example.com")
    result = store.deliver(mid, MSG)
    [msg] = store.list_messages(mid)
    with immutable(Path(msg.path)):
        assert store.delete_messages(mid, [result.message_id]) == 1   # done, as far as POP3 is concerned
        assert store.list_messages(mid) == [] and counters(db, mid) == (0, 0)
        assert "cannot be deleted" in problem_for(store, msg.path)
    assert store.reconcile().tombstones_finished == 1 and not os.path.exists(msg.path)


# -- the mail root ------------------------------------------------------------------------------
def test_relocate_refuses_while_the_new_root_lacks_the_mail(db, store, tmp_path):
    mid = make_mailbox(db, store, "alice@example.com")
    store.deliver(mid, MSG)
    old_root = store.root
    target = tmp_path / "new-root"
    target.mkdir(mode=0o700)
    committed = []
    with pytest.raises(Conflict, match="1 of them are not in"):
        store.relocate(target, lambda: committed.append(True))
    assert store.root == old_root and committed == [] and os.listdir(target) == []
    shutil.copytree(old_root, target, dirs_exist_ok=True, symlinks=True)   # the administrator's copy
    found = store.relocate(target, lambda: committed.append(True))
    assert found == Relocation(messages=1, mailboxes=1, domains=1) and committed == [True]
    assert store.root == target
    store.deliver(mid, MSG)                                 # new mail goes to the new root at once
    assert len(os.listdir(target / "example.com" / "alice" / "new")) == 2
    assert len(os.listdir(old_root / "example.com" / "alice" / "new")) == 1
    assert len(store.list_messages(mid)) == 2 and store.reconcile().missing_dropped == 0


def test_relocate_without_mail_makes_the_folders_and_a_failed_commit_changes_nothing(db, store, tmp_path):
    mid = make_mailbox(db, store, "alice@example.com")
    old_root = store.root

    def failing() -> None:
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        store.relocate(tmp_path / "r1", failing)
    assert store.root == old_root
    store.relocate(tmp_path / "r2", lambda: None)
    assert (tmp_path / "r2" / "example.com" / "alice" / "tmp").is_dir()
    store.deliver(mid, MSG)
    assert len(os.listdir(tmp_path / "r2" / "example.com" / "alice" / "new")) == 1


def test_a_mail_root_must_be_a_real_private_folder_of_the_service(tmp_path):
    good = tmp_path / "good"
    assert check_mailroot_path(str(good)) == good and good.is_dir()       # made, 0700
    assert good.stat().st_mode & 0o777 == 0o700
    with pytest.raises(Invalid, match="absolute"):
        check_mailroot_path("relative/mail")
    os.symlink(good, tmp_path / "link")
    with pytest.raises(Invalid, match="symbolic link"):
        check_mailroot_path(str(tmp_path / "link"))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    with pytest.raises(Invalid, match="its group"):
        check_mailroot_path(str(shared))
    assert shared.stat().st_mode & 0o777 == 0o775                         # nothing changed
    if os.geteuid() == 0:                                                 # a folder of another user
        other = tmp_path / "other"
        other.mkdir(mode=0o700)
        os.chown(other, 65534, 65534)
        with pytest.raises(Invalid, match="belongs to"):
            check_mailroot_path(str(other))
        assert other.stat().st_uid == 65534                               # ownership untouched


def test_import_of_a_message_file_whose_name_is_not_utf8(db, store, tmp_path):
    from core.admin import Admin

    class NoAuth:
        pass

    admin = Admin(db, store, auth=NoAuth())
    box = tmp_path / "win" / "example.com" / "P3_alice.mbx"
    box.mkdir(parents=True)
    (box / os.fsdecode(b"caf\xe9.eml")).write_bytes(MSG)
    (box / "P3000001.eml").write_bytes(MSG)
    first = admin.import_windows(str(tmp_path / "win"))
    assert first.messages == 2 and any("not UTF-8" in w for w in first.warnings)
    uidls = sorted(m.uidl for m in store.list_messages(1))
    assert uidls == sorted(["P3000001.eml", uidl_for(import_base(os.fsdecode(b"caf\xe9.eml")))])
    again = admin.import_windows(str(tmp_path / "win"))
    assert again.messages == 0 and again.skipped == 2


def test_deliveries_during_a_move_wait_for_it_and_land_in_the_new_root(db, store, tmp_path):
    """The move runs alone: a delivery in a worker thread waits and then goes to the new root; one
    on an event loop is not made to wait (Unavailable: SMTP answers 4xx and the sender retries)."""
    import asyncio
    import threading

    mid = make_mailbox(db, store, "alice@example.com")
    old_root = store.root
    inside, release = threading.Event(), threading.Event()

    def commit() -> None:
        inside.set()
        assert release.wait(30)

    mover = threading.Thread(target=store.relocate, args=(tmp_path / "moved", commit))
    mover.start()
    assert inside.wait(30)
    results: list[object] = []
    waiting = threading.Thread(target=lambda: results.append(store.deliver(mid, MSG)))
    waiting.start()

    async def on_loop() -> None:
        store.deliver(mid, MSG)

    with pytest.raises(Unavailable, match="moving"):
        asyncio.run(on_loop())
    assert results == [] and waiting.is_alive()           # held at the gate, not written anywhere
    release.set()
    mover.join(30)
    waiting.join(30)
    assert len(results) == 1
    assert len(os.listdir(tmp_path / "moved" / "example.com" / "alice" / "new")) == 1
    assert os.listdir(old_root / "example.com" / "alice" / "new") == []
