"""The ``local`` method against real PAM and real system accounts (root only).

Accounts get random ``pop3t_`` names and are removed at teardown. PAM refuses a wrong password
after about 2 s (pam_unix's delay), so few tests try one.
"""
from __future__ import annotations

import grp
import os
import pwd
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from core.admin import Admin
from core.auth.local import GROUP, NOLOGIN, AccountRules, LocalAccountProvider, SystemAccounts, install_pam_file
from core.auth.provider import LOGIN, PLAIN, AuthProvider
from core.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from core.settings import Settings

PASSWORD = "Local-pw-7731"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local accounts method needs root to create "
                                "system accounts and to check their passwords with PAM (CI runs as root)")


def new_name() -> str:
    return "pop3t_" + secrets.token_hex(4)


def userdel(name: str) -> None:
    subprocess.run(["userdel", "--", name], capture_output=True)


@pytest.fixture
def accounts():
    """Names handed out here are deleted at teardown, whatever the test did."""
    made: list[str] = []

    def make(*, create: bool = False, password: str | None = None, group: str | None = None) -> str:
        name = new_name()
        made.append(name)
        if create:
            cmd = ["useradd", "--no-create-home", "--shell", NOLOGIN]
            cmd += ["--gid", group] if group else ["--user-group"]
            subprocess.run(cmd + [name], check=True, capture_output=True)
            if password:
                subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        return name

    yield make
    for name in made:
        userdel(name)
        subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture
def allowed(tmp_path):
    """The allowed-accounts file root keeps (here a temporary one): names written to it are allowed."""
    path = tmp_path / "allowed-accounts"
    path.write_text("# accounts root allows\n")
    path.chmod(0o644)

    def allow(name: str) -> None:
        with path.open("a") as f:
            f.write(f"{name}\n")
    allow.path = path
    return allow


@pytest.fixture
def provider(db, store, allowed):
    install_pam_file()
    with db.write() as session:
        Settings.put(session, "auth", "local")
    accounts = SystemAccounts(AccountRules(allowed_file=allowed.path))
    return LocalAccountProvider(db, mailroot=store.root, accounts=accounts)


@pytest.fixture
def admin(db, store, provider):
    admin = Admin(db, store, auth=provider, available_methods=("passwordfile", "local", "directory"))
    admin.domain_add("a.example")
    admin.domain_add("b.example")
    return admin


def test_the_provider_has_the_shared_interface(provider):
    assert isinstance(provider, AuthProvider)
    assert provider.method == "local" and provider.supports_challenge_response is False
    assert provider.secret_for("x@a.example") is None and provider.scram_for("x@a.example") is None


@pytest.mark.parametrize("tls,spa,offered", [
    (False, False, [PLAIN, LOGIN]),
    (True, False, [PLAIN, LOGIN]),
    (True, True, [PLAIN, LOGIN]),
    (False, True, []),          # SPA required and no TLS: nothing PAM could check may cross
], ids=["plain-no-spa", "tls-no-spa", "tls-spa", "plain-spa"])
def test_only_plaintext_mechanisms_and_only_inside_tls_with_spa(provider, tls, spa, offered):
    assert provider.mechanisms(tls=tls, spa_required=spa) == offered


def test_create_associated_user_makes_a_shell_less_home_less_account(admin, provider, accounts):
    name = accounts()
    admin.mailbox_add(f"{name}@a.example", password=PASSWORD, create_user=True)
    entry = pwd.getpwnam(name)
    assert entry.pw_shell == NOLOGIN
    assert grp.getgrgid(entry.pw_gid).gr_name == GROUP
    assert not Path(entry.pw_dir).exists()
    # The client may give the full address or the account name.
    for login in (f"{name}@a.example", name, name.upper()):
        ref = provider.verify_password(login, PASSWORD)
        assert ref is not None and ref.address == f"{name}@a.example", login
    assert provider.resolve(f"{name}@b.example") is None

    admin.mailbox_delete(f"{name}@a.example", delete_user=True)
    with pytest.raises(KeyError):
        pwd.getpwnam(name)


def test_a_wrong_password_is_refused_not_an_error(admin, provider, accounts):
    name = accounts()
    admin.mailbox_add(f"{name}@a.example", password=PASSWORD, create_user=True)
    started = time.monotonic()
    assert provider.verify_password(f"{name}@a.example", "not the password") is None
    assert time.monotonic() - started > 0.5      # pam_unix's delay: the reason logons run off the loop
    assert provider.verify_password(f"{name}@a.example", "") is None
    assert provider.verify_password("nobody-here@a.example", PASSWORD) is None


