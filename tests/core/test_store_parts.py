"""The store package: each part does its one job on its own, and the package holds together without
cycles or imports hidden in functions."""
from __future__ import annotations

import ast
import asyncio
import dataclasses
import threading
from pathlib import Path

import pytest

from core.errors import Unavailable
from core.store import MailStore, Relocation
from core.store.delivery import Delivery
from core.store.gate import Gate
from core.store.index import MessageIndex
from core.store.maildir import MessageNames, uidl_for
from core.store.maildrop import Maildrop, MissingFile
from core.store.mailroot import MailRoot
from core.store.problems import MAX_PROBLEMS, ProblemList, StoreProblem, StoreProblems
from tests.core.conftest import make_mailbox
from tests.support import ROOT

PACKAGE = ROOT / "core" / "store"
MODULES = sorted(PACKAGE.glob("*.py"))


def _store_imports(path: Path) -> set[str]:
    """The core.store modules a module imports (by name, at any depth of its tree)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core.store"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("core.store"))
    return found


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_each_module_says_its_job_and_imports_only_at_the_top(path: Path) -> None:
    tree = ast.parse(path.read_text())
    doc = ast.get_docstring(tree)
    assert doc and doc.splitlines()[0].strip(), f"{path.name} has no one-line docstring"
    top = {id(node) for node in tree.body}
    hidden = [node.lineno for node in ast.walk(tree)
              if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top]
    assert hidden == [], f"{path.name} imports inside functions at lines {hidden}"


def test_the_parts_import_each_other_without_cycles_and_never_the_package() -> None:
    graph = {f"core.store.{p.stem}": _store_imports(p) for p in MODULES if p.stem != "__init__"}
    for module, imported in graph.items():
        assert "core.store" not in imported, f"{module} imports the package (the facade): a cycle"
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for dep in graph.get(module, ()):
            visit(dep, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_message_names_are_unique_and_escape_the_host() -> None:
    names = MessageNames("mail/host:1")
    assert names.hostname == "mail\\057host\\0721"
    made = {names.new(10, 12) for _ in range(1000)}
    assert len(made) == 1000
    one = made.pop()
    assert one.endswith(".mail\\057host\\0721,S=10,W=12") and "/" not in one and ":" not in one
    assert uidl_for(one) == one.split(",", 1)[0]


def test_the_problem_list_counts_all_keeps_a_bounded_list_and_hands_out_frozen_values() -> None:
    problems = ProblemList()
    assert problems.note("/m/a", "broken") is True
    assert problems.note("/m/a", "broken") is False          # the same again: not new, not counted
    assert problems.note("/m/a", "worse") is True            # the newest text wins, still one entry
    for n in range(MAX_PROBLEMS + 10):
        problems.note(f"/m/{n}", "broken")
    report = problems.report()
    assert isinstance(report, StoreProblems) and report.total == MAX_PROBLEMS + 11
    assert len(report.items) == MAX_PROBLEMS and report.items[0] == StoreProblem("/m/a", "worse")
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.total = 0  # type: ignore[misc]
    problems.clear()
    assert problems.report() == StoreProblems(total=0, items=())


def test_the_mail_root_refuses_to_make_a_missing_root_anew_once_domains_exist(tmp_path: Path) -> None:
    root = MailRoot(tmp_path / "unmounted")
    with pytest.raises(Unavailable, match="Is its disk mounted"):
        root.create_mailbox_folder("example.com", "alice", create_root=False)
    assert not root.path.exists()
    folder = root.create_mailbox_folder("example.com", "alice", create_root=True)
    assert sorted(p.name for p in folder.iterdir()) == ["cur", "new", "tmp"]


def test_removing_puts_the_folder_back_when_the_change_fails(tmp_path: Path) -> None:
    root = MailRoot(tmp_path)
    folder = root.create_mailbox_folder("example.com", "alice", create_root=True)
    (folder / "new" / "m1").write_bytes(b"x\n")
    with pytest.raises(RuntimeError), root.removing(folder):
        assert not folder.exists()
        raise RuntimeError("the database change failed")
    assert (folder / "new" / "m1").read_bytes() == b"x\n"
    with root.removing(folder):
        pass
    assert not folder.exists() and list(folder.parent.iterdir()) == []


def test_the_gate_turns_an_event_loop_away_while_the_root_moves() -> None:
    gate = Gate()
    inside = threading.Event()
    release = threading.Event()

    def move() -> None:
        with gate.alone(timeout=5):
            inside.set()
            release.wait(5)

    mover = threading.Thread(target=move)
    mover.start()
    try:
        assert inside.wait(5)

        async def on_loop() -> None:
            with gate.passing():
                pass

        with pytest.raises(Unavailable, match="moving"):
            asyncio.run(on_loop())
    finally:
        release.set()
        mover.join(5)
    with gate.passing():   # open again
        pass


def test_delivery_and_maildrop_work_as_parts_without_the_facade(db, tmp_path: Path) -> None:
    facade = MailStore(db, tmp_path / "mailroot", hostname="test.host")
    mid = make_mailbox(db, facade, "alice@example.com")
    root, index, problems = MailRoot(tmp_path / "mailroot"), MessageIndex(db), ProblemList()
    changes: list[set[int]] = []
    delivery = Delivery(db, root, index, MessageNames("test.host"), problems, changes.append)
    maildrop = Maildrop(db, root, problems, changes.append)
    [result] = delivery.deliver_many([mid], b"Subject: hi\r\n\r\nhello\r\n")
    [info] = maildrop.list_messages(mid)
    assert (info.id, info.uidl, info.size) == (result.message_id, result.uidl, result.size)
    Path(info.path).unlink()
    assert maildrop.mark_missing(mid, info.id) == MissingFile("dropped", info.path)
    assert maildrop.list_messages(mid) == [] and changes == [{mid}, {mid}]


def test_relocate_reports_what_it_found_as_a_frozen_value(db, store, tmp_path: Path) -> None:
    make_mailbox(db, store, "alice@example.com")
    found = store.relocate(tmp_path / "elsewhere", lambda: None)
    assert found == Relocation(messages=0, mailboxes=1, domains=1)
    assert store.root == tmp_path / "elsewhere" and (store.root / "example.com" / "alice" / "new").is_dir()
