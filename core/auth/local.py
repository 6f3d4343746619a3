"""The ``local`` method: mailboxes are local system accounts, passwords are checked by PAM (DESIGN §6).

As in the original's "Local Windows Accounts": the account name is the mailbox name, so mailbox
names are unique across all domains; "create associated user" makes an account with no login
shell and no home in the ``pop3users`` group; a client logs on as ``alice@example.com`` or
``alice``. Only plaintext mechanisms can be checked against PAM (no reusable secret exists).

``LocalAccountProvider`` (the service's side) never touches PAM or the account tools itself: it
asks ``Accounts``, which is ``SystemAccounts`` in the privileged helper (service/privhelper.py)
when the service dropped root, or in-process otherwise. ``SystemAccounts`` applies
``AccountRules`` to every request: a mailbox's account is one the service made or one root
allowed, never root or a system account (issue 12 §2).

PAM and the account tools block (a wrong password costs about 2 s in pam_unix): every call here
runs in a worker thread of the service, never on the event loop.
"""
from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.event import listen as on_session_event
from sqlalchemy.orm import Session

from core.auth.provider import AuthMethod, PlaintextOnly, mailbox_ref
from core.catalog import PAM_SERVICE_DEFAULT
from core.db import Database
from core.errors import (
    AccountMissing,
    AlreadyExists,
    Conflict,
    Forbidden,
    Invalid,
    MailError,
    NotFound,
    PasswordRefused,
    Unavailable,
)
from core.model import MailboxRef
from core.names import normalize_mailbox, split_address
from core.passwords import check_form
from core.tables import Domain, Mailbox

log = logging.getLogger(__name__)

GROUP = "pop3users"
NOLOGIN = "/usr/sbin/nologin"
PAM_FILE = Path("/etc/pam.d")
PAM_TEMPLATE = Path(__file__).resolve().parents[2] / "resources" / "pam" / "pop3-service"
# Accounts root allows besides the service's own: one name a line, '#' comments. Honoured only
# while the file and its folder belong to root and nobody else may write them.
ALLOWED_FILE = Path("/etc/pop3-service/allowed-accounts")
LOGIN_DEFS = Path("/etc/login.defs")
# The account names the helper accepts: what core.names allows for the local method, checked
# again here because the privileged side must not trust the service (useradd(8) NAME_REGEX).
ACCOUNT_NAME = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,31}")
PAM_SERVICE_NAME = re.compile(r"pop3[a-z0-9_.-]{0,60}")
MAX_PASSWORD = 1024

# PAM results that mean "the system could not check", not "wrong password" (pam_appl.h).
_PAM_UNAVAILABLE = {3: "PAM service error", 4: "PAM system error", 5: "PAM out of memory",
                    9: "the authentication service is unavailable", 15: "credentials unavailable",
                    19: "PAM conversation error", 24: "PAM asked to try again", 26: "PAM aborted",
                    28: "a PAM module is missing"}

Runner = Callable[..., subprocess.CompletedProcess]


def install_pam_file(target_dir: Path = PAM_FILE, name: str = PAM_SERVICE_DEFAULT) -> bool:
    """Copy resources/pam/pop3-service to /etc/pam.d when it is missing; True if it was installed."""
    target = Path(target_dir) / name
    if target.exists():
        return False
    shutil.copyfile(PAM_TEMPLATE, target)
    target.chmod(0o644)
    return True


def _run(argv: Sequence[str], *, input: str | None = None) -> subprocess.CompletedProcess:
    """Run an account tool with an argument list (never a shell); Unavailable if it is missing."""
    try:
        return subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    except FileNotFoundError:
        raise Unavailable(f"{argv[0]} is not installed; the local accounts method needs the shadow "
                          "tools (apt-get install passwd).") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{argv[0]} did not finish within 60 s (is /etc/passwd locked?).") from None


def _tool_message(result: subprocess.CompletedProcess) -> str:
    text = " ".join((result.stderr or result.stdout or "").split())
    return text or f"exit status {result.returncode}"


def account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def account_in_group(name: str) -> bool:
    """True if ``name`` is an account the service made: its primary group is pop3users."""
    try:
        entry = pwd.getpwnam(name)
        return grp.getgrgid(entry.pw_gid).gr_name == GROUP
    except KeyError:
        return False


