"""`winpop import` numbers a mailbox's messages in their arrival order: the file time (to the
nanosecond), then the file name, whatever order the folder lists them in (issue 13 §5)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from core.admin import Admin
from core.tables import Mailbox

SECOND = 1_700_000_000 * 1_000_000_000   # a whole second, in nanoseconds
# (file name, mtime in ns): the same second for all three; 50 ns apart is below what a float
# st_mtime can tell apart (about 240 ns at this epoch), and two share the very same time.
FILES = (("P3_0003.eml", SECOND + 100), ("P3_0001.eml", SECOND + 150), ("P3_0002.eml", SECOND + 150))
ARRIVAL = ["P3_0003.eml", "P3_0001.eml", "P3_0002.eml"]


def windows_store(root: Path) -> Path:
    box = root / "example.com" / "P3_alice.mbx"
    box.mkdir(parents=True)
    for name, mtime_ns in reversed(FILES):
        path = box / name
        path.write_bytes(f"Subject: {name}\r\n\r\nbody\r\n".encode())
        os.utime(path, ns=(mtime_ns, mtime_ns))
    assert {os.stat(box / n).st_mtime_ns for n, _t in FILES} == {t for _n, t in FILES}   # kept to the ns
    return root


@pytest.mark.parametrize("listing", ["by_name", "by_name_reversed"])
def test_messages_written_in_the_same_second_keep_their_arrival_order(db, store, tmp_path, monkeypatch, listing):
    root = windows_store(tmp_path / "windows")
    real_glob = Path.glob

    def listed(self: Path, pattern: str):   # the folder's own order, either way round
        return iter(sorted(real_glob(self, pattern), reverse=listing == "by_name_reversed"))
    monkeypatch.setattr(Path, "glob", listed)
    admin = Admin(db, store, auth=None)
    summary = admin.import_windows(str(root))
    assert summary.messages == 3, summary
    with db.read() as session:
        mailbox_id = session.scalars(select(Mailbox.id).where(Mailbox.name == "alice")).one()
    messages = store.list_messages(mailbox_id)
    assert [m.uidl for m in messages] == ARRIVAL     # POP3 numbers 1, 2, 3 in this order
    for message, name in zip(messages, ARRIVAL, strict=True):
        assert Path(message.path).read_bytes().startswith(f"Subject: {name}".encode())
