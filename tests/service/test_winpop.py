"""winpop against a real service: the issue's walk-through, bad input, import."""
from __future__ import annotations

import json
import os

import pytest
import sqlalchemy

PASSWORD = "correct horse 9"


def refusal(service, *winpop_args, op, input=None, **params):
    """(exit status, message) of a refused change: through winpop, or through the admin channel
    for input no command line can carry (NUL)."""
    if any("\x00" in str(v) for v in params.values()):
        from core.errors import MailError
        try:
            service.call(op, **params)
        except MailError as exc:
            return 1, exc.message + "\n"
        return 0, ""
    result = service.winpop(*winpop_args, input=input)
    return result.returncode, result.stderr


def mailroot_listing(service) -> list[str]:
    root = service.data_dir / "mailroot"
    if not root.exists():
        return []
    # (.queue: the outgoing spool lives in the mail root when the database is PostgreSQL)
    files = (str(p.relative_to(root)) for p in root.rglob("*"))
    return sorted(f for f in files if not f.startswith(".queue"))


def test_walk_through_of_the_original_verbs(service):
    assert service.winpop("add", "example.com", check=True).stdout.strip() == "Added domain example.com."
    out = service.winpop("add", "alice@example.com", "--createuser", "--password-stdin", input=PASSWORD + "\n",
                         check=True).stdout
    assert "alice@example.com" in out
    assert (service.data_dir / "mailroot" / "example.com" / "alice" / "new").is_dir()

    listing = service.winpop("list", check=True).stdout
    assert "example.com" in listing and "Unlocked" in listing
    assert "alice" in service.winpop("list", "example.com", check=True).stdout
    assert "1 domains, 1 mailboxes, 0 messages" in service.winpop("stat", check=True).stdout
    assert "Domain example.com: 1 mailboxes" in service.winpop("stat", "example.com", check=True).stdout

    service.winpop("lock", "alice@example.com", check=True)
    assert service.call("mailbox.get", address="alice@example.com")["locked"] is True
    service.winpop("unlock", "alice@example.com", check=True)
    service.winpop("lock", "example.com", check=True)
    assert service.call("mailbox.get", address="alice@example.com")["domain_locked"] is True
    service.winpop("unlock", "example.com", check=True)

    service.winpop("changepwd", "alice@example.com", "--password-stdin", input="new-secret-1\n", check=True)
    assert service.winpop("get", "auth", check=True).stdout.strip() == "auth: passwordfile"
    assert "logging is now 3" in service.winpop("set", "logging", "3", check=True).stdout
    assert service.winpop("get", "logging", check=True).stdout.strip() == "logging: 3 (Maximum)"
    assert str(service.data_dir / "mailroot") in service.winpop("get", "mailroot", check=True).stdout
    assert service.winpop("get", "keystore", check=True).stdout.strip() in ("keystore: keyfile", "keystore: keyring")

    data = json.loads(service.winpop("--json", "list", "example.com", check=True).stdout)
    assert [m["address"] for m in data["items"]] == ["alice@example.com"]

    service.winpop("delete", "alice@example.com", check=True)
    assert not (service.data_dir / "mailroot" / "example.com" / "alice").exists()
    service.winpop("delete", "example.com", check=True)
    assert service.call("domain.list")["total"] == 0
    assert mailroot_listing(service) == []


def test_slash_options_and_help(service):
    service.winpop("add", "example.org", check=True)
    service.winpop("add", "bob@example.org", "/createuser", "--password-stdin", input="pw-bob-1\n", check=True)
    service.winpop("delete", "bob@example.org", "/deleteuser", check=True)
    for verb in ("add", "delete", "list", "lock", "unlock", "stat", "changepwd", "get", "set", "import", "help"):
        result = service.winpop("help", verb)
        assert result.returncode == 0 and f"winpop {verb}" in result.stdout


BAD_DOMAINS = [
    pytest.param("", "empty", id="empty"),
    pytest.param("a" * 64 + ".com", "1-63", id="label-too-long"),
    pytest.param("../x", "'..'", id="dotdot"),
    pytest.param("a/b", "'/'", id="slash"),
    pytest.param("exa\x00mple.com", "control", id="nul"),
    pytest.param("ex\u0430mple.com", "mixes scripts", id="cyrillic-lookalike"),
    pytest.param("localhost", "fully qualified", id="not-fqdn"),
]


@pytest.mark.parametrize("name,reason", BAD_DOMAINS)
def test_bad_domain_names_are_refused_and_change_nothing(service, name, reason):
    before = mailroot_listing(service)
    code, message = refusal(service, "add", name, op="domain.add", name=name)
    assert code == 1
    assert reason in message and message.count("\n") == 1
    assert service.call("domain.list")["total"] == 0
    assert mailroot_listing(service) == before
    audit = service.call("audit.list", limit=1)["items"][0]
    assert audit["op"] == "domain.add" and audit["outcome"] == "refused: invalid"


BAD_MAILBOXES = [
    pytest.param("@example.com", "empty", id="empty"),
    pytest.param("x" * 65 + "@example.com", "limit is 64", id="too-long"),
    pytest.param("..@example.com", "'..'", id="dotdot"),
    pytest.param("a/b@example.com", "'/'", id="slash"),
    pytest.param("a\x00b@example.com", "control", id="nul"),
    pytest.param("\u0430lice@example.com", "ASCII", id="lookalike"),
    pytest.param("al;ice@example.com", ";", id="forbidden-char"),
    pytest.param("alice@missing.com", "does not exist", id="missing-domain"),
]


