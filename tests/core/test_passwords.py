"""core.passwords: the one password rule, and core.admin enforcing it before the account method's own."""
from __future__ import annotations

import pytest

from core import passwords
from core.admin import Admin
from core.auth.keystore import ServerKey
from core.auth.provider import PasswordFileProvider
from core.errors import Invalid, PasswordRefused


@pytest.fixture
def admin(db, store, tmp_path):
    provider = PasswordFileProvider(db, ServerKey.generate(), mailroot=tmp_path / "mailroot", scram_iterations=32)
    admin = Admin(db, store, auth=provider)
    admin.domain_add("example.com")
    return admin


@pytest.mark.parametrize(("password", "reason"), [
    ("", passwords.EMPTY),
    ("a" * 7, "The password is 7 characters long; use at least 8."),
    ("a" * 8, None),
    ("a" * 256, None),
    ("a" * 257, "The password is 257 characters long; the limit is 256."),
    ("abc\x00defgh", "NUL"),
    ("abc\rdefgh", "line break"),
    ("abc\ndefgh", "line break"),
    ("\ud800" * 8, "lone surrogate"),
    ("été à Zürich", None),
    ("        ", None),        # eight spaces: the rule counts characters, it does not judge them
    (None, passwords.EMPTY),
], ids=["empty", "7", "8", "256", "257", "nul", "cr", "lf", "surrogate", "non-ascii", "spaces", "not-text"])
def test_the_rule(password, reason):
    problem = passwords.password_problem(password)
    if reason is None:
        assert problem is None
        assert passwords.check_password(password) == password
    else:
        assert problem is not None and reason in problem
        with pytest.raises(PasswordRefused, match=problem.replace("(", r"\(").replace(")", r"\)")):
            passwords.check_password(password)


def test_the_account_methods_store_what_they_can_and_leave_the_floor_to_the_rule():
    assert passwords.check_form("short") == "short"          # a method can store it; the rule refuses it
    assert passwords.password_problem("short") is not None
    for unstorable in ("", "a\nb", "x" * 257):
        assert passwords.form_problem(unstorable) == passwords.password_problem(unstorable)


def test_the_confirmation():
    assert passwords.confirmation_problem("Long-enough-1", "Long-enough-1") is None
    assert passwords.confirmation_problem("Long-enough-1", "") == passwords.CONFIRM_MISSING
    assert passwords.confirmation_problem("Long-enough-1", "Long-enough-2") == passwords.CONFIRM_DIFFERS


def test_a_refused_password_is_an_invalid_input_with_the_password_kind():
    error = PasswordRefused("x")
    assert isinstance(error, Invalid) and error.to_dict() == {"code": "invalid", "message": "x", "kind": "password"}


def test_admin_enforces_the_rule_on_new_mailboxes_and_new_passwords(admin):
    with pytest.raises(PasswordRefused, match="5 characters long; use at least 8"):
        admin.mailbox_add("alice@example.com", password="short")
    assert admin.domain_get("example.com").mailbox_count == 0
    with pytest.raises(PasswordRefused) as no_password:
        admin.mailbox_add("alice@example.com")
    assert no_password.value.message == passwords.EMPTY and "--password-stdin" in no_password.value.hint
    admin.mailbox_add("alice@example.com", password="Long-enough-1")
    with pytest.raises(PasswordRefused, match="use at least 8"):
        admin.mailbox_set_password("alice@example.com", "1234567")
    assert admin.mailbox_set_password("alice@example.com", "12345678").address == "alice@example.com"
