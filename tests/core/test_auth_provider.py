"""The password-file provider over a real temporary database: lookups, passwords, secrets, rules."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.auth import provider as provider_module
from core.auth.keystore import ServerKey
from core.auth.provider import AuthProvider, PasswordFileProvider, secret_aad
from core.auth.scram import verify_plain
from core.db import Database
from core.errors import Invalid, NotFound, Unavailable
from core.passwords import check_form
from core.tables import Credential, Domain, Mailbox

TEST_ITERATIONS = 32   # production default is 4096; tests stay fast


@pytest.fixture
def key():
    return ServerKey.generate()


@pytest.fixture
def provider(db, key, tmp_path):
    return PasswordFileProvider(db, key, mailroot=tmp_path / "mailroot", scram_iterations=TEST_ITERATIONS)


def add_mailbox(db: Database, provider: PasswordFileProvider | None, address: str, password: str | None = None,
                *, locked: bool = False, domain_locked: bool = False) -> int:
    """Insert a domain (if new) and a mailbox row directly; set its password through the provider."""
    name, domain_name = address.split("@")
    with db.write() as session:
        domain = session.query(Domain).filter_by(name=domain_name).one_or_none()
        if domain is None:
            domain = Domain(name=domain_name, locked=domain_locked)
            session.add(domain)
            session.flush()
        mailbox = Mailbox(domain_id=domain.id, name=name, locked=locked)
        session.add(mailbox)
        session.flush()
        if password is not None:
            provider.set_password(session, mailbox.id, password)
        return mailbox.id


def test_provider_satisfies_the_protocol(provider):
    assert isinstance(provider, AuthProvider)
    assert provider.method == "passwordfile" and provider.supports_challenge_response


def test_resolve_is_case_insensitive_and_fills_the_path(db, provider, tmp_path):
    mailbox_id = add_mailbox(db, provider, "alice@example.com", "pw")
    ref = provider.resolve("Alice@EXAMPLE.com")
    assert ref is not None
    assert (ref.id, ref.name, ref.domain, ref.address) == (mailbox_id, "alice", "example.com", "alice@example.com")
    assert (ref.locked, ref.domain_locked) == (False, False)
    assert ref.path == str(tmp_path / "mailroot" / "example.com" / "alice")


def test_resolve_without_mailroot_leaves_the_path_empty(db, key):
    plain = PasswordFileProvider(db, key, scram_iterations=TEST_ITERATIONS)
    add_mailbox(db, plain, "bob@example.com")
    assert plain.resolve("bob@example.com").path == ""


@pytest.mark.parametrize(
    "login",
    ["nobody@example.com", "alice@other.org", "alice", "", "alice%example.com", "a@b@example.com",
     "alice@example", "../alice@example.com", "alice@exa mple.com", "\x00@example.com"],
)
def test_unknown_or_malformed_logins_resolve_to_none(db, provider, login):
    add_mailbox(db, provider, "alice@example.com", "pw")
    assert provider.resolve(login) is None
    assert provider.verify_password(login, "pw") is None
    assert provider.secret_for(login) is None
    assert provider.scram_for(login) is None


def test_locked_mailboxes_still_resolve(db, provider):
    add_mailbox(db, provider, "carol@locked.org", "pw", locked=True, domain_locked=True)
    ref = provider.verify_password("carol@locked.org", "pw")
    assert ref is not None and ref.locked and ref.domain_locked


def test_verify_password(db, provider):
    add_mailbox(db, provider, "alice@example.com", "correct horse")
    assert provider.verify_password("alice@example.com", "correct horse").name == "alice"
    assert provider.verify_password("alice@example.com", "correct horse ") is None
    assert provider.verify_password("alice@example.com", "") is None


def test_mailbox_without_password_cannot_log_on(db, provider):
    add_mailbox(db, provider, "nopw@example.com")
    assert provider.resolve("nopw@example.com") is not None
    assert provider.verify_password("nopw@example.com", "") is None
    assert provider.secret_for("nopw@example.com") is None
    assert provider.scram_for("nopw@example.com") is None


def test_unknown_login_costs_a_pbkdf2_run_too(db, provider, monkeypatch):
    """No enumeration by timing: an unknown login runs PBKDF2 with the same iteration count."""
    add_mailbox(db, provider, "alice@example.com", "pw")
    calls = []
    real = provider_module.verify_plain
    monkeypatch.setattr(provider_module, "verify_plain", lambda pw, v: calls.append(v[1]) or real(pw, v))
    provider.verify_password("alice@example.com", "wrong")
    provider.verify_password("ghost@example.com", "wrong")
    provider.verify_password("not an address", "wrong")
    assert calls == [TEST_ITERATIONS] * 3


def test_secret_for_decrypts_the_password_equivalent(db, provider):
    add_mailbox(db, provider, "alice@example.com", "tanstaaf")
    ref, secret = provider.secret_for("ALICE@example.com")
    assert secret == "tanstaaf" and ref.name == "alice"


def test_scram_for_returns_a_verifier_for_the_password(db, provider):
    add_mailbox(db, provider, "alice@example.com", "pencil")
    ref, verifier = provider.scram_for("alice@example.com")
    assert ref.address == "alice@example.com"
    assert verifier.iterations == TEST_ITERATIONS
    assert verify_plain("pencil", verifier) and not verify_plain("pencil2", verifier)


def test_production_default_is_4096_iterations(db, key):
    default = PasswordFileProvider(db, key)
    add_mailbox(db, default, "dee@example.com", "pw")
    assert default.scram_for("dee@example.com")[1].iterations == 4096


def test_secret_under_another_server_key_is_unavailable(db, provider):
    add_mailbox(db, provider, "alice@example.com", "pw")
    other = PasswordFileProvider(provider._db, ServerKey.generate(), scram_iterations=TEST_ITERATIONS)
    with pytest.raises(Unavailable):
        other.secret_for("alice@example.com")
    # The verifier does not depend on the server key: plain logins keep working.
    assert other.verify_password("alice@example.com", "pw") is not None


def test_a_secret_moved_to_another_mailbox_does_not_decrypt(db, provider):
    alice = add_mailbox(db, provider, "alice@example.com", "alice-pw")
    mallory = add_mailbox(db, provider, "mallory@example.com", "mallory-pw")
    with db.write() as session:
        session.get(Credential, mallory).secret_enc = session.get(Credential, alice).secret_enc
    with pytest.raises(Unavailable):
        provider.secret_for("mallory@example.com")


def test_set_password_replaces_the_old_one(db, provider):
    mailbox_id = add_mailbox(db, provider, "alice@example.com", "old")
    with db.write() as session:
        provider.set_password(session, mailbox_id, "new")
    assert provider.verify_password("alice@example.com", "old") is None
    assert provider.verify_password("alice@example.com", "new") is not None
    assert provider.secret_for("alice@example.com")[1] == "new"


@pytest.mark.parametrize(
    ("password", "message"),
    [("", "Type a password"), ("x" * 257, "257 characters"), ("a\x00b", "NUL"), ("a\rb", "line break"),
     ("a\nb", "line break"), ("\ud800", "surrogate")],
    ids=["empty", "too-long", "nul", "cr", "lf", "lone-surrogate"],
)
def test_password_rules(db, provider, password, message):
    mailbox_id = add_mailbox(db, provider, "alice@example.com")
    with pytest.raises(Invalid, match=message):
        with db.write() as session:
            provider.set_password(session, mailbox_id, password)
    assert provider.scram_for("alice@example.com") is None, "nothing stored after a refusal"


def test_password_limits_that_are_allowed(db, provider):
    assert check_form("x" * 256) == "x" * 256
    add_mailbox(db, provider, "long@example.com", "\u00e9t\u00e9 " + "y" * 250)
    assert provider.verify_password("long@example.com", "\u00e9t\u00e9 " + "y" * 250) is not None


def test_set_password_on_a_missing_mailbox_is_not_found(db, provider):
    with pytest.raises(NotFound):
        with db.write() as session:
            provider.set_password(session, 999, "pw")


def test_aad_names_the_mailbox():
    assert secret_aad(1) != secret_aad(11)


@pytest.mark.parametrize(
    ("tls", "spa_required", "expected"),
    [
        (False, False, ["SCRAM-SHA-256", "CRAM-MD5", "NTLM", "PLAIN", "LOGIN"]),
        (True, False, ["SCRAM-SHA-256", "CRAM-MD5", "NTLM", "PLAIN", "LOGIN"]),
        (True, True, ["SCRAM-SHA-256", "CRAM-MD5", "NTLM", "PLAIN", "LOGIN"]),
        (False, True, ["SCRAM-SHA-256", "CRAM-MD5", "NTLM"]),
    ],
    ids=["clear-no-spa", "tls-no-spa", "tls-spa", "clear-spa"],
)
def test_mechanisms_to_advertise(provider, tls, spa_required, expected):
    assert provider.mechanisms(tls=tls, spa_required=spa_required) == expected


def test_no_plaintext_password_in_the_database_files(db, provider, tmp_path):
    password = "Sup3r-Secret-Passw0rd!"
    for n in range(3):
        add_mailbox(db, provider, f"user{n}@example.com", password)
    assert provider.verify_password("user1@example.com", password) is not None
    needles = [password.encode("utf-8"), password.encode("utf-16-le"), password.lower().encode()]
    if not db.is_sqlite:  # PostgreSQL: every value of every row, as the server holds it
        from sqlalchemy import text
        with db.read_conn() as conn:
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
            contents = {t: b"".join(str(tuple(r)).encode() + b"".join(v for v in r if isinstance(v, bytes))
                                    for r in conn.execute(text(f'SELECT * FROM "{t}"'))) for t in tables}
        assert "credentials" in contents
        for table, content in contents.items():
            for needle in needles:
                assert needle not in content, f"{needle!r} found in table {table}"
        return
    files = [p for p in Path(tmp_path).iterdir() if p.name.startswith("t.db")]
    assert files, "the database files exist"
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle not in content, f"{needle!r} found in {path.name}"
