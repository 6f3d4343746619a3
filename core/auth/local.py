"""The ``local`` method: mailboxes are local system accounts, passwords are checked by PAM (DESIGN §6).

As in the original's "Local Windows Accounts": the account name is the mailbox name, so mailbox
names are unique across all domains; "create associated user" makes a system account with no
login shell and no home in the ``pop3users`` group; a client logs on as ``alice@example.com``
or ``alice``. Only plaintext mechanisms can be checked against PAM (no reusable secret exists).

PAM and the account tools block (a wrong password costs about 2 s in pam_unix): every call here
runs in a worker thread of the service, never on the event loop.
"""
from __future__ import annotations

import grp
import logging
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.event import listen as on_session_event
from sqlalchemy.orm import Session

from core.auth.provider import PlaintextOnly, check_password, mailbox_ref
from core.auth.settings import PAM_SERVICE_DEFAULT
from core.db import Database
from core.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from core.model import MailboxRef
from core.names import normalize_mailbox, split_address
from core.tables import Domain, Mailbox

log = logging.getLogger(__name__)

GROUP = "pop3users"
NOLOGIN = "/usr/sbin/nologin"
PAM_FILE = Path("/etc/pam.d")
PAM_TEMPLATE = Path(__file__).resolve().parents[2] / "resources" / "pam" / "pop3-service"

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


class LocalAccountProvider(PlaintextOnly):
    """The ``local`` method over PAM and the system's account tools."""

    method = "local"

    def __init__(self, db: Database, *, mailroot: Path | None = None, pam_service: str = PAM_SERVICE_DEFAULT,
                 runner: Runner = _run) -> None:
        self._db = db
        self._mailroot = Path(mailroot) if mailroot is not None else None
        self.pam_service = pam_service or PAM_SERVICE_DEFAULT
        self._runner = runner
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
        if not isinstance(password, str) or not password or "\x00" in password:
            return None
        ok = self._pam_check(ref.name if ref is not None else self._nobody, password)
        return ref if ok and ref is not None else None

    def _pam_check(self, account: str, password: str) -> bool:
        try:
            import pam
        except ImportError:
            raise Unavailable("The local accounts method needs the python-pam package "
                              "(pip install python-pam).") from None
        checker = pam.PamAuthenticator()   # one per call: an instance is not thread-safe
        try:
            ok = checker.authenticate(account, password, service=self.pam_service, resetcreds=False)
        except Exception as exc:  # libpam missing, bad encoding: the system could not check
            raise Unavailable(f"PAM could not check the password: {exc}") from None
        if ok:
            return True
        code = int(checker.code or 0)
        if code in _PAM_UNAVAILABLE:
            log.error("PAM service %r could not check a logon for %s: %s (%s)", self.pam_service, account,
                      _PAM_UNAVAILABLE[code], checker.reason)
            raise Unavailable(f"PAM could not check the password: {_PAM_UNAVAILABLE[code]}.")
        return False


    # --- admin hooks --------------------------------------------------------------------------

    def check_password(self, password: str) -> str:
        return check_password(password)

    def check_new_mailbox(self, name: str, domain: str, *, create_user: bool, password: str | None) -> None:
        """Names unique across domains; an account to create must not exist, one to map to must."""
        with self._db.read() as session:
            other = session.execute(select(Domain.name).join(Mailbox, Mailbox.domain_id == Domain.id)
                                    .where(Mailbox.name == name).limit(1)).scalar()
        if other is not None:
            raise Conflict(f"With local system accounts a mailbox name is unique across all domains: "
                           f"{name}@{other} already uses the account '{name}'. Choose another name.")
        exists = account_exists(name)
        if create_user and exists:
            raise Conflict(f"A system account named '{name}' already exists. Add the mailbox without "
                           "'create associated user' to use that account and its password.")
        if not create_user:
            if not exists:
                raise NotFound(f"There is no system account named '{name}'. Choose 'create associated user' "
                               "(winpop add --createuser) or create the account first.")
            if password:
                raise Invalid(f"Without 'create associated user' the mailbox uses the existing account "
                              f"'{name}' and its password; give no password here (winpop changepwd changes it).")

    def create_user(self, session: Session, mailbox_id: int, name: str, domain: str, password: str | None) -> None:
        """useradd a shell-less, home-less account in pop3users; undone if the transaction rolls back."""
        self._ensure_group()
        result = self._runner(["useradd", "--system", "--no-create-home", "--shell", NOLOGIN,
                               "--gid", GROUP, "--comment", f"POP3 mailbox {name}@{domain}", "--", name])
        if result.returncode != 0:
            raise Invalid(f"The system refused to create the account '{name}': {_tool_message(result)}")
        log.warning("created the system account %s for the mailbox %s@%s", name, name, domain)

        def undo(_session: Session) -> None:
            self._userdel(name)
        on_session_event(session, "after_rollback", undo, once=True)
        if password:
            self.set_password(session, mailbox_id, password)

    def set_password(self, session: Session, mailbox_id: int, password: str) -> None:
        """chpasswd the mailbox's account; the system's own refusal is passed on as Invalid."""
        check_password(password)
        box = session.get(Mailbox, mailbox_id)
        if box is None:
            raise NotFound(f"There is no mailbox with id {mailbox_id}; it may have been deleted.")
        if not account_exists(box.name):
            raise NotFound(f"The system account '{box.name}' does not exist any more; delete the mailbox "
                           "or create the account again.")
        if ":" in box.name:
            raise Invalid("An account name may not contain ':'.")
        result = self._runner(["chpasswd"], input=f"{box.name}:{password}\n")
        if result.returncode != 0:
            message = _tool_message(result).replace(password, "****")
            if "permission denied" in message.lower() or "cannot lock" in message.lower():
                raise Forbidden(f"The service may not change system passwords (run it as root): {message}")
            raise Invalid(f"The system refused the new password for '{box.name}': {message}")

    def delete_user(self, session: Session, mailbox_id: int, name: str, domain: str) -> None:
        """userdel the account after the mailbox is gone; only accounts the service made (pop3users)."""
        if not account_exists(name):
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
            result = self._runner(["userdel", "--", name])
        except Unavailable as exc:
            log.error("could not delete the system account %s: %s", name, exc.message)
            return
        if result.returncode not in (0, 6):   # 6: no such user
            log.error("could not delete the system account %s: %s", name, _tool_message(result))
        else:
            log.warning("deleted the system account %s", name)

    def _ensure_group(self) -> None:
        try:
            grp.getgrnam(GROUP)
            return
        except KeyError:
            pass
        result = self._runner(["groupadd", "--system", GROUP])
        if result.returncode not in (0, 9):   # 9: the group exists (made meanwhile)
            raise Unavailable(f"Could not create the {GROUP} group: {_tool_message(result)}")