@pytest.mark.parametrize("address,reason", BAD_MAILBOXES)
def test_bad_mailboxes_are_refused_and_change_nothing(service, address, reason):
    service.call("domain.add", name="example.com")
    before = mailroot_listing(service)
    code, message = refusal(service, "add", address, "--password-stdin", input=PASSWORD + "\n",
                            op="mailbox.add", address=address, password=PASSWORD)
    assert code == 1, message
    assert reason in message
    assert service.call("domain.get", name="example.com")["mailbox_count"] == 0
    assert mailroot_listing(service) == before


def test_refusals_that_depend_on_state(service):
    service.winpop("add", "example.com", check=True)
    service.winpop("add", "alice@example.com", "--password-stdin", input=PASSWORD + "\n", check=True)

    dup = service.winpop("add", "example.com")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    dup_box = service.winpop("add", "ALICE@example.com", "--password-stdin", input=PASSWORD + "\n")
    assert dup_box.returncode == 1 and "already exists" in dup_box.stderr

    auth = service.winpop("set", "auth", "local")
    assert auth.returncode == 1 and "only while no domain exists" in auth.stderr
    assert service.call("settings.get", name="auth") == {"auth": "passwordfile"}

    service.winpop("lock", "example.com", check=True)
    unlock = service.winpop("unlock", "alice@example.com")
    assert unlock.returncode == 1 and "unlock the domain" in unlock.stderr
    assert service.call("mailbox.get", address="alice@example.com")["domain_locked"] is True

    no_pw = service.winpop("add", "carol@example.com", "--password-stdin", input="\n")
    assert no_pw.returncode != 0
    bad_setting = service.winpop("set", "logging", "7")
    assert bad_setting.returncode == 1 and "from 0 to 3" in bad_setting.stderr
    unknown = service.winpop("get", "nonsense")
    assert unknown.returncode == 1 and "no setting" in unknown.stderr
    outcomes = [a["outcome"] for a in service.call("audit.list", limit=20)["items"]]
    assert "refused: conflict" in outcomes and "refused: invalid" in outcomes


def test_passwords_never_reach_the_database_logs_or_audit(service):
    secret = "Very-Secret-Passw0rd"
    service.winpop("add", "example.com", check=True)
    service.winpop("add", "alice@example.com", "--password-stdin", input=secret + "\n", check=True)
    service.winpop("changepwd", "alice@example.com", "--password-stdin", input=secret + "2\n", check=True)
    service.call("settings.set", name="logging", value=3)
    for path in service.data_dir.rglob("*"):
        if path.is_file() and path.suffix not in (".crt",):
            assert secret.encode() not in path.read_bytes(), path
    audit = json.dumps(service.call("audit.list", limit=50))
    assert secret not in audit and "***" in audit


def test_missing_mail_root_is_reported_not_recreated(service):
    service.call("domain.add", name="example.com")
    root = service.data_dir / "mailroot"
    os.rename(root, service.data_dir / "unmounted")
    result = service.winpop("add", "example.net")
    assert result.returncode != 0 and "missing" in result.stderr
    assert not root.exists()
    assert service.call("domain.list")["total"] == 1


def test_mail_root_that_is_a_file_is_refused(service, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = service.winpop("set", "mailroot", str(blocker / "mail"))
    assert result.returncode != 0 and "Cannot create" in result.stderr
    assert service.call("settings.get", name="mailroot")["mailroot"] == str(service.data_dir / "mailroot")


def test_no_service_gives_a_clear_reason(tmp_path):
    import subprocess
    import sys

    from tests.support import ROOT
    result = subprocess.run([sys.executable, "-m", "service.winpop", "--data-dir", str(tmp_path), "list"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "not running" in result.stderr and "python main.py service" in result.stderr


def _windows_store(root):
    box = root / "example.com" / "P3_alice.mbx"
    box.mkdir(parents=True)
    for i in range(3):
        (box / f"P3{47865 + i}.eml").write_bytes(f"Subject: old {i}\r\n\r\nbody {i}\r\n".encode())
    other = root / "Example.NET" / "P3_Bob.mbx"
    other.mkdir(parents=True)
    (other / "P3000001.eml").write_bytes(b"Subject: hi\r\n\r\nhello\r\n")
    (root / "example.com" / "P3_bad;name.mbx").mkdir()
    return root


def test_import_of_a_windows_mail_root_keeps_uidls_and_can_be_rerun(service, tmp_path):
    store = _windows_store(tmp_path / "mailbox")
    result = service.winpop("import", str(store), check=True)
    assert "Imported 2 domains, 2 mailboxes and 4 messages" in result.stdout
    assert "skipped mailbox bad;name@example.com" in result.stdout
    assert service.call("mailbox.get", address="alice@example.com")["message_count"] == 3
    assert service.call("mailbox.get", address="bob@example.net")["message_count"] == 1
    engine = sqlalchemy.create_engine(service.database_url())
    with engine.connect() as db:
        uidls = sorted(r[0] for r in db.execute(sqlalchemy.text(
            "SELECT uidl FROM messages JOIN mailboxes ON mailboxes.id = messages.mailbox_id "
            "WHERE mailboxes.name='alice'")))
    engine.dispose()
    assert uidls == ["P347865.eml", "P347866.eml", "P347867.eml"]
    again = service.winpop("import", str(store), check=True)
    assert "4 already there" in again.stdout and "and 0 messages" in again.stdout
    assert service.call("stat")["messages"] == 4


def test_import_of_a_folder_without_mailboxes_is_refused(service, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = service.winpop("import", str(empty))
    assert result.returncode == 1 and "No Windows POP3 Service mailboxes" in result.stderr
