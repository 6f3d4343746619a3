"""Error headings fit the error: every code (and every finer kind) the admin channel answers with
has its own heading, a real service's refusals get the one that fits, and nothing the console
shows tells its user to run a command (that advice travels in ``hint``, for winpop)."""
from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import (
    ERROR_CODES,
    ERROR_KINDS,
    AccountMissing,
    AlreadyExists,
    Locked,
    MailError,
    NotFound,
    PasswordRefused,
    QuotaExceeded,
    Unreachable,
    from_dict,
)
from gui.dialogs import error_box
from tests.support import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "headings.example"
EXISTS, MISSING, ACCOUNT, PASSWORD = ("It already exists.", "It does not exist.", "The user account does not exist.",
                                      "The password was not accepted.")
LOCKED, DENIED, INPUT = "It is locked.", "Permission was denied.", "The input was not accepted."
# What a console user must never be told to do: run a command.
COMMAND_ADVICE = re.compile(r"winpop |\bsudo\b|systemctl|\bchmod\b|\bchown\b|useradd|\brun (it|as|the)\b|\bRun[: ]"
                            r"|(?-i:--[a-z])", re.IGNORECASE)
# Modules whose errors only a command line sees (service start-up options, winpop's own client).
COMMAND_LINE_ONLY = {"service/app.py", "service/db_password.py", "service/install.py", "service/privileges.py",
                     "service/winpop.py", "core/ipc/client.py", "core/auth/keystore.py"}


def test_every_code_and_kind_has_its_own_heading():
    assert set(ERROR_CODES) <= set(error_box.HEADINGS)
    kinds = {*ERROR_KINDS, (Unreachable.code, Unreachable.kind)}
    assert kinds <= set(error_box.KIND_HEADINGS)
    headings = [*error_box.HEADINGS.values(), *error_box.KIND_HEADINGS.values()]
    assert len(set(headings)) == len(headings), "two kinds of error share a heading"
    for retired in ("It no longer exists.", "That cannot be done right now."):
        assert retired not in headings


@pytest.mark.parametrize(("error", "heading"), [
    (AlreadyExists("The domain a.example already exists."), EXISTS),
    (AccountMissing("There is no system account named 'zed'."), ACCOUNT),
    (NotFound("The mailbox a@b.example does not exist."), MISSING),
    (PasswordRefused("The password is 5 characters long; use at least 8."), PASSWORD),
    (Locked("The domain a.example is locked."), LOCKED),
    (QuotaExceeded("The mailbox a@b.example is full."), "The mailbox is full."),
    (MailError("Something odd."), "The operation failed."),
    (from_dict({"code": "internal", "message": "The service failed to do 'x'."}),
     "The POP3 Service failed unexpectedly."),
    (from_dict({"code": "conflict", "kind": "a-kind-from-a-newer-service", "message": "?"}),
     "The current state does not allow it."),
], ids=["exists", "account", "not-found", "password", "locked", "quota", "other", "internal", "unknown-kind"])
def test_the_heading_fits_the_error(error, heading):
    assert error_box.heading_for(error) == heading


def test_kind_and_hint_cross_the_wire_and_only_winpop_shows_the_hint(errors):
    sent = NotFound("The domain a.example does not exist.", hint="Create it first with: winpop add a.example")
    received = from_dict(sent.to_dict())
    assert (received.code, received.kind, received.hint) == ("not_found", "", sent.hint)
    assert received.for_command_line() == f"{sent.message} {sent.hint}"
    error_box.show_error(None, received, doing="open a.example")
    assert errors == ["Could not open a.example. It does not exist. The domain a.example does not exist."]
    assert isinstance(from_dict(AlreadyExists("x").to_dict()), AlreadyExists)


def test_the_consoles_own_text_gets_only_what_could_not_be_done_as_heading(errors):
    error_box.show_error(None, "These listeners could not start: pop3 (port 1110): in use", doing="start the service")
    assert errors == ["Could not start the service. These listeners could not start: pop3 (port 1110): in use"]