def uid_range(path: Path = LOGIN_DEFS) -> tuple[int, int]:
    """UID_MIN and UID_MAX of /etc/login.defs (1000 and 60000 when not set): the range of ordinary
    accounts; outside it are the system's (daemon, nobody at 65534)."""
    found = {"UID_MIN": 1000, "UID_MAX": 60000}
    try:
        for line in Path(path).read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in found and parts[1].isdigit():
                found[parts[0]] = int(parts[1])
    except OSError:
        pass
    return found["UID_MIN"], found["UID_MAX"]


def check_account_name(name: object) -> str:
    """``name`` if it is an account name the helper may pass to PAM and the shadow tools."""
    if not isinstance(name, str) or not ACCOUNT_NAME.fullmatch(name) or name.isdigit():
        raise Invalid("An account name is 1-32 characters: a-z, 0-9, '_', '.', '-', not starting with '-' or '.'.")
    return name


def check_secret(password: object) -> str:
    """``password`` if it can be handed to PAM or chpasswd (no NUL, no line break, bounded)."""
    if (not isinstance(password, str) or not password or len(password) > MAX_PASSWORD
            or any(c in password for c in "\x00\r\n")):
        raise Invalid("A password is 1-1024 characters with no line break or NUL.")
    return password


def _root_only(path: Path) -> bool:
    """True if ``path`` and every folder above it belong to root and only root may write them (a
    sticky folder such as /tmp counts: nobody else may rename or remove root's entries there)."""
    try:
        for item in (path, *path.parents):
            st = os.lstat(item)
            sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and item != path
            if st.st_uid != 0 or stat.S_ISLNK(st.st_mode) or (st.st_mode & 0o022 and not sticky_dir):
                return False
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class AccountRules:
    """Which system accounts a mailbox may use: those the service made (primary group pop3users)
    and those root lists in /etc/pop3-service/allowed-accounts; never uid 0 nor a system account
    (uid outside UID_MIN..UID_MAX). The privileged helper applies it to every PAM check and
    account change."""

    allowed_file: Path = ALLOWED_FILE
    login_defs: Path = LOGIN_DEFS

    def listed(self) -> set[str]:
        """The names root allows in the allowed-accounts file (empty if the file is not root's alone)."""
        path = Path(self.allowed_file)
        if not path.exists():
            return set()
        if not _root_only(path):
            log.error("ignored %s: it and its folders must belong to root and be writable by root only", path)
            return set()
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return set()
        return {line.split("#", 1)[0].strip() for line in text.splitlines()} - {""}

    def refusal(self, name: str, *, managed_only: bool = False) -> str:
        """Why the service may not use the account ``name`` ("" when it may)."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return f"There is no system account named '{name}'."
        if entry.pw_uid == 0:
            return f"'{name}' is a superuser account (uid 0); a mailbox can never use it."
        floor, ceiling = uid_range(self.login_defs)
        if not floor <= entry.pw_uid <= ceiling:
            return (f"'{name}' is a system account (uid {entry.pw_uid}, outside UID_MIN {floor} - UID_MAX "
                    f"{ceiling} of {self.login_defs}); a mailbox can never use it.")
        ours = account_in_group(name)
        if managed_only and not ours:
            return (f"'{name}' is an account the POP3 service did not create (its group is not {GROUP}); "
                    "the service never deletes it.")
        if not ours and name not in self.listed():
            return (f"'{name}' is not an account of the POP3 service (group {GROUP}) and is not listed in "
                    f"{self.allowed_file}; root must add it there before a mailbox may use it.")
        return ""


@dataclass(frozen=True)
class AccountState:
    """Whether a system account exists, and why a mailbox may not use it ("" when it may)."""

    exists: bool
    refusal: str


class Accounts(Protocol):
    """The account administration of the ``local`` method, what the provider asks of the
    privileged side: SystemAccounts in-process, or the helper's client
    (service.privhelper.HelperClient) with the same methods over its channel."""

    def describe(self, name: str) -> AccountState:
        """Whether a mailbox may map to the account ``name``, and why not."""
        ...

    def pam_check(self, name: str, password: str, service: str) -> bool:
        """PAM's verdict on ``password`` for an account the rules allow (False for any other)."""
        ...

    def prepare(self) -> None:
        """The pop3users group and the PAM service file, made when missing."""
        ...

    def create(self, name: str, comment: str) -> None:
        """A shell-less, home-less account in pop3users."""
        ...

    def set_password(self, name: str, password: str) -> None:
        """A new password for an account the rules allow."""
        ...

    def delete(self, name: str) -> bool:
        """Remove an account the service made; False if there was none."""
        ...