def test_mailbox_names_are_unique_across_domains(admin, accounts):
    name = accounts()
    admin.mailbox_add(f"{name}@a.example", password=PASSWORD, create_user=True)
    with pytest.raises(Conflict, match=f"unique across all domains: {name}@a.example"):
        admin.mailbox_add(f"{name}@b.example", password=PASSWORD, create_user=True)
    with pytest.raises(Conflict, match="unique across all domains"):
        admin.mailbox_add(f"{name}@b.example", create_user=False)


def test_without_create_user_the_mailbox_maps_to_an_existing_account(admin, provider, accounts, allowed):
    name = accounts(create=True, password=PASSWORD)
    with pytest.raises(Forbidden, match="not an account of the POP3 service.*allowed-accounts"):
        admin.mailbox_add(f"{name}@b.example", create_user=False)    # not pop3users, not allowed by root
    allowed(name)
    admin.mailbox_add(f"{name}@b.example", create_user=False)
    assert provider.verify_password(name, PASSWORD).address == f"{name}@b.example"

    missing = accounts()
    with pytest.raises(NotFound, match=f"no system account named '{missing}'.*create associated user"):
        admin.mailbox_add(f"{missing}@a.example", create_user=False)
    other = accounts(create=True)
    allowed(other)
    with pytest.raises(Invalid, match="give no password here"):
        admin.mailbox_add(f"{other}@a.example", password=PASSWORD, create_user=False)


def test_create_user_refuses_an_account_that_exists_already(admin, accounts):
    name = accounts(create=True)
    with pytest.raises(Conflict, match="already exists.*without 'create associated user'"):
        admin.mailbox_add(f"{name}@a.example", password=PASSWORD, create_user=True)


def test_accounts_the_service_did_not_make_are_never_deleted(admin, accounts, allowed):
    name = accounts(create=True, password=PASSWORD)
    allowed(name)
    admin.mailbox_add(f"{name}@a.example", create_user=False)
    with pytest.raises(Conflict, match="did not create"):
        admin.mailbox_delete(f"{name}@a.example", delete_user=True)
    ours = accounts()
    admin.mailbox_add(f"{ours}@a.example", password=PASSWORD, create_user=True)
    admin.domain_delete("a.example", delete_users=True)
    assert pwd.getpwnam(name)                     # kept: not in pop3users
    with pytest.raises(KeyError):
        pwd.getpwnam(ours)                        # ours: removed with the domain


def test_changepwd_sets_the_system_password(admin, provider, accounts):
    name = accounts()
    admin.mailbox_add(f"{name}@a.example", password=PASSWORD, create_user=True)
    admin.mailbox_set_password(f"{name}@a.example", "Changed-pw-2")
    assert provider.verify_password(name, "Changed-pw-2") is not None


def test_the_systems_password_refusal_is_passed_on_without_the_password(db, store, accounts):
    """chpasswd's own refusal (pam_pwquality and the like) reaches the admin as the message."""
    def runner(argv, *, input=None):
        if argv[0] == "chpasswd":
            return subprocess.CompletedProcess(argv, 1, "", f"BAD PASSWORD: it is based on a dictionary word "
                                                            f"({input.split(':', 1)[1].strip()})\n")
        return subprocess.run(list(argv), input=input, capture_output=True, text=True)

    with db.write() as session:
        Settings.put(session, "auth", "local")
    provider = LocalAccountProvider(db, mailroot=store.root, runner=runner)
    admin = Admin(db, store, auth=provider, available_methods=("local",))
    admin.domain_add("a.example")
    name = accounts()
    with pytest.raises(Invalid) as caught:
        admin.mailbox_add(f"{name}@a.example", password="password1", create_user=True)
    assert "BAD PASSWORD: it is based on a dictionary word" in caught.value.message
    assert "password1" not in caught.value.message
    # The transaction rolled back, and with it the account it had created.
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
    assert admin.mailbox_list("a.example").total == 0


def test_pam_that_cannot_check_is_unavailable_not_a_wrong_password(db, store, admin, accounts):
    pam_file = Path("/etc/pam.d") / ("pop3t-broken-" + secrets.token_hex(3))
    pam_file.write_text("auth required pam_no_such_module_here.so\naccount required pam_permit.so\n")
    try:
        name = accounts()
        admin.mailbox_add(f"{name}@a.example", password=PASSWORD, create_user=True)
        broken = LocalAccountProvider(db, mailroot=store.root, pam_service=pam_file.name)
        with pytest.raises(Unavailable, match="PAM could not check"):
            broken.verify_password(name, PASSWORD)
    finally:
        pam_file.unlink()


def test_names_useradd_would_refuse_are_refused_with_the_reason(admin):
    with pytest.raises(Invalid, match="system account name"):
        admin.mailbox_add("a&b@a.example", password=PASSWORD, create_user=True)
    with pytest.raises(Invalid, match="limit is 32"):
        admin.mailbox_add("x" * 33 + "@a.example", password=PASSWORD, create_user=True)