def _raised_messages(path: Path) -> Iterator[tuple[int, str]]:
    """(line, the literal text) of every error raised with a message in ``path``."""
    names = {"Invalid", "NotFound", "Conflict", "Forbidden", "Unavailable", "MailError", "DiskFull", "AuthFailed",
             "QuotaExceeded", "AlreadyExists", "Locked", "AccountMissing", "PasswordRefused"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in names and node.args:
            parts = [n.value for n in ast.walk(node.args[0])
                     if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            yield node.lineno, "".join(parts)


def test_no_error_a_console_user_sees_tells_them_to_run_a_command():
    found = []
    for path in sorted([*(ROOT / "core").rglob("*.py"), *(ROOT / "service").rglob("*.py")]):
        relative = path.relative_to(ROOT).as_posix()
        if relative in COMMAND_LINE_ONLY:
            continue
        found += [f"{relative}:{line}: {text}" for line, text in _raised_messages(path) if COMMAND_ADVICE.search(text)]
    assert not found, "command advice belongs in hint=...:\n" + "\n".join(found)


# -- a real service's refusals ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_service(tmp_path_factory) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(tmp_path_factory.mktemp("headings") / "data")
    proc.start()
    yield proc
    proc.stop()


def refusal(service: ServiceProcess, op: str, **params) -> MailError:
    with pytest.raises(MailError) as caught:
        service.call(op, **params)
    return caught.value


def test_a_real_services_refusals_get_the_heading_that_fits(real_service, errors):
    svc = real_service
    svc.call("domain.add", name=DOMAIN)
    svc.call("mailbox.add", address=f"alice@{DOMAIN}", password="Alice-pass-1")
    cases = {
        "domain exists": (refusal(svc, "domain.add", name=DOMAIN), EXISTS),
        "mailbox exists": (refusal(svc, "mailbox.add", address=f"alice@{DOMAIN}", password="Alice-pass-2"), EXISTS),
        "bad password": (refusal(svc, "mailbox.set_password", address=f"alice@{DOMAIN}", password="short"),
                         PASSWORD),
        "no password": (refusal(svc, "mailbox.add", address=f"bob@{DOMAIN}"), PASSWORD),
        "bad quota": (refusal(svc, "mailbox.set_quota", address=f"alice@{DOMAIN}", quota="lots"), INPUT),
        "not found": (refusal(svc, "mailbox.get", address=f"ghost@{DOMAIN}"), MISSING),
        "no domain": (refusal(svc, "mailbox.add", address="eve@nowhere.example", password="Eve-pass-1"), MISSING),
        "permission denied": (refusal(svc, "relay.test", host="192.0.2.1"), DENIED),
    }
    svc.call("domain.lock", name=DOMAIN)
    cases["locked"] = (refusal(svc, "mailbox.unlock", address=f"alice@{DOMAIN}"), LOCKED)
    for what, (error, heading) in cases.items():
        assert error_box.heading_for(error) == heading, (what, error.code, error.kind, error.message)
        error_box.show_error(None, error)
    assert "winpop" in cases["no domain"][0].hint        # winpop keeps the advice...
    for shown in errors:                                 # ...the console never shows it
        assert not COMMAND_ADVICE.search(shown), shown


def test_a_missing_local_account_is_not_something_that_no_longer_exists(tmp_path, errors):
    svc = ServiceProcess(tmp_path / "data")
    svc.start()
    try:
        try:
            svc.call("settings.set", name="auth", value="local")
        except MailError as exc:
            pytest.skip(f"local accounts are not available here: {exc.message}")
        svc.call("domain.add", name=DOMAIN)
        error = refusal(svc, "mailbox.add", address=f"nosuchuser7@{DOMAIN}", create_user=False)
    finally:
        svc.stop()
    assert isinstance(error, AccountMissing) and error_box.heading_for(error) == ACCOUNT
    error_box.show_error(None, error)
    assert not COMMAND_ADVICE.search(errors[-1]) and "winpop" in error.hint