class SystemAccounts(Accounts):
    """The privileged account operations of the ``local`` method, each checked against
    ``AccountRules``. Runs in the privileged helper (service/privhelper.py) when the service drops
    root, in-process otherwise; it never trusts its caller's checks."""

    def __init__(self, rules: AccountRules | None = None, *, runner: Runner = _run) -> None:
        self.rules = rules or AccountRules()
        self._runner = runner
        self._nobody = "pop3-nobody-" + secrets.token_hex(6)

    def describe(self, name: str) -> AccountState:
        """Whether a mailbox may map to the account ``name``, and why not."""
        check_account_name(name)
        exists = account_exists(name)
        return AccountState(exists=exists, refusal=self.rules.refusal(name) if exists else "")

    def pam_check(self, name: str, password: str, service: str) -> bool:
        """PAM's verdict on ``password``; an account the rules refuse is checked as an unknown one
        (same cost as a wrong password, and PAM never hears its name)."""
        check_secret(password)
        if not isinstance(service, str) or not PAM_SERVICE_NAME.fullmatch(service):
            raise Invalid(f"The PAM service name must start with 'pop3' (letters, digits, '_', '.', '-'); "
                          f"got {str(service)[:64]!r}.")
        try:
            account = check_account_name(name)
        except Invalid:
            account = self._nobody
        if account != self._nobody and self.rules.refusal(account):
            log.info("refused a PAM check for %s: %s", account, self.rules.refusal(account))
            account = self._nobody
        return _pam_authenticate(account, password, service) and account != self._nobody

    def prepare(self) -> None:
        """The pop3users group and /etc/pam.d/pop3-service, made when missing."""
        try:
            if install_pam_file():
                log.warning("installed the PAM service file /etc/pam.d/%s", PAM_SERVICE_DEFAULT)
        except OSError as exc:   # not root: PAM falls back to /etc/pam.d/other
            log.warning("could not install /etc/pam.d/%s (%s); PAM uses 'other'", PAM_SERVICE_DEFAULT, exc.strerror)
        if os.geteuid() == 0:
            self._ensure_group()

    def create(self, name: str, comment: str) -> None:
        """useradd a shell-less, home-less account in pop3users, in the normal uid range."""
        check_account_name(name)
        comment = "".join(c for c in str(comment) if c.isprintable() and c not in ":,\\")[:100]
        if account_exists(name):
            raise AlreadyExists(f"A system account named '{name}' already exists. Add the mailbox without "
                           "'create associated user' to use that account and its password.")
        self._ensure_group()
        # Not --system: system accounts (uid < UID_MIN) are never a mailbox's (AccountRules).
        result = self._runner(["useradd", "--no-create-home", "--no-user-group", "--shell", NOLOGIN,
                               "--gid", GROUP, "--comment", comment, "--", name])
        if result.returncode != 0:
            raise Invalid(f"The system refused to create the account '{name}': {_tool_message(result)}")
        refusal = self.rules.refusal(name)
        if refusal:   # e.g. a login.defs that hands out low uids: never leave such an account behind
            self.delete(name, force=True)
            raise Unavailable(f"The new account '{name}' is outside the accounts a mailbox may use: {refusal}")
        log.warning("created the system account %s (%s)", name, comment)

    def set_password(self, name: str, password: str) -> None:
        """chpasswd an allowed account; the system's own refusal is passed on as Invalid."""
        check_account_name(name)
        check_secret(password)
        refusal = self.rules.refusal(name)
        if refusal:
            raise Forbidden(f"The password of '{name}' may not be changed by the POP3 service: {refusal}")
        result = self._runner(["chpasswd"], input=f"{name}:{password}\n")
        if result.returncode != 0:
            message = _tool_message(result).replace(password, "****")
            if "permission denied" in message.lower() or "cannot lock" in message.lower():
                raise Forbidden(f"The service may not change system passwords: {message}",
                                hint="Run the service as root.")
            raise PasswordRefused(f"The system refused the new password for '{name}': {message}")

    def delete(self, name: str, *, force: bool = False) -> bool:
        """userdel an account the service made (primary group pop3users); False if there was none."""
        check_account_name(name)
        if not account_exists(name):
            return False
        if not force:
            refusal = self.rules.refusal(name, managed_only=True)
            if refusal:
                raise Forbidden(refusal)
        result = self._runner(["userdel", "--", name])
        if result.returncode not in (0, 6):   # 6: no such user
            raise Unavailable(f"Could not delete the system account {name}: {_tool_message(result)}")
        log.warning("deleted the system account %s", name)
        return True

    def _ensure_group(self) -> None:
        try:
            grp.getgrnam(GROUP)
            return
        except KeyError:
            pass
        result = self._runner(["groupadd", "--system", GROUP])
        if result.returncode not in (0, 9):   # 9: the group exists (made meanwhile)
            raise Unavailable(f"Could not create the {GROUP} group: {_tool_message(result)}")


def _pam_authenticate(account: str, password: str, service: str) -> bool:
    """One PAM conversation; Unavailable when PAM could not check (not a wrong password)."""
    try:
        # Optional: python-pam loads libpam when imported; only the local method needs it.
        import pam  # noqa: PLC0415
    except ImportError:
        raise Unavailable("The local accounts method needs the python-pam package (pip install python-pam).") from None
    checker = pam.PamAuthenticator()   # one per call: an instance is not thread-safe
    try:
        ok = checker.authenticate(account, password, service=service, resetcreds=False)
    except Exception as exc:  # libpam missing, bad encoding: the system could not check
        raise Unavailable(f"PAM could not check the password: {exc}") from None
    if ok:
        return True
    code = int(checker.code or 0)
    if code in _PAM_UNAVAILABLE:
        log.error("PAM service %r could not check a logon for %s: %s (%s)", service, account,
                  _PAM_UNAVAILABLE[code], checker.reason)
        raise Unavailable(f"PAM could not check the password: {_PAM_UNAVAILABLE[code]}.")
    return False


class LocalAccountProvider(PlaintextOnly, AuthMethod):
    """The ``local`` method: mailboxes over system accounts, checked and changed through ``accounts``."""

    method = "local"

    def __init__(self, db: Database, *, mailroot: Path | None = None, pam_service: str = PAM_SERVICE_DEFAULT,
                 runner: Runner = _run, accounts: Accounts | None = None) -> None:
        self._db = db
        self._mailroot = Path(mailroot) if mailroot is not None else None
        self.pam_service = pam_service or PAM_SERVICE_DEFAULT
        # The privileged side: the helper's client when the service dropped root, else in-process.
        self.accounts: Accounts = accounts if accounts is not None else SystemAccounts(runner=runner)
        # An unknown login is checked against an account that cannot exist, so it costs what a
        # wrong password costs and never asks PAM about a real account without a mailbox.
        self._nobody = "pop3-nobody-" + secrets.token_hex(6)

    # --- lookups ------------------------------------------------------------------------------

    def _ref(self, mailbox: Mailbox, domain: Domain) -> MailboxRef:
        return mailbox_ref(mailbox, domain, self._mailroot)

    def resolve(self, login: str) -> MailboxRef | None:
        """The mailbox of ``alice@example.com`` or of the account name ``alice``, or None."""
        try:
            if isinstance(login, str) and "@" in login:
                name, domain_name = split_address(login, self.method)
            else:
                name, domain_name = normalize_mailbox(login, self.method), None
        except (Invalid, TypeError):
            return None
        with self._db.read() as session:
            query = select(Mailbox, Domain).join(Domain, Mailbox.domain_id == Domain.id).where(Mailbox.name == name)
            if domain_name is not None:
                query = query.where(Domain.name == domain_name)
            rows = session.execute(query.limit(2)).all()
            if len(rows) != 1:   # none, or (data from before the rule) ambiguous
                return None
            return self._ref(*rows[0])

    def verify_password(self, login: str, password: str) -> MailboxRef | None:
        """The mailbox if PAM accepts ``password`` for its account; Unavailable if PAM cannot check."""
        ref = self.resolve(login)
        if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD \
                or any(c in password for c in "\x00\r\n"):
            return None
        ok = self.accounts.pam_check(ref.name if ref is not None else self._nobody, password, self.pam_service)
        return ref if ok and ref is not None else None

    # --- admin hooks --------------------------------------------------------------------------

    def check_new_mailbox(self, session: Session, name: str, domain: str, *, create_user: bool,
                          password: str | None) -> None:
        """Names unique across domains; an account to create must not exist, one to map to must
        exist and be one the rules allow (AccountRules)."""
        other = session.execute(select(Domain.name).join(Mailbox, Mailbox.domain_id == Domain.id)
                                .where(Mailbox.name == name).limit(1)).scalar()
        if other is not None:
            raise Conflict(f"With local system accounts a mailbox name is unique across all domains: "
                           f"{name}@{other} already uses the account '{name}'. Choose another name.")
        info = self.accounts.describe(name)
        if create_user and info.exists:
            raise AlreadyExists(f"A system account named '{name}' already exists. Add the mailbox without "
                           "'create associated user' to use that account and its password.")
        if not create_user:
            if not info.exists:
                raise AccountMissing(f"There is no system account named '{name}'. Choose 'create associated "
                                     "user', or create the account first.", hint="winpop add /createuser creates it.")
            if info.refusal:
                raise Forbidden(f"A mailbox may not use the account '{name}': {info.refusal}")
            if password:
                raise Invalid(f"Without 'create associated user' the mailbox uses the existing account "
                              f"'{name}' and its password; give no password here.",
                              hint="Change it later with winpop changepwd.")

    def create_user(self, session: Session, mailbox_id: int, name: str, domain: str, password: str | None) -> None:
        """useradd a shell-less, home-less account in pop3users; undone if the transaction rolls back."""
        self.accounts.create(name, f"POP3 mailbox {name}@{domain}")

        def undo(_session: Session) -> None:
            self._userdel(name)
        on_session_event(session, "after_rollback", undo, once=True)
        if password:
            self.set_password(session, mailbox_id, password)

    def set_password(self, session: Session, mailbox_id: int, password: str) -> None:
        """chpasswd the mailbox's account (the privileged side refuses accounts the rules forbid)."""
        check_form(password)
        box = session.get(Mailbox, mailbox_id)
        if box is None:
            raise NotFound(f"There is no mailbox with id {mailbox_id}; it may have been deleted.")
        if not self.accounts.describe(box.name).exists:
            raise AccountMissing(f"The system account '{box.name}' does not exist any more; delete the mailbox "
                                 "or create the account again.")
        self.accounts.set_password(box.name, password)

    def delete_user(self, session: Session, mailbox_id: int, name: str, domain: str) -> None:
        """userdel the account after the mailbox is gone; only accounts the service made (pop3users)."""
        if not self.accounts.describe(name).exists:
            return
        if not account_in_group(name):
            raise Conflict(f"'{name}' is a system account the POP3 service did not create (it is not in the "
                           f"{GROUP} group); delete the mailbox without deleting the user.")
        self._after_commit(session, [name])

    def delete_users(self, session: Session, domain_id: int) -> None:
        """With the domain: userdel the accounts the service made; other accounts are left alone."""
        names = list(session.scalars(select(Mailbox.name).where(Mailbox.domain_id == domain_id)))
        ours = [n for n in names if account_in_group(n)]
        for n in set(names) - set(ours):
            if account_exists(n):
                log.warning("kept the system account %s: the POP3 service did not create it", n)
        self._after_commit(session, ours)

    # --- helpers ------------------------------------------------------------------------------

    def _after_commit(self, session: Session, names: list[str]) -> None:
        if not names:
            return

        def remove(_session: Session) -> None:
            for n in names:
                self._userdel(n)
        on_session_event(session, "after_commit", remove, once=True)

    def _userdel(self, name: str) -> None:
        try:
            self.accounts.delete(name)
        except MailError as exc:
            log.error("could not delete the system account %s: %s", name, exc.message)
